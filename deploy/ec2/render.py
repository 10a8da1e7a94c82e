"""Renders user-data.yaml and cloudformation.yaml from the files beside it, so the systemd
units, the environment and the scripts have one source. `python deploy/ec2/render.py`; a test
checks that the committed outputs match.

user-data.yaml is for an instance launched by hand (set FASTSOCK_PACKAGE in it first);
cloudformation.yaml's instances also get the AWS agents (SSM, CloudWatch Logs and the
fastsock_saturation metric the group scales on), signal the stack once /readyz answers, and
drain fastsock when the group terminates them."""
import json
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = [  # (path on the instance, file here, mode)
    ("/etc/fastsock/install.env", None, "0644"),
    ("/etc/fastsock/network.env", None, "0644"),
    ("/etc/fastsock/target.env", None, "0644"),
    ("/etc/fastsock/fastsock.env", "fastsock.env", "0644"),
    ("/usr/local/sbin/fastsock-install", "install.sh", "0755"),
    ("/usr/local/sbin/fastsock-tls-cert", "tls-cert.sh", "0755"),
    ("/opt/fastsock/app/service.py", "service.py", "0644"),
    ("/etc/systemd/system/fastsock.socket", "fastsock.socket", "0644"),
    ("/etc/systemd/system/fastsock.service", "fastsock.service", "0644"),
]
AWS_FILES = [
    ("/etc/fastsock/aws.env", None, "0644"),
    ("/etc/fastsock/cloudwatch-agent.json", None, "0644"),
    ("/etc/fastsock/cloudwatch-prometheus.yml", None, "0644"),
    ("/usr/local/sbin/fastsock-aws-agents", "aws-agents.sh", "0755"),
    ("/usr/local/sbin/fastsock-signal-ready", "signal-ready.sh", "0755"),
    ("/usr/local/sbin/fastsock-drain-on-terminate", "drain-on-terminate.sh", "0755"),
    ("/etc/systemd/system/fastsock-journal.service", "fastsock-journal.service", "0644"),
    ("/etc/systemd/system/fastsock-drain.service", "fastsock-drain.service", "0644"),
    ("/etc/logrotate.d/fastsock", "fastsock.logrotate", "0644"),
]
RUN = [
    "[/usr/local/sbin/fastsock-install]",
    "[/usr/local/sbin/fastsock-tls-cert]",
    "[systemctl, daemon-reload]",
    "[systemctl, enable, --now, fastsock.socket]",
    "[systemctl, enable, --now, fastsock.service]",
]
AWS_RUN = [
    "[systemctl, enable, --now, fastsock-journal.service]",
    "[systemctl, enable, --now, fastsock-drain.service]",
    "[/usr/local/sbin/fastsock-aws-agents]",
    "[/usr/local/sbin/fastsock-signal-ready]",
]


def indent(text: str, n: int) -> str:
    return "\n".join((" " * n + line) if line else "" for line in text.splitlines())


SCRAPE_INTERVAL = 15     # seconds: the agent's scrape of fastsock_saturation
METRIC_NAMESPACE = "fastsock"
PROMETHEUS_CONFIG = "/etc/fastsock/cloudwatch-prometheus.yml"


def metrics_port() -> int:
    env = dict(line.split("=", 1) for line in (HERE / "fastsock.env").read_text().splitlines()
               if line and not line.startswith("#"))
    return int(env["FASTSOCK_METRICS_PORT"])


def cloudwatch_agent(log_group: str, metrics_log_group: str) -> str:
    """The CloudWatch agent's configuration: the journal file, one stream per instance; and
    fastsock_saturation scraped from the metrics port (PROMETHEUS_CONFIG) and published as a
    CloudWatch metric with the AutoScalingGroupName dimension (embedded metric format, through
    metrics_log_group), which the stack's target-tracking policy follows."""
    return json.dumps({"logs": {
        "logs_collected": {"files": {"collect_list": [{
            "file_path": "/var/log/fastsock/journal.log", "log_group_name": log_group,
            "log_stream_name": "{instance_id}", "retention_in_days": -1}]}},
        "metrics_collected": {"prometheus": {
            "log_group_name": metrics_log_group,
            "prometheus_config_path": PROMETHEUS_CONFIG,
            "emf_processor": {
                "metric_declaration_dedup": True,
                "metric_namespace": METRIC_NAMESPACE,
                "metric_unit": {"fastsock_saturation": "None"},
                "metric_declaration": [{
                    "source_labels": ["job"],
                    "label_matcher": "^fastsock$",
                    "dimensions": [["AutoScalingGroupName"]],
                    "metric_selectors": ["^fastsock_saturation$"]}]}}},
    }}, indent=2) + "\n"


