"""The Grafana dashboard beside the chart asks only for metrics the code exports, and shows
every metric an operator needs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

import sagaline.telemetry.metrics  # noqa: F401 - registers the metrics

DASHBOARD = Path(__file__).parents[2] / "charts/sagaline-operator/dashboards/sagaline.json"
# What operators ask (docs/observability.md, "Metrics"): each must be on some panel.
REQUIRED = {
    "sagaline_sagas_total",
    "sagaline_saga_duration_seconds_bucket",
    "sagaline_sagas_in_flight",
    "sagaline_relay_backlog",
    "sagaline_relay_oldest_unpublished_age_seconds",
    "sagaline_relay_published_total",
    "sagaline_consumer_lag",
    "sagaline_resends_total",
    "sagaline_dead_letters_total",
    "sagaline_saga_failures_total",
    "sagaline_consumer_batch_seconds_bucket",
}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool"}
PROMQL_WORDS |= {"and", "or", "unless", "inf", "nan"}
_QUOTED = re.compile(r'"(?:[^"\\]|\\.)*"')
_MATCHERS = re.compile(r"\{[^}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPINGS = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?")


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers that are neither functions (a
    name followed by `(`), keywords, label names (in matchers and groupings) nor variables."""
    stripped = _QUOTED.sub('""', expr)
    stripped = _MATCHERS.sub(" ", stripped)
    stripped = _RANGES.sub(" ", stripped)
    stripped = _GROUPINGS.sub(" ", stripped)
    return {
        name
        for name, call in _IDENTIFIER.findall(stripped)
        if not call and name.lower() not in PROMQL_WORDS
    }


def exported_names() -> set[str]:
    """Every series name the registered metrics export (a Counter `x`: `x_total`; a Histogram:
    `x_bucket`, `x_sum`, `x_count`), labelled children or not."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    names: set[str] = set()
    for family in REGISTRY.collect():
        names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def targets() -> list[dict[str, Any]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_the_extraction_finds_metrics_and_only_metrics() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, service) (rate(a_bucket{service=~"x|y"}'
        "[$__rate_interval]))) / on (service) b_total offset 5m + c"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


@pytest.mark.parametrize("target", targets(), ids=lambda target: target["expr"][:60])
def test_every_panel_asks_for_metrics_the_code_exports(target: dict[str, Any]) -> None:
    names = metric_names(target["expr"])

    assert names, "a target reads no metric"
    assert names <= exported_names(), f"not exported: {sorted(names - exported_names())}"


def test_every_metric_an_operator_needs_is_on_a_panel() -> None:
    shown = set().union(*(metric_names(target["expr"]) for target in targets()))

    assert sorted(REQUIRED - shown) == []
    assert exported_names() >= REQUIRED


def test_panels_query_the_datasource_the_dashboard_is_given() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}

    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    for panel in dashboard["panels"]:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert all(t["datasource"]["uid"] == "${datasource}" for t in panel["targets"])
    assert len({panel["id"] for panel in dashboard["panels"]}) == len(dashboard["panels"])
