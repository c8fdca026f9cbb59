"""docs/monitoring.md, the Grafana dashboard and the alerting rules name exactly what the metrics registry exports.

Without Prometheus: the registry itself (``Metrics().registry``) is the reference. tests/integration/test_prometheus.py
then runs every query against a real Prometheus scraping a real service.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from slurm_dispatch.service.metrics import PREFIX, Metrics

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "monitoring.md"
DASHBOARD = REPO / "contrib" / "grafana" / "slurm-dispatch.json"
RULES = REPO / "contrib" / "prometheus" / "slurm-dispatch.rules.yml"

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
"""The sample names each type of family is exposed as (no ``_created``: the service turns those series off)."""


def registry_families() -> dict[str, tuple[str, set[str]]]:
    """``{exposed name: (type, label names)}`` for every family the service's registry exports.

    The labelled counters have no series until first used, so one of each is recorded first.
    """
    metrics = Metrics()
    metrics.api_error("unavailable")
    metrics.slurm_operation("submit", ok=True, seconds=0.1)
    families = {}
    for family in metrics.registry.collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        labels = {k for s in family.samples for k in s.labels if k != "le"}
        families[name] = (family.type, labels)
    return families


def exposed_sample_names() -> set[str]:
    """Every sample name a scrape of the service can show (histogram parts, ``_total`` counters, gauges)."""
    names = set()
    for name, (kind, _) in registry_families().items():
        base = name.removesuffix("_total") if kind == "counter" else name
        names |= {base + suffix for suffix in SUFFIXES[kind]}
    return names


def documented() -> dict[str, tuple[str, set[str]]]:
    """``{metric: (type, label names)}`` from the metrics table of docs/monitoring.md."""
    rows = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and re.fullmatch(r"`arvados_\w+`", cells[0]):
            labels = set(re.findall(r"`(\w+)`", cells[2]))
            rows[cells[0].strip("`")] = (cells[1], labels)
    return rows


def test_the_doc_table_lists_every_metric_with_its_type_and_labels() -> None:
    assert documented() == registry_families()


def test_no_counter_or_histogram_has_a_created_series() -> None:
    metrics = Metrics()
    metrics.api_error("unavailable")
    metrics.queued_to_sbatch(1.0)
    samples = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert PREFIX + "api_errors_total" in samples and PREFIX + "queue_to_sbatch_seconds_count" in samples
    assert not [name for name in samples if name.endswith("_created")]


def dashboard_exprs(node: Any) -> list[str]:
    """Every ``expr`` in the dashboard JSON."""
    if isinstance(node, dict):
        own = [node["expr"]] if isinstance(node.get("expr"), str) else []
        return own + [e for v in node.values() for e in dashboard_exprs(v)]
    if isinstance(node, list):
        return [e for v in node for e in dashboard_exprs(v)]
    return []


def rule_exprs() -> list[str]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [str(rule["expr"]) for group in groups for rule in group["rules"]]


def metric_names(expr: str) -> set[str]:
    return set(re.findall(r"\barvados_\w+", expr))


DASHBOARD_JSON = json.loads(DASHBOARD.read_text(encoding="utf-8"))


@pytest.mark.parametrize("expr", dashboard_exprs(DASHBOARD_JSON) + rule_exprs())
def test_queries_name_only_exported_metrics(expr: str) -> None:
    assert metric_names(expr) or expr.startswith(("up{", "absent(up{")), expr
    assert metric_names(expr) <= exposed_sample_names(), expr


def test_every_dashboard_query_filters_by_the_variables_and_uses_the_datasource_variable() -> None:
    def panels(node: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [p for panel in node for p in [panel, *panels(panel.get("panels", []))]]

    queried = [p for p in panels(DASHBOARD_JSON["panels"]) if p["type"] != "row"]
    assert len(queried) >= 20
    for panel in queried:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"], panel["title"]
            selectors = re.findall(r"\b(?:arvados_\w+|up)\{([^}]*)\}", target["expr"])
            assert selectors, target["expr"]
            assert all('job=~"$job"' in s and 'instance=~"$instance"' in s for s in selectors), target["expr"]
    variables = {v["name"]: v for v in DASHBOARD_JSON["templating"]["list"]}
    assert set(variables) == {"datasource", "job", "instance"}
    assert variables["datasource"]["query"] == "prometheus"
    assert DASHBOARD_JSON["schemaVersion"] >= 39


def test_every_alert_is_documented_and_explained() -> None:
    doc = DOC.read_text(encoding="utf-8")
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    for rule in (r for g in groups for r in g["rules"]):
        assert f"`{rule['alert']}`" in doc, rule["alert"]
        assert rule["labels"]["severity"] in ("critical", "warning"), rule["alert"]
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 80, rule["alert"]
        assert 'job="slurm-dispatch"' in str(rule["expr"]), rule["alert"]
