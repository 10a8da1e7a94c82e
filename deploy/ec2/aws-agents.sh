#!/bin/sh
# The AWS side of an instance of the CloudFormation stack: the SSM agent (Session Manager, no
# SSH), the CloudWatch agent (fastsock's journal to the stack's log group, fastsock_saturation
# scraped from the metrics port to the metric the group scales on) and cfn-signal, all
# from AWS's own download locations, for this instance's architecture. /etc/fastsock/aws.env
# gives the region.
set -eu
. /etc/fastsock/aws.env
arch=$(dpkg --print-architecture)           # amd64 or arm64
s3="https://s3.$AWS_REGION.amazonaws.com"
tmp=$(mktemp -d)
curl -fsSL --retry 5 -o "$tmp/ssm.deb" \
    "$s3/amazon-ssm-$AWS_REGION/latest/debian_$arch/amazon-ssm-agent.deb"
curl -fsSL --retry 5 -o "$tmp/cloudwatch.deb" \
    "$s3/amazoncloudwatch-agent-$AWS_REGION/debian/$arch/latest/amazon-cloudwatch-agent.deb"
dpkg -i "$tmp/ssm.deb" "$tmp/cloudwatch.deb"
rm -rf "$tmp"
systemctl enable --now amazon-ssm-agent
/opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s \
    -c file:/etc/fastsock/cloudwatch-agent.json
python3 -m venv /opt/aws-cfn
/opt/aws-cfn/bin/pip install --no-cache-dir \
    https://s3.amazonaws.com/cloudformation-examples/aws-cfn-bootstrap-py3-latest.tar.gz
