"""monitoring/: the Prometheus config, the alert rules (checked and unit-tested with promtool)
and the Grafana dashboard, whose every query must parse and name metrics fastsock exports."""
import json
import re
import subprocess

import yaml

from tests.support.tools import prometheus_bin

from tests.support.metrics import DASHBOARD, MONITORING, dashboard_queries  # noqa: E402


def promtool(*args):
    r = subprocess.run([prometheus_bin("promtool"), *args], capture_output=True, text=True,
                       cwd=MONITORING)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_prometheus_config_and_rules():
    assert "SUCCESS" in promtool("check", "config", "prometheus.yml")
    assert "SUCCESS: 11 rules found" in promtool("check", "rules", "alerts.yml")


def test_alert_rules_unit_tests():
    assert "SUCCESS" in promtool("test", "rules", "alerts_test.yml")


def test_every_alert_the_issue_names_exists():
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    alerts = {r["alert"] for r in rules if "alert" in r}
    assert alerts == {"FastsockHighErrorRatio", "FastsockLatencyObjective",
                      "FastsockWorkerRestarts", "FastsockTargetDown",
                      "FastsockAppMetricsDropped", "FastsockCertificateExpiring",
                      "FastsockTlsHandshakeFailures", "FastsockSaturated",
                      "FastsockScalingAtMaximum"}


def test_dashboard_queries_parse(tmp_path):
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:q{i}", "expr": q} for i, q in enumerate(dashboard_queries())]}]}
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    r = subprocess.run([prometheus_bin("promtool"), "check", "rules", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_dashboard_covers_the_figures_and_names_real_metrics(serve):
    titles = [p["title"] for p in json.loads(DASHBOARD.read_text())["panels"]]
    for needed in ("Traffic", "Errors", "Latency quantiles", "Connections", "Workers",
                   "Saturation"):
        assert any(t.startswith(needed) for t in titles), needed
    server = serve()
    server.get("/")
    text = server.get("/metrics").text
    exported = set(re.findall(r"^(fastsock_\w+?)(?:\{| )", text, re.M))
    exported |= set(re.findall(r"^# TYPE (fastsock_\w+) ", text, re.M))   # families yet empty
    used = set(re.findall(r"fastsock_\w+", " ".join(dashboard_queries())))
    assert used and used <= exported, used - exported


def test_grafana_provisioning_points_at_the_dashboard():
    provider = yaml.safe_load((MONITORING / "grafana/provisioning/dashboards/fastsock.yml")
                              .read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards"
    source = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml")
                            .read_text())
    assert source["datasources"][0]["type"] == "prometheus"


def test_the_dashboard_takes_its_datasource_as_a_variable():
    """Imported into any Grafana, it asks which Prometheus: no uid of ours is written in it."""
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"

    def references(node):
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                yield node["datasource"]
            for value in node.values():
                yield from references(value)
        elif isinstance(node, list):
            for value in node:
                yield from references(value)
    found = list(references(dashboard))
    assert len(found) > len(dashboard["panels"])          # the panels, their targets, $job
    assert all(ref == {"type": "prometheus", "uid": "${datasource}"} for ref in found), found


SATURATION_METRICS = {   # issue 24's signal, every family of it
    "fastsock_saturation", "fastsock_worker_saturation", "fastsock_worker_busy_seconds_total",
    "fastsock_requests_in_flight", "fastsock_thread_pool_threads", "fastsock_thread_pool_jobs",
    "fastsock_async_tasks", "fastsock_accept_queue_length", "fastsock_accept_queue_limit",
    "fastsock_listen_overflows_total", "fastsock_connections_shed_total",
    "fastsock_requests_refused_total"}


def test_the_saturation_row_shows_every_saturation_metric():
    panels = json.loads(DASHBOARD.read_text())["panels"]
    (row,) = [i for i, p in enumerate(panels) if p["type"] == "row" and p["title"] == "Saturation"]
    following = panels[row + 1:]
    following = following[:next((i for i, p in enumerate(following) if p["type"] == "row"),
                                len(following))]
    used = set(re.findall(r"fastsock_\w+", " ".join(t["expr"] for p in following
                                                       for t in p["targets"])))
    assert used == SATURATION_METRICS, used ^ SATURATION_METRICS
    # below the row, none overlapping another
    top = panels[row]["gridPos"]["y"] + 1
    cells = set()
    for p in following:
        g = p["gridPos"]
        assert g["y"] >= top and g["x"] + g["w"] <= 24
        area = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & area, p["title"]
        cells |= area
