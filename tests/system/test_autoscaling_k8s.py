"""Kubernetes autoscaling on fastsock_saturation (k8s/overlays/keda, .../prometheus-adapter)
read from kustomize's output: the CRD against the parts of KEDA's schema it uses, the PromQL by
promtool, and the relations between the scaler's numbers and the pod's drain asserted, so that
an edit of one number that lets a scale-down cut requests fails here."""
import json
import re
import subprocess

import jsonschema
import pytest
import yaml

from tests.support.tools import prometheus_bin
from tests.system.test_deploy import ROOT, kustomized

ADAPTER = ROOT / "k8s/components/prometheus-adapter/config.yaml"

BEHAVIOR_RULES = {   # autoscaling/v2 HPAScalingRules, as KEDA's CRD and the HPA API bound them
    "type": "object", "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {"type": "array", "minItems": 1, "items": {
            "type": "object", "required": ["type", "value", "periodSeconds"],
            "additionalProperties": False,
            "properties": {"type": {"enum": ["Pods", "Percent"]},
                           "value": {"type": "integer", "minimum": 1},
                           "periodSeconds": {"type": "integer", "minimum": 1,
                                             "maximum": 1800}}}},
    },
}

SCALED_OBJECT_SCHEMA = {   # the parts of KEDA's CRD (keda.sh/v1alpha1 ScaledObject) used here
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name"]},
        "spec": {
            "type": "object", "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"],
                                   "additionalProperties": False, "properties": {
                                       "apiVersion": {"type": "string"},
                                       "kind": {"type": "string"},
                                       "name": {"type": "string"}}},
                "pollingInterval": {"type": "integer", "minimum": 1},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "advanced": {"type": "object", "additionalProperties": False, "properties": {
                    "horizontalPodAutoscalerConfig": {
                        "type": "object", "additionalProperties": False, "properties": {
                            "name": {"type": "string"},
                            "behavior": {"type": "object", "additionalProperties": False,
                                         "properties": {"scaleUp": BEHAVIOR_RULES,
                                                        "scaleDown": BEHAVIOR_RULES}}}},
                    "restoreToOriginalReplicaCount": {"type": "boolean"}}},
                "triggers": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["type", "metadata"],
                    "additionalProperties": False,
                    "properties": {
                        "type": {"type": "string"},
                        "name": {"type": "string"},
                        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                        # every value a string: KEDA's CRD says so, and a bare 0.7 is refused
                        "metadata": {"type": "object",
                                     "additionalProperties": {"type": "string"}}}}},
            },
        },
    },
}

ADAPTER_SCHEMA = {   # prometheus-adapter's config file: the fields of a discovery rule used here
    "type": "object", "required": ["rules"], "additionalProperties": False,
    "properties": {"rules": {"type": "array", "minItems": 1, "items": {
        "type": "object", "additionalProperties": False,
        "required": ["seriesQuery", "resources", "name", "metricsQuery"],
        "properties": {
            "seriesQuery": {"type": "string"},
            "resources": {"type": "object", "additionalProperties": False, "properties": {
                "overrides": {"type": "object", "additionalProperties": {
                    "type": "object", "required": ["resource"], "additionalProperties": False,
                    "properties": {"group": {"type": "string"},
                                   "resource": {"type": "string"}}}},
                "template": {"type": "string"}}},
            "name": {"type": "object", "required": ["matches"], "additionalProperties": False,
                     "properties": {"matches": {"type": "string"}, "as": {"type": "string"}}},
            "metricsQuery": {"type": "string"}}}}},
}

OVERLAYS = ["k8s", "k8s/overlays/keda", "k8s/overlays/prometheus-adapter"]


def quantity(text) -> float:
    """A Kubernetes quantity as the HPA reads averageValue (only m and plain numbers here)."""
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    (found,) = [d for d in docs if d["kind"] == kind
                and (name is None or d["metadata"]["name"] == name)]
    return found


