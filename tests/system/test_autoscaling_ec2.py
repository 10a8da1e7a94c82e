"""EC2 autoscaling on fastsock_saturation (deploy/ec2/cloudformation.yaml, rendered): what the
CloudWatch agent publishes is what the target-tracking policy and the alarm follow, its scrape
configuration passes promtool, and an instance drains before it goes — the numbers' relations
asserted, and the drain script run against a stand-in instance metadata service."""
import http.server
import json
import os
import re
import subprocess
import threading

import jsonschema
import yaml

from tests.support.tools import prometheus_bin
from tests.system.test_deploy import EC2, cfn_template, ec2_env

AGENT_SCHEMA = {   # the parts of the CloudWatch agent's configuration used here
    "type": "object", "required": ["logs"], "additionalProperties": False,
    "properties": {"logs": {
        "type": "object", "additionalProperties": False,
        "required": ["logs_collected", "metrics_collected"],
        "properties": {
            "logs_collected": {"type": "object"},
            "metrics_collected": {
                "type": "object", "additionalProperties": False, "required": ["prometheus"],
                "properties": {"prometheus": {
                    "type": "object", "additionalProperties": False,
                    "required": ["log_group_name", "prometheus_config_path", "emf_processor"],
                    "properties": {
                        "cluster_name": {"type": "string"},
                        "log_group_name": {"type": "string", "minLength": 1},
                        "prometheus_config_path": {"type": "string", "pattern": "^/"},
                        "emf_processor": {
                            "type": "object", "additionalProperties": False,
                            "required": ["metric_namespace", "metric_declaration"],
                            "properties": {
                                "metric_declaration_dedup": {"type": "boolean"},
                                "metric_namespace": {"type": "string", "minLength": 1},
                                "metric_unit": {"type": "object",
                                                "additionalProperties": {"type": "string"}},
                                "metric_declaration": {"type": "array", "minItems": 1, "items": {
                                    "type": "object", "additionalProperties": False,
                                    "required": ["source_labels", "label_matcher", "dimensions",
                                                 "metric_selectors"],
                                    "properties": {
                                        "source_labels": {"type": "array", "minItems": 1,
                                                          "items": {"type": "string"}},
                                        "label_matcher": {"type": "string"},
                                        "dimensions": {"type": "array", "items": {
                                            "type": "array", "maxItems": 30,
                                            "items": {"type": "string"}}},
                                        "metric_selectors": {"type": "array", "minItems": 1,
                                                             "items": {"type": "string"}}}}}}},
                    }}}},
        }}},
}

POLL = 5          # drain-on-terminate.sh's poll of the instance metadata, seconds
METRIC_PERIOD = 60    # CloudWatch's standard resolution: target tracking reads one-minute points


