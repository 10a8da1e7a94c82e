"""Renders the Prometheus Operator's PrometheusRule from monitoring/alerts.yml, so the alert
rules have one source: `python k8s/render.py`. A test checks that the committed file matches."""
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "monitoring" / "alerts.yml"
RULE = ROOT / "k8s" / "components" / "prometheus-operator" / "prometheusrule.yaml"


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)     # lists indented under their key


def _text(dumper, value: str):
    style = "|" if "\n" in value else None              # multi-line PromQL stays readable
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _text)


def prometheus_rule() -> str:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    rule = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "fastsock", "labels": {"app.kubernetes.io/name": "fastsock"}},
        "spec": {"groups": groups},
    }
    body = yaml.dump(rule, Dumper=_Dumper, sort_keys=False, width=100, allow_unicode=True)
    return "# Generated from monitoring/alerts.yml by k8s/render.py: edit those, not this.\n" + body


def main() -> None:
    RULE.write_text(prometheus_rule())


if __name__ == "__main__":
    main()