def scaler(docs: list[dict]) -> tuple[dict, int, int]:
    """(behavior, min, max) of whatever scales the Deployment: the HPA, or KEDA's ScaledObject."""
    hpas = [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    objects = [d for d in docs if d["kind"] == "ScaledObject"]
    assert len(hpas) + len(objects) == 1, "exactly one autoscaler for the Deployment"
    if hpas:
        spec = hpas[0]["spec"]
        return spec["behavior"], spec["minReplicas"], spec["maxReplicas"]
    spec = objects[0]["spec"]
    return (spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
            spec["minReplicaCount"], spec["maxReplicaCount"])


def drain(docs: list[dict]) -> dict:
    """The pod's timings: how long it takes to leave the Service and to finish its requests."""
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    config = one(docs, "ConfigMap", "fastsock-config")["data"]
    (container,) = pod["containers"]
    ready, startup = container["readinessProbe"], container["startupProbe"]
    return {
        "grace": pod["terminationGracePeriodSeconds"],
        "shutdown_delay": float(config["FASTSOCK_SHUTDOWN_DELAY"]),
        "graceful": float(config["FASTSOCK_GRACEFUL_TIMEOUT"]),
        "unready_after": ready["periodSeconds"] * ready["failureThreshold"],
        "startup": startup["periodSeconds"] * startup["failureThreshold"]
        + ready["periodSeconds"],
    }


def scrape_interval(docs: list[dict]) -> int:
    monitor = one(docs, "ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    return int(endpoint["interval"].removesuffix("s"))


@pytest.mark.parametrize("target", OVERLAYS)
def test_scale_down_never_outruns_the_drain_and_scale_up_is_fast(target):
    docs = kustomized(target)
    behavior, low, high = scaler(docs)
    t = drain(docs)
    # the pod: readiness turns 503 at SIGTERM and endpoints drop it before it stops accepting;
    # it finishes its requests within the grace period, so kubelet never kills one mid-way
    assert t["shutdown_delay"] > t["unready_after"]
    assert t["grace"] > t["shutdown_delay"] + t["graceful"]
    # down: at most one pod (or 10 %) per period, and a period no shorter than a pod's grace,
    # so at most one pod is draining at any time
    down = behavior["scaleDown"]
    assert down.get("selectPolicy", "Max") != "Disabled"
    if len(down["policies"]) > 1:
        assert down["selectPolicy"] == "Min"        # the smallest step, not the largest
    for policy in down["policies"]:
        assert (policy["type"], policy["value"]) in {("Pods", 1)} or \
            (policy["type"] == "Percent" and policy["value"] <= 10), policy
        assert policy["periodSeconds"] >= t["grace"], (policy, t)
    # and not on a dip: the window outlasts a new pod's start plus the metric's way to the HPA
    # (scrape, the poll, the HPA's 15 s sync), so pods just added are not taken back at once
    reaction = t["startup"] + 15 + 15 + 15
    assert down["stabilizationWindowSeconds"] >= max(reaction, *(
        p["periodSeconds"] for p in down["policies"]))
    # up: no stabilisation, double or +4 pods (the larger) every 15 s
    up = behavior["scaleUp"]
    assert up["stabilizationWindowSeconds"] == 0 and up["selectPolicy"] == "Max"
    steps = {(p["type"], p["value"]) for p in up["policies"] if p["periodSeconds"] <= 15}
    assert ("Percent", 100) in steps and ("Pods", 4) in steps, up
    # the PDB never blocks a scale-down to the minimum (it is not an eviction, but a drain is)
    assert one(docs, "PodDisruptionBudget")["spec"]["minAvailable"] < low < high


def test_every_overlay_shares_the_base_bounds_and_behaviour():
    base = scaler(kustomized("k8s"))
    for target in OVERLAYS[1:]:
        assert scaler(kustomized(target)) == base, target


def test_keda_scaled_object_fits_the_crd_and_replaces_the_hpa():
    docs = kustomized("k8s/overlays/keda")
    scaled = one(docs, "ScaledObject")
    jsonschema.validate(scaled, SCALED_OBJECT_SCHEMA)
    assert not [d for d in docs if d["kind"] == "HorizontalPodAutoscaler"]
    spec = scaled["spec"]
    deployment = one(docs, "Deployment")
    assert spec["scaleTargetRef"] == {"apiVersion": deployment["apiVersion"],
                                      "kind": "Deployment",
                                      "name": deployment["metadata"]["name"]}
    triggers = {t["type"]: t for t in spec["triggers"]}
    assert sorted(triggers) == ["cpu", "prometheus"]
    prometheus = triggers["prometheus"]["metadata"]
    # the sum of the pods' gauges against a per-pod threshold (AverageValue, KEDA's default)
    assert triggers["prometheus"].get("metricType", "AverageValue") == "AverageValue"
    assert re.fullmatch(r'sum\(fastsock_saturation\{[^}]*\}\)', prometheus["query"])
    assert 0.5 <= float(prometheus["threshold"]) <= 0.8
    assert prometheus["ignoreNullValues"] == "false"
    assert prometheus["serverAddress"].startswith("http")
    # it names the job the ServiceMonitor's targets carry, as the alert rules do
    assert 'job="fastsock"' in prometheus["query"]
    # polled as often as Prometheus scrapes: no slower (reaction), no faster (no new sample)
    assert spec["pollingInterval"] == scrape_interval(docs)
    # CPU second, the base HPA's target
    base_cpu = one(kustomized("k8s"), "HorizontalPodAutoscaler")["spec"]["metrics"]
    (cpu,) = [m["resource"]["target"] for m in base_cpu if m["type"] == "Resource"]
    assert triggers["cpu"]["metricType"] == "Utilization"
    assert triggers["cpu"]["metadata"] == {"value": str(cpu["averageUtilization"])}
    # KEDA's admission check: `fallback` is refused when a cpu or memory trigger is present
    assert "fallback" not in spec


def test_a_broken_scaled_object_is_refused_by_the_schema():
    scaled = one(kustomized("k8s/overlays/keda"), "ScaledObject")
    for mutate in (lambda s: s["triggers"][0]["metadata"].update(threshold=0.7),
                   lambda s: s["triggers"][1].update(metricType="utilization"),
                   lambda s: s.update(maxReplicas=10),
                   lambda s: s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
                       "scaleDown"]["policies"][0].update(periodSeconds=3600),
                   lambda s: s["advanced"]["horizontalPodAutoscalerConfig"]["behavior"][
                       "scaleUp"].update(selectPolicy="max")):
        broken = json.loads(json.dumps(scaled))
        mutate(broken["spec"])
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, SCALED_OBJECT_SCHEMA)