def cloudwatch_prometheus(group: str) -> str:
    """The agent's scrape configuration (Prometheus's format): this instance's metrics port,
    every sample labelled with its Auto Scaling group's name, the metric's dimension."""
    return (f"global:\n  scrape_interval: {SCRAPE_INTERVAL}s\n  scrape_timeout: 5s\n"
            "scrape_configs:\n  - job_name: fastsock\n    static_configs:\n"
            f"      - targets: ['127.0.0.1:{metrics_port()}']\n"
            f"        labels:\n          AutoScalingGroupName: '{group}'\n")


def user_data(package: str = "", forwarded: str = "172.31.0.0/16", aws: dict | None = None,
              literal=lambda text: text, target: str = "HTTP") -> str:
    """package: the pip requirement of a prebuilt wheel; forwarded: the addresses whose
    X-Forwarded-For is trusted (the load balancer's, in the VPC; 172.31.0.0/16 is a default
    VPC's); aws: region, stack and log group for the AWS agents (CloudFormation only);
    literal: how the files' own text is kept from substitution; target: HTTP, or HTTPS for
    TLS on port 8000 with a self-signed certificate made at first boot (fastsock-tls-cert)."""
    generated = {
        "/etc/fastsock/install.env": f"FASTSOCK_PACKAGE={package}\n",
        "/etc/fastsock/target.env":
            "# HTTP, or HTTPS: fastsock serves TLS on port 8000 with a self-signed certificate\n"
            "# made at first boot (fastsock-tls-cert); the load balancer does not verify it\n"
            f"FASTSOCK_TARGET_PROTOCOL={target}\n",
        "/etc/fastsock/network.env":
            "# X-Forwarded-For/-Proto are trusted from these addresses only (the VPC: the ALB)\n"
            f"FASTSOCK_FORWARDED_ALLOW_IPS={forwarded}\n",
    }
    files, run = FILES, RUN
    if aws is not None:
        generated["/etc/fastsock/aws.env"] = \
            f"AWS_REGION={aws['region']}\nAWS_STACK={aws['stack']}\n"
        generated["/etc/fastsock/cloudwatch-agent.json"] = cloudwatch_agent(
            aws["log_group"], aws["metrics_log_group"])
        generated[PROMETHEUS_CONFIG] = cloudwatch_prometheus(aws["group"])
        files, run = FILES + AWS_FILES, RUN + AWS_RUN
    parts = ["""#cloud-config
# Installs fastsock in /opt/fastsock from a prebuilt wheel and runs it under systemd,
# socket-activated on port 8000, metrics on 9000.
# FASTSOCK_PACKAGE (install.env): the URL of a fastsock wheel for this instance's Python and
# architecture, or its requirement on your own index. Nothing is compiled here.
package_update: true
packages:
  - python3-venv
  - openssl
users:
  - default
  - name: fastsock
    system: true
    shell: /usr/sbin/nologin
    no_create_home: true
write_files:
"""]
    for path, source, mode in files:
        content = generated[path] if source is None else literal((HERE / source).read_text())
        parts.append(f"  - path: {path}\n    permissions: \"{mode}\"\n    content: |\n"
                     f"{indent(content, 6)}\n")
    parts.append("runcmd:\n" + "".join(f"  - {line}\n" for line in run))
    return "".join(parts)


# the Auto Scaling group's name, fixed so that the instances' launch template can name it (a
# !Ref of the group from there would be a circular dependency)
GROUP_NAME = "${AWS::StackName}-fastsock"


def cloudformation() -> str:
    # inside !Sub, ${Name} is a parameter or resource and ${!X} a literal ${X}
    data = user_data("${PackageSpec}", "${VpcCidr}", aws={
        "region": "${AWS::Region}", "stack": "${AWS::StackName}", "log_group": "${LogGroup}",
        "metrics_log_group": "${MetricsLogGroup}", "group": GROUP_NAME},
        literal=lambda text: text.replace("${", "${!"), target="${TargetProtocol}")
    return (HERE / "cloudformation.yaml.in").read_text().replace("USER_DATA", indent(data, 12))


def main() -> None:
    (HERE / "user-data.yaml").write_text(user_data())
    (HERE / "cloudformation.yaml").write_text(cloudformation())


if __name__ == "__main__":
    main()
