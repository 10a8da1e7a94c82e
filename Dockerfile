# fastsock service image: a build stage compiles the wheel, the runtime stage has no compiler.
# BASE_IMAGE lets a local stand-in replace python:3.12-slim (see tests/system/test_container.py).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# the headers the core compiles against: zlib's (permessage-deflate), OpenSSL's (TLS)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY fastsock ./fastsock
RUN python -m venv /opt/fastsock \
    && /opt/fastsock/bin/pip install --no-cache-dir . \
    && /opt/fastsock/bin/python -I -c "import fastsock._loop"
COPY examples ./examples

FROM ${BASE_IMAGE} AS runtime
ENV PATH=/opt/fastsock/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    FASTSOCK_HOST=0.0.0.0 \
    FASTSOCK_PORT=8000
COPY --from=build /opt/fastsock /opt/fastsock
# the shared libraries the compiled modules link (libssl3, libz) come with the base image: its
# own Python's ssl and zlib modules need them. Importing every compiled module here fails the
# build, rather than the first start, on a base without them.
RUN python -I -c "import importlib, pkgutil, fastsock; \
[importlib.import_module('fastsock.' + m.name) for m in pkgutil.iter_modules(fastsock.__path__) \
if m.name.startswith('_') and not m.name.startswith('__')]"
WORKDIR /app
COPY --from=build /src/examples ./examples
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# no curl in the image: the venv's python asks /healthz itself, over HTTPS when
# FASTSOCK_TLS_CERT is set (the certificate is not verified: its names are not 127.0.0.1)
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request; tls = bool(os.environ.get('FASTSOCK_TLS_CERT')); urllib.request.urlopen(('https' if tls else 'http') + '://127.0.0.1:' + os.environ.get('FASTSOCK_PORT', '8000') + '/healthz', timeout=2, context=ssl._create_unverified_context() if tls else None)"]
# fastsock is PID 1: it takes the signals and reaps children itself
ENTRYPOINT ["fastsock"]
CMD ["examples.hello:app"]