def test_prometheus_adapter_rule_serves_the_metric_the_hpa_asks_for():
    docs = kustomized("k8s/overlays/prometheus-adapter")
    rules = yaml.safe_load(ADAPTER.read_text())
    jsonschema.validate(rules, ADAPTER_SCHEMA)
    # the ConfigMap ships that same file
    config = one(docs, "ConfigMap", "prometheus-adapter-fastsock")
    assert config["data"] == {"config.yaml": ADAPTER.read_text()}
    (rule,) = rules["rules"]
    assert rule["resources"]["overrides"] == {"namespace": {"resource": "namespace"},
                                              "pod": {"resource": "pod"}}
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    assert re.search(rule["name"]["matches"], series) and series == "fastsock_saturation"
    exposed = re.sub(rule["name"]["matches"], rule["name"].get("as", "$0"), series)
    for placeholder in ("<<.Series>>", "<<.LabelMatchers>>", "<<.GroupBy>>"):
        assert placeholder in rule["metricsQuery"]
    # the HPA: that metric per pod, CPU second at the base's target, bounds and behaviour kept
    hpa = one(docs, "HorizontalPodAutoscaler")
    metrics = hpa["spec"]["metrics"]
    assert [m["type"] for m in metrics] == ["Pods", "Resource"]
    pods = metrics[0]["pods"]
    assert pods["metric"] == {"name": exposed}
    assert pods["target"]["type"] == "AverageValue"
    base = one(kustomized("k8s"), "HorizontalPodAutoscaler")["spec"]
    assert metrics[1] == base["metrics"][0]
    # the same target as KEDA's threshold: both overlays scale alike
    keda = one(kustomized("k8s/overlays/keda"), "ScaledObject")["spec"]["triggers"]
    (threshold,) = [t["metadata"]["threshold"] for t in keda if t["type"] == "prometheus"]
    assert quantity(pods["target"]["averageValue"]) == float(threshold)


def adapter_query(matchers: str, group_by: str) -> str:
    """The adapter's metricsQuery as it sends it for one pod or several."""
    (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]
    series = re.match(r"(\w+)\{", rule["seriesQuery"]).group(1)
    return (rule["metricsQuery"].replace("<<.Series>>", series)
            .replace("<<.LabelMatchers>>", matchers).replace("<<.GroupBy>>", group_by))


