#!/bin/sh
# Installs fastsock into /opt/fastsock from a prebuilt wheel: nothing is compiled on the instance
# (no gcc, no headers), and pip refuses a source package. FASTSOCK_PACKAGE, from
# /etc/fastsock/install.env, is a wheel URL or a requirement on your own index.
set -eu
. /etc/fastsock/install.env
if [ -z "${FASTSOCK_PACKAGE:-}" ]; then
    echo "fastsock-install: FASTSOCK_PACKAGE is empty in /etc/fastsock/install.env:" \
         "set it to the URL of a fastsock wheel built for this instance" >&2
    exit 1
fi
python3 -m venv /opt/fastsock
/opt/fastsock/bin/pip install --no-cache-dir --only-binary=:all: "$FASTSOCK_PACKAGE"
