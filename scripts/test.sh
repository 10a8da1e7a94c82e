#!/usr/bin/env bash
# Everything the tests need, then the tests: the README's second command, and what .ci/run calls.
#   bash scripts/test.sh [pytest arguments]
# As root (through sudo if need be: one test makes a PID namespace, the container tests start a
# Docker engine of their own): Debian's packages (apt-get), a venv in .venv with fastsock built
# in place and its [dev] extras, then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

# docker.io + debootstrap: the container tests (their own engine, a base image made offline);
# cloud-init, systemd: validators of deploy/ec2; prometheus is unpacked by the tests themselves
# (apt-get download), which needs the package lists apt-get update fetches; zlib1g-dev: zlib's
# header, which the build of permessage-deflate (fastsock/_wsdeflate.pyx) includes; libssl-dev:
# OpenSSL 3's headers, for the TLS rooms (fastsock/_tls.pyx, _tlsctx.pyx); testssl.sh, curl,
# openssl: the TLS tests' scanner and clients (tests/integration/test_tls_*.py).
DEBIAN_PACKAGES="docker.io debootstrap cloud-init systemd util-linux zlib1g-dev libssl-dev testssl.sh curl openssl ${EXTRA_DEBIAN_PACKAGES:-}"

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null; then
        exec sudo --preserve-env=EXTRA_DEBIAN_PACKAGES bash "$0" "$@"
    fi
    echo "scripts/test.sh: run it as root (the tests make a PID namespace and start a Docker" \
         "engine; apt-get installs $DEBIAN_PACKAGES)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null; then
    echo "scripts/test.sh: no apt-get: install $DEBIAN_PACKAGES (or your system's names for" \
         "them) yourself, then run: python -m pytest -q" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
apt-get update -qq
# shellcheck disable=SC2086  # a list of names
apt-get install -y -qq $DEBIAN_PACKAGES >/dev/null
# headless Chromium for the WebSocket interop tests (tests/support/wsclients.py): the browser
# alone, without the desktop it recommends
apt-get install -y -qq --no-install-recommends chromium >/dev/null

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
pip install -q --upgrade pip
pip install -q -e '.[dev]'

python -m pytest -q "$@"