def keda_query() -> str:
    scaled = one(kustomized("k8s/overlays/keda"), "ScaledObject")
    (query,) = [t["metadata"]["query"] for t in scaled["spec"]["triggers"]
                if t["type"] == "prometheus"]
    return query


def test_promtool_parses_the_scalers_queries(tmp_path):
    (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]
    exprs = [keda_query(), rule["seriesQuery"],
             adapter_query('namespace="default",pod=~"fastsock-a|fastsock-b"', "pod")]
    path = tmp_path / "scalers.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "scalers", "rules": [
        {"record": f"scaler:q{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
    r = subprocess.run([prometheus_bin("promtool"), "check", "rules", str(path)],
                       capture_output=True, text=True)
    assert r.returncode == 0 and f"SUCCESS: {len(exprs)} rules found" in r.stdout, \
        r.stdout + r.stderr
    # and a typo is caught, so the check above means something
    path.write_text(yaml.safe_dump({"groups": [{"name": "bad", "rules": [
        {"record": "scaler:bad", "expr": adapter_query("namespace=default", "pod")}]}]}))
    r = subprocess.run([prometheus_bin("promtool"), "check", "rules", str(path)],
                       capture_output=True, text=True)
    assert r.returncode != 0


def test_the_at_maximum_alert_watches_both_hpas_at_the_scalers_target():
    """FastsockScalingAtMaximum: the HPA the base and the adapter overlay name, and the one KEDA
    makes (keda-hpa-<ScaledObject>), past the same 0.7 the scalers aim at."""
    alerts = yaml.safe_load((ROOT / "monitoring/alerts.yml").read_text())
    (rule,) = [r for g in alerts["groups"] for r in g["rules"]
               if r.get("alert") == "FastsockScalingAtMaximum"]
    names = re.search(r'horizontalpodautoscaler=~"([^"]+)"', rule["expr"]).group(1).split("|")
    hpa = one(kustomized("k8s/overlays/prometheus-adapter"), "HorizontalPodAutoscaler")
    scaled = one(kustomized("k8s/overlays/keda"), "ScaledObject")
    assert sorted(names) == sorted([hpa["metadata"]["name"],
                                    "keda-hpa-" + scaled["metadata"]["name"]])
    (threshold,) = re.findall(r"fastsock_saturation\{[^}]*\}\) > ([0-9.]+)", rule["expr"])
    assert float(threshold) == quantity(hpa["spec"]["metrics"][0]["pods"]["target"][
        "averageValue"])


def test_the_scalers_queries_answer_from_a_real_server(serve, tmp_path):
    """A fastsock server (two workers) scraped by a real Prometheus as the ServiceMonitor's
    targets are labelled (job, namespace, pod): KEDA's query and the adapter's queries, as they
    send them, return the pod's saturation, a fraction."""
    import httpx

    from tests.support.servers import free_port, ready
    from tests.support.waiting import wait_until
    server = serve("--workers", "2")
    wait_until(lambda: ready(server) == 200, what="readiness")
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "fastsock", "static_configs": [{
            "targets": [f"127.0.0.1:{server.port}"],
            "labels": {"namespace": "default", "pod": "fastsock-0"}}]}]}))
    prom = subprocess.Popen(
        [prometheus_bin("prometheus"), f"--config.file={config}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{web}"],
        stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "wb"))

    def query(q):
        try:
            return httpx.get(f"http://127.0.0.1:{web}/api/v1/query",
                             params={"query": q}).json()["data"]["result"]
        except (httpx.HTTPError, KeyError, ValueError):
            return None

    try:
        wait_until(lambda: query(keda_query()), timeout=30, what="KEDA's query to answer")
        (keda,) = query(keda_query())
        assert 0 <= float(keda["value"][1]) <= 1
        (rule,) = yaml.safe_load(ADAPTER.read_text())["rules"]
        assert {s["metric"]["pod"] for s in query(rule["seriesQuery"])} == {"fastsock-0"}
        (adapter,) = query(adapter_query('namespace="default",pod=~"fastsock-0"', "pod"))
        assert adapter["metric"] == {"pod": "fastsock-0"}
        assert 0 <= float(adapter["value"][1]) <= 1
        # another namespace's pods are not this Deployment's
        assert query(adapter_query('namespace="other",pod=~"fastsock-0"', "pod")) == []
    finally:
        prom.terminate()
        prom.wait(10)
