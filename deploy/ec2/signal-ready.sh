#!/bin/sh
# Tells CloudFormation whether this instance came up: success once fastsock answers /readyz,
# failure after 5 minutes without. The stack's creation and each rolling update wait for it.
set -u
. /etc/fastsock/aws.env
. /etc/fastsock/target.env
# over HTTPS when the ALB's targets are (fastsock-tls-cert): the instance's own self-signed
# certificate, asked on 127.0.0.1, is not verified
scheme=http
if [ "$FASTSOCK_TARGET_PROTOCOL" = HTTPS ]; then
    scheme=https
fi
ready="import ssl, urllib.request as u; u.urlopen('$scheme://127.0.0.1:8000/readyz', timeout=2,
    context=ssl._create_unverified_context())"
code=1
for _ in $(seq 150); do
    if python3 -c "$ready" 2>/dev/null; then
        code=0
        break
    fi
    sleep 2
done
/opt/aws-cfn/bin/cfn-signal --exit-code "$code" --stack "$AWS_STACK" --resource AutoScalingGroup \
    --region "$AWS_REGION"
