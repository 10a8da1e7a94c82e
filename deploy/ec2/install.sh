#!/bin/sh
# Installs fastsock into /opt/fastsock; FASTSOCK_PACKAGE comes from /etc/fastsock/install.env.
set -eu
. /etc/fastsock/install.env
python3 -m venv /opt/fastsock
/opt/fastsock/bin/pip install --no-cache-dir "$FASTSOCK_PACKAGE"
