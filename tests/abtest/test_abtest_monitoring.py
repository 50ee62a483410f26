"""The alert rules and the Grafana dashboard (deploy/) use only the service's metrics, fire
when they should (promtool), and the service registers exactly the documented metrics."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import require_module

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "recforge.json"
#: PromQL words that are not metric names
_PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                 "or", "unless", "offset", "le", "inf", "nan"}


def documented_metrics() -> dict[str, str]:
    """Metric name -> type, from the table in deploy/README.md."""
    rows = re.findall(r"^\| `(recforge_\w+)` \| (\w+) \|", (DEPLOY / "README.md").read_text(),
                      re.MULTILINE)
    return dict(rows)


def series_names() -> set[str]:
    """The series a scrape can hold: histograms as their _bucket, _sum and _count."""
    names = set()
    for name, kind in documented_metrics().items():
        names |= ({f"{name}_{s}" for s in ("bucket", "sum", "count")} if kind == "histogram"
                  else {name})
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: identifiers left once strings, label matchers,
    ranges, function calls, grouping clauses and keywords are removed."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\$\w+", " ", text)  # Grafana variables ($__rate_interval)
    names = {m.group(1) for m in re.finditer(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\(?)", text)
             if not m.group(2)}  # a name followed by "(" is a function
    return names - _PROMQL_WORDS


def test_metric_name_parser_finds_what_an_expression_reads() -> None:
    expr = ('histogram_quantile(0.95, sum by (le, route) (rate(foo_bucket{route=~"a|b"}[5m])))'
            ' / max without (pid) (bar) > 0.2 and on (job) baz')
    assert metric_names(expr) == {"foo_bucket", "bar", "baz"}


def alert_rules() -> list[dict]:
    yaml = require_module("yaml")
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_documented_metrics_are_the_agreed_names() -> None:
    assert documented_metrics() == {
        "recforge_requests_total": "counter", "recforge_request_latency_seconds": "histogram",
        "recforge_stage_latency_seconds": "histogram", "recforge_model_info": "gauge",
        "recforge_feature_store_latency_seconds": "histogram",
        "recforge_event_lag_seconds": "gauge", "recforge_list_diversity": "gauge",
        "recforge_catalogue_coverage": "gauge", "recforge_item_age_days": "gauge",
        "recforge_popularity_bias": "gauge"}


def test_alert_rules_read_only_documented_metrics_and_cover_the_issue() -> None:
    rules = alert_rules()
    known = series_names()
    for rule in rules:
        used = metric_names(rule["expr"])
        assert used and used <= known, (rule["alert"], used - known)
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"]
    by_name = {rule["alert"]: " ".join(rule["expr"].split()) for rule in rules}
    assert "recforge_list_diversity) < 0.3" in by_name["RecforgeLowDiversity"]
    assert by_name["RecforgeHighLatencyP95"].startswith("histogram_quantile(0.95,")
    assert by_name["RecforgeHighLatencyP95"].endswith("> 0.2")
    assert 'status=~"5.."' in by_name["RecforgeHighErrorRate"]
    assert "recforge_event_lag_seconds" in by_name["RecforgeEventLag"]


def test_dashboard_is_valid_and_queries_only_documented_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    known = series_names()
    used: set[str] = set()
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = metric_names(target["expr"])
            assert names and names <= known, (panel["title"], names - known)
            used |= names
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            metric, label = re.fullmatch(r"label_values\((\w+), (\w+)\)",
                                         variable["definition"]).groups()
            assert metric in known and label == variable["name"]
    # every documented metric is on the dashboard
    assert {re.sub(r"_bucket$", "", n) for n in used} == set(documented_metrics())


def test_service_registers_exactly_the_documented_metrics() -> None:
    require_module("prometheus_client")
    from recforge.serving.metrics import Metrics

    kinds = {family.name + ("_total" if family.type == "counter" else ""): family.type
             for family in Metrics().registry.collect()}
    assert kinds == documented_metrics()


def promtool() -> str:
    """The promtool binary (Debian package prometheus): skipped when absent, except on CI."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("promtool not found: .ci/run installs the Debian package prometheus")
        pytest.skip("promtool not installed (apt-get install prometheus)")
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=60,
                          check=False)


def test_promtool_checks_the_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_promtool_unit_tests_fire_each_alert_exactly_when_due() -> None:
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
