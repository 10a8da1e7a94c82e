#!/bin/sh
# A self-signed certificate to try fastsock's TLS locally (docker-compose.tls.yml):
#   sh scripts/self-signed-cert.sh [DIR]          DIR: ./tls by default
# writes DIR/cert.pem and DIR/key.pem: ECDSA P-256, for localhost and 127.0.0.1, 825 days.
# The key is readable by all (0644): the container's user (10001) is not yours, and reads it
# through a bind mount. A throwaway key for one machine: never make a real one this way.
# An existing pair is kept (remove both for a new one).
set -eu
dir=${1:-tls}
if ! command -v openssl >/dev/null 2>&1; then
    echo "self-signed-cert.sh: the openssl command is missing (Debian/Ubuntu: apt-get install" \
         "openssl; Fedora: dnf install openssl; macOS: it comes with the system)" >&2
    exit 1
fi
if [ -e "$dir/cert.pem" ] && [ -e "$dir/key.pem" ]; then
    echo "self-signed-cert.sh: $dir/cert.pem and $dir/key.pem exist: kept" >&2
    exit 0
fi
if [ -e "$dir/cert.pem" ] || [ -e "$dir/key.pem" ]; then
    echo "self-signed-cert.sh: only one of $dir/cert.pem and $dir/key.pem exists: remove it" >&2
    exit 1
fi
mkdir -p "$dir"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 825 \
    -subj "/CN=localhost" -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -keyout "$dir/key.pem.new" -out "$dir/cert.pem.new"
chmod 0644 "$dir/key.pem.new" "$dir/cert.pem.new"
mv "$dir/key.pem.new" "$dir/key.pem"
mv "$dir/cert.pem.new" "$dir/cert.pem"
echo "self-signed-cert.sh: wrote $dir/cert.pem and $dir/key.pem"