def instance_files() -> dict:
    """The files the stack's instances are given, as the template writes them (${X}: the
    stack's values, still unsubstituted)."""
    launch = cfn_template()["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    cloud_config = yaml.safe_load(launch["UserData"]["Fn::Base64"]["Fn::Sub"])
    return {f["path"]: f["content"] for f in cloud_config["write_files"]} | {
        "runcmd": [" ".join(c) for c in cloud_config["runcmd"]]}


def agent() -> tuple[dict, dict]:
    files = instance_files()
    config = json.loads(files["/etc/fastsock/cloudwatch-agent.json"])
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    return config, yaml.safe_load(files[prometheus["prometheus_config_path"]])


def test_the_agent_publishes_the_metric_the_policy_tracks():
    config, scrape = agent()
    jsonschema.validate(config, AGENT_SCHEMA)
    resources = cfn_template()["Resources"]
    prometheus = config["logs"]["metrics_collected"]["prometheus"]
    emf = prometheus["emf_processor"]
    assert prometheus["log_group_name"] == "${MetricsLogGroup}"
    (declaration,) = emf["metric_declaration"]
    # the scraped job matches the declaration, and only the gauge is published
    (job,) = scrape["scrape_configs"]
    assert declaration["source_labels"] == ["job"]
    assert re.fullmatch(declaration["label_matcher"], job["job_name"])
    assert [s for s in declaration["metric_selectors"] if re.search(s, "fastsock_saturation")]
    assert not [s for s in declaration["metric_selectors"]
                if re.search(s, "fastsock_worker_saturation")]
    # one dimension, the group's name, which every sample carries as a label
    assert declaration["dimensions"] == [["AutoScalingGroupName"]]
    (targets,) = job["static_configs"]
    group = targets["labels"]["AutoScalingGroupName"]
    assert {"Fn::Sub": group} == resources["AutoScalingGroup"]["Properties"][
        "AutoScalingGroupName"]
    assert targets["targets"] == [f"127.0.0.1:{ec2_env('fastsock.env')['FASTSOCK_METRICS_PORT']}"]
    # the policy: that namespace, name and dimension, averaged over the group
    policy = resources["SaturationScaling"]
    assert policy["Condition"] == "ScalesOnSaturation"
    tracking = policy["Properties"]["TargetTrackingConfiguration"]
    metric = tracking["CustomizedMetricSpecification"]
    assert metric["Namespace"] == emf["metric_namespace"]
    assert metric["MetricName"] == "fastsock_saturation"
    assert metric["Dimensions"] == [{"Name": "AutoScalingGroupName",
                                     "Value": {"Ref": "AutoScalingGroup"}}]
    assert metric["Statistic"] == "Average"
    assert tracking["TargetValue"] == {"Ref": "TargetSaturation"}
    # the agent may write its metric events, and only where the template says
    role = resources["InstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    assert any(s["Resource"] == {"Fn::GetAtt": "MetricsLogGroup.Arn"}
               and "logs:PutLogEvents" in s["Action"] for s in role)


def test_the_agents_scrape_config_passes_promtool(tmp_path):
    _, scrape = agent()
    (job,) = scrape["scrape_configs"]
    assert job["static_configs"][0]["labels"]["AutoScalingGroupName"] == \
        "${AWS::StackName}-fastsock"
    # as an instance gets it: the stack's name substituted
    text = instance_files()["/etc/fastsock/cloudwatch-prometheus.yml"].replace(
        "${AWS::StackName}", "shop")
    (tmp_path / "prometheus.yml").write_text(text)
    r = subprocess.run([prometheus_bin("promtool"), "check", "config", "prometheus.yml"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # the scrape is frequent enough for a one-minute average of several samples
    interval = int(scrape["global"]["scrape_interval"].removesuffix("s"))
    assert METRIC_PERIOD / interval >= 3


def test_saturation_is_the_default_with_cpu_second_and_requests_per_target_the_alternative():
    template = cfn_template()
    params, conditions, resources = (template["Parameters"], template["Conditions"],
                                     template["Resources"])
    choice = params["ScalingMetric"]
    assert choice["Default"] == "Saturation"
    assert choice["AllowedValues"] == ["Saturation", "ALBRequestCountPerTarget", "CPU"]
    assert conditions["ScalesOnSaturation"] == {"Fn::Equals": [{"Ref": "ScalingMetric"},
                                                               "Saturation"]}
    assert conditions["ScalesOnRequests"] == {"Fn::Equals": [{"Ref": "ScalingMetric"},
                                                             "ALBRequestCountPerTarget"]}
    assert 0.5 <= params["TargetSaturation"]["Default"] <= 0.8
    assert params["TargetSaturation"]["MaxValue"] < 1
    requests = resources["RequestCountScaling"]
    assert requests["Condition"] == "ScalesOnRequests"
    spec = requests["Properties"]["TargetTrackingConfiguration"]
    label = "${LoadBalancer.LoadBalancerFullName}/${TargetGroup.TargetGroupFullName}"
    assert spec["PredefinedMetricSpecification"] == {
        "PredefinedMetricType": "ALBRequestCountPerTarget", "ResourceLabel": {"Fn::Sub": label}}
    assert spec["TargetValue"] == {"Ref": "TargetRequestsPerInstance"}
    # CPU under every choice: second beside the others, alone with CPU
    cpu = resources["CpuScaling"]
    assert "Condition" not in cpu
    assert cpu["Properties"]["TargetTrackingConfiguration"]["PredefinedMetricSpecification"] == \
        {"PredefinedMetricType": "ASGAverageCPUUtilization"}
    policies = [r for r in resources.values() if r["Type"] == "AWS::AutoScaling::ScalingPolicy"]
    assert all(p["Properties"]["PolicyType"] == "TargetTrackingScaling" for p in policies)
    assert all(p["Properties"]["AutoScalingGroupName"] == {"Ref": "AutoScalingGroup"}
               for p in policies)
    # no policy overrides the group's warm-up
    assert not [p for p in policies if "EstimatedInstanceWarmup" in p["Properties"]]


def test_an_instance_warms_up_and_drains_within_the_numbers():
    resources = cfn_template()["Resources"]
    group = resources["AutoScalingGroup"]["Properties"]
    env = ec2_env("fastsock.env")
    drain = float(env["FASTSOCK_SHUTDOWN_DELAY"]) + float(env["FASTSOCK_GRACEFUL_TIMEOUT"])
    _, scrape = agent()
    interval = int(scrape["global"]["scrape_interval"].removesuffix("s"))
    # warm-up: a new instance counts in the average once a full minute of its samples is in
    assert group["DefaultInstanceWarmup"] >= interval + METRIC_PERIOD
    assert group["DefaultInstanceWarmup"] <= group["HealthCheckGracePeriod"]
    # the load balancer stops sending first and waits for what is in flight
    attributes = {a["Key"]: a["Value"] for a in
                  resources["TargetGroup"]["Properties"]["TargetGroupAttributes"]}
    assert int(attributes["deregistration_delay.timeout_seconds"]) >= drain
    # then the hook holds the instance while fastsock-drain sees it go and stops fastsock
    (hook,) = group["LifecycleHookSpecificationList"]
    assert hook["LifecycleTransition"] == "autoscaling:EC2_INSTANCE_TERMINATING"
    assert hook["DefaultResult"] == "CONTINUE"        # nothing completes it: the timeout does
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", (EC2 / "fastsock.service").read_text(),
                         re.M).group(1))
    assert drain < stop
    assert hook["HeartbeatTimeout"] >= POLL + stop
    files = instance_files()
    assert f"sleep {POLL}" in files["/usr/local/sbin/fastsock-drain-on-terminate"]
    assert "systemctl enable --now fastsock-drain.service" in files["runcmd"]
    assert "ExecStart=/usr/local/sbin/fastsock-drain-on-terminate" in \
        files["/etc/systemd/system/fastsock-drain.service"]
    # the alarm needs the group's own metrics
    (collection,) = group["MetricsCollection"]
    assert set(collection["Metrics"]) >= {"GroupInServiceInstances", "GroupMaxSize"}


def test_the_at_maximum_alarm_matches_the_prometheus_alert():
    template = cfn_template()
    alarm = template["Resources"]["AtMaximumWhileSaturated"]["Properties"]
    metrics = {m["Id"]: m for m in alarm["Metrics"]}
    returned = [m for m in alarm["Metrics"] if m.get("ReturnData", True)]
    assert [m["Id"] for m in returned] == ["atmaximum"]
    assert metrics["atmaximum"]["Expression"] == {"Fn::Sub":
        "IF(inservice >= maxsize AND saturation > ${TargetSaturation}, 1, 0)"}
    names = {i: m["MetricStat"]["Metric"]["MetricName"] for i, m in metrics.items()
             if "MetricStat" in m}
    assert names == {"inservice": "GroupInServiceInstances", "maxsize": "GroupMaxSize",
                     "saturation": "fastsock_saturation"}
    assert all(m["MetricStat"]["Metric"]["Dimensions"] == [
        {"Name": "AutoScalingGroupName", "Value": {"Ref": "AutoScalingGroup"}}]
        for m in metrics.values() if "MetricStat" in m)
    # 15 minutes, every minute of them, as FastsockScalingAtMaximum's `for: 15m`
    period = {m["MetricStat"]["Period"] for m in metrics.values() if "MetricStat" in m}
    assert period == {METRIC_PERIOD}
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 15
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == 1 and alarm["TreatMissingData"] == "notBreaching"
    alerts = yaml.safe_load((EC2.parents[1] / "monitoring/alerts.yml").read_text())
    (rule,) = [r for g in alerts["groups"] for r in g["rules"]
               if r.get("alert") == "FastsockScalingAtMaximum"]
    assert rule["for"] == "15m"
    assert alarm["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}],
                                                {"Ref": "AWS::NoValue"}]}


