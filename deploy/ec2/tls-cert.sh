#!/bin/sh
# ALB -> instance over HTTPS (the stack's TargetProtocol, in /etc/fastsock/target.env): makes a
# self-signed certificate once, at first boot, and points fastsock at it (/etc/fastsock/tls.env,
# which turns TLS on for port 8000; the metrics port stays cleartext). The ALB does not verify
# its targets' certificates (self-signed, expired or of another name: all accepted): this
# encrypts the hop inside the VPC, it does not authenticate the instance. HTTP: nothing is made.
set -eu
dir=/etc/fastsock/tls
env=/etc/fastsock/tls.env
group=fastsock
. /etc/fastsock/target.env
case "$FASTSOCK_TARGET_PROTOCOL" in
    HTTP) rm -f "$env"; exit 0 ;;
    HTTPS) ;;
    *) echo "fastsock-tls-cert: FASTSOCK_TARGET_PROTOCOL is '$FASTSOCK_TARGET_PROTOCOL' in" \
            "/etc/fastsock/target.env: HTTP or HTTPS" >&2; exit 1 ;;
esac
if [ ! -s "$dir/cert.pem" ] || [ ! -s "$dir/key.pem" ]; then
    mkdir -p "$dir"
    name=$(hostname -f 2>/dev/null || hostname)
    # ECDSA P-256, ten years: the ALB checks neither the name nor the dates
    (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -days 3650 -subj "/CN=$name" -addext "subjectAltName=DNS:$name" \
        -keyout "$dir/key.pem.new" -out "$dir/cert.pem.new")
    # the key: root's, readable by fastsock's group only; each file appears whole (mv)
    chgrp "$group" "$dir/key.pem.new"
    chmod 0640 "$dir/key.pem.new"
    chmod 0644 "$dir/cert.pem.new"
    mv "$dir/key.pem.new" "$dir/key.pem"
    mv "$dir/cert.pem.new" "$dir/cert.pem"
fi
printf 'FASTSOCK_TLS_CERT=%s\nFASTSOCK_TLS_KEY=%s\n' "$dir/cert.pem" "$dir/key.pem" >"$env"
