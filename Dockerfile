# fastsock service image: a build stage compiles the wheel, the runtime stage has no compiler.
# BASE_IMAGE lets a local stand-in replace python:3.12-slim (see tests/system/test_container.py).
ARG BASE_IMAGE=python:3.12-slim

FROM ${BASE_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev zlib1g-dev \
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
WORKDIR /app
COPY --from=build /src/examples ./examples
USER 10001:10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# no curl in the image: the venv's python asks /healthz itself
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('FASTSOCK_PORT', '8000') + '/healthz', timeout=2)"]
# fastsock is PID 1: it takes the signals and reaps children itself
ENTRYPOINT ["fastsock"]
CMD ["examples.hello:app"]
