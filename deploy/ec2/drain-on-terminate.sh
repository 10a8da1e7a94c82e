#!/bin/sh
# Drains fastsock when the Auto Scaling group is to terminate this instance: it asks the
# instance metadata for the group's target lifecycle state every 5 s and, at "Terminated", stops
# fastsock (readiness 503 for FASTSOCK_SHUTDOWN_DELAY, then the requests in flight finish within
# FASTSOCK_GRACEFUL_TIMEOUT). The group's termination hook holds the instance running long
# enough; the load balancer has stopped sending it requests by then (deregistration delay).
set -u
imds=http://169.254.169.254/latest
while :; do
    token=$(curl -fsS -X PUT -H "X-aws-ec2-metadata-token-ttl-seconds: 60" "$imds/api/token" \
        2>/dev/null) &&
        state=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" \
            "$imds/meta-data/autoscaling/target-lifecycle-state" 2>/dev/null) &&
        [ "$state" = Terminated ] && break
    sleep 5
done
echo "fastsock-drain: the instance is being terminated: stopping fastsock"
systemctl stop fastsock.socket fastsock.service