def test_the_user_data_fits_ec2s_limit():
    """16 KiB of user data, before base64: the agent's files must not push it over."""
    launch = cfn_template()["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    text = launch["UserData"]["Fn::Base64"]["Fn::Sub"].replace("${!", "${")
    assert len(text.encode()) < 16 * 1024 - 512      # room for the substituted values


class _Metadata(http.server.BaseHTTPRequestHandler):
    """The instance metadata service, as far as the drain script asks: a token, then the
    target lifecycle state, answered from the class's script of states (an int: that status)."""
    states: list = []
    asked: list = []

    def do_PUT(self):
        ok = self.path == "/latest/api/token" and \
            self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        self._answer(200 if ok else 400, b"token-1")

    def do_GET(self):
        if self.path != "/latest/meta-data/autoscaling/target-lifecycle-state" or \
                self.headers["X-aws-ec2-metadata-token"] != "token-1":
            return self._answer(401, b"")
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        self.asked.append(state)
        if isinstance(state, int):
            return self._answer(state, b"")
        self._answer(200, state.encode())

    def _answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_drain_script_stops_fastsock_when_the_group_terminates_the_instance(tmp_path):
    """Against a stand-in metadata service (errors, then InService, then Terminated) and a
    stand-in systemctl that records its arguments: fastsock is stopped once, at Terminated."""
    _Metadata.states = [500, "InService", "InService", "Terminated"]
    _Metadata.asked = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "systemctl").write_text(
        f'#!/bin/sh\necho "$@" >> {tmp_path / "calls"}\n')
    (tmp_path / "systemctl").chmod(0o755)
    script = (EC2 / "drain-on-terminate.sh").read_text()
    for old, new in (("http://169.254.169.254", f"http://127.0.0.1:{server.server_address[1]}"),
                     (f"sleep {POLL}", "sleep 0.05")):
        assert old in script, old
        script = script.replace(old, new)
    try:
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                           env={**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"})
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert _Metadata.asked == [500, "InService", "InService", "Terminated"]
    assert (tmp_path / "calls").read_text() == "stop fastsock.socket fastsock.service\n"
    assert "being terminated" in r.stdout


def test_the_agents_declaration_picks_the_gauge_from_a_real_server(serve):
    """The metric selectors against a real server's exposition: the gauge, and nothing else
    (each further name would be a CloudWatch metric billed per group)."""
    server = serve("--workers", "2")
    text = server.get("/metrics").text
    names = set(re.findall(r"^(\w+)(?:\{| )", text, re.M))
    config, _ = agent()
    (declaration,) = config["logs"]["metrics_collected"]["prometheus"]["emf_processor"][
        "metric_declaration"]
    picked = {n for n in names if any(re.search(s, n) for s in declaration["metric_selectors"])}
    assert picked == {"fastsock_saturation"}, picked
    value = float(re.search(r"^fastsock_saturation (\S+)$", text, re.M).group(1))
    assert 0 <= value <= 1
