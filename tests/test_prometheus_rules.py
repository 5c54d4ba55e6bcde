"""The Prometheus side of imgproc's metrics (deploy/): checked and unit-tested with the real ``promtool``.

``promtool check config``, ``check rules`` and ``test rules`` must pass; a broken copy of the rule
tests must fail (so they can); the Grafana dashboard must parse, and every ``imgproc_*`` name in its
and the rules' expressions must be one the service exports (``METRIC_NAMES``). Like the Redis and
MariaDB fixtures, a missing ``promtool`` fails the test when ``CI`` is set and skips it elsewhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RULES = PROMETHEUS_DIR / "rules.yml"
RULES_TEST = PROMETHEUS_DIR / "rules_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "imgproc-dashboard.json"

# What GET /metrics exports (prometheus_client names, without the histograms' series suffixes).
COUNTERS = frozenset(
    {
        "imgproc_http_requests_total",
        "imgproc_jobs_enqueued_total",
        "imgproc_jobs_finished_total",
        "imgproc_jobs_failed_total",
        "imgproc_jobs_retried_total",
        "imgproc_megapixels_processed_total",
        "imgproc_webhook_deliveries_total",
        "imgproc_rate_limited_total",
        "imgproc_results_review_total",
    }
)
HISTOGRAMS = frozenset(
    {
        "imgproc_http_request_duration_seconds",
        "imgproc_job_duration_seconds",
        "imgproc_job_queue_wait_seconds",
        "imgproc_job_stage_seconds",
    }
)
GAUGES = frozenset(
    {"imgproc_queue_depth", "imgproc_jobs_running", "imgproc_workers", "imgproc_redis_up", "imgproc_paused"}
)
METRIC_NAMES = COUNTERS | HISTOGRAMS | GAUGES

ALERTS = (
    "ImgprocQueueBacklog",
    "ImgprocJobFailureRate",
    "ImgprocNoWorker",
    "ImgprocWebhooksUndelivered",
    "ImgprocRedisDown",
    "ImgprocApiDown",
)

METRIC_TOKEN = re.compile(r"imgproc_[a-z_]+")
HISTOGRAM_SUFFIX = re.compile(r"_(bucket|sum|count)$")
# Grafana's variables, replaced by values PromQL parses, to have promtool check the dashboard's queries.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h", "$queue": ".*"}


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool is not on PATH: apt-get install prometheus (Debian's package ships promtool)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{result.args} exited {result.returncode}:\n{output}"


def metric_names(expr: str) -> set[str]:
    """The imgproc metric names in an expression, a histogram's _bucket/_sum/_count as the histogram."""
    names = set()
    for token in METRIC_TOKEN.findall(expr):
        base = HISTOGRAM_SUFFIX.sub("", token)
        names.add(base if base in HISTOGRAMS else token)
    return names


def rule_exprs(text: str) -> list[str]:
    """The ``expr:`` values of a rules file, inline or ``|`` / ``>`` blocks (no YAML library here)."""
    exprs = []
    lines = text.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(?:- )?expr:\s*(.*)$", line)
        if not match:
            continue
        indent, value = len(match.group(1)), match.group(2).strip()
        if value and value[0] in "|>":
            block = []
            for following in lines[i + 1 :]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following)
            value = "\n".join(block)
        exprs.append(value.strip("'\""))
    return exprs


def dashboard_panels(dashboard: dict) -> list[dict]:
    panels = []
    for panel in dashboard["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # a collapsed row holds its panels
    return panels


def dashboard_exprs(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        exprs.append(query.get("query", "") if isinstance(query, dict) else str(query or ""))
    return exprs


def test_promtool_check_config(promtool):
    assert_ok(run_promtool(promtool, "check", "config", CONFIG))


def test_promtool_check_rules(promtool):
    result = run_promtool(promtool, "check", "rules", RULES)
    assert_ok(result)
    assert f"{len(ALERTS)} rules found" in result.stdout


def test_promtool_test_rules(promtool):
    assert_ok(run_promtool(promtool, "test", "rules", RULES_TEST))


def test_every_alert_has_a_firing_and_a_silent_case():
    text = RULES_TEST.read_text()
    for alert in ALERTS:
        assert f"alert: {alert}\n" in RULES.read_text()
        cases = re.findall(rf"alertname: {alert}\n\s+exp_alerts:(.*)\n", text)
        assert "" in cases, f"{alert}: no case where it fires (exp_alerts with alerts listed)"
        assert " []" in cases, f"{alert}: no case where it must not fire (exp_alerts: [])"


def _drop_first_expected_alert(text: str) -> str:
    mutated, count = re.subn(r"(?m)^(\s+)exp_alerts:\n(?:\1\s+.*\n)+", r"\1exp_alerts: []\n", text, count=1)
    assert count == 1
    return mutated


def _change_an_expected_severity(text: str) -> str:
    assert "severity: critical" in text
    return text.replace("severity: critical", "severity: page", 1)


@pytest.mark.parametrize("mutate", [_drop_first_expected_alert, _change_an_expected_severity])
def test_rule_tests_can_fail(promtool, tmp_path, mutate):
    text = RULES_TEST.read_text()
    assert "\n  - rules.yml\n" in text
    text = text.replace("\n  - rules.yml\n", f"\n  - {json.dumps(str(RULES))}\n", 1)
    broken = tmp_path / "rules_test.yml"
    broken.write_text(mutate(text))
    result = run_promtool(promtool, "test", "rules", broken)
    assert result.returncode != 0, f"promtool passed a broken copy of the rule tests:\n{result.stdout}"
    assert "FAILED" in result.stdout + result.stderr


def test_rule_expressions_use_only_exported_metrics():
    exprs = rule_exprs(RULES.read_text())
    assert len(exprs) == len(ALERTS)
    used = set().union(*map(metric_names, exprs))
    assert used, "no imgproc metric found in the rules"
    assert used <= METRIC_NAMES, f"unknown metrics in rules.yml: {sorted(used - METRIC_NAMES)}"


def test_rule_test_series_use_only_exported_metrics():
    """A typo in an input series would let a must-not-fire case pass on no data."""
    series = re.findall(r"series:\s*'([a-zA-Z_:][a-zA-Z0-9_:]*)\{", RULES_TEST.read_text())
    assert series
    unknown = set(series) - METRIC_NAMES - {"up"}
    assert not unknown, f"unknown metrics in rules_test.yml input series: {sorted(unknown)}"


def test_dashboard_parses_and_uses_only_exported_metrics():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["title"] and dashboard["schemaVersion"] >= 36
    assert [i["name"] for i in dashboard["__inputs"]] == ["DS_PROMETHEUS"]
    graphs = [p for p in dashboard_panels(dashboard) if p["type"] != "row"]
    for panel in graphs:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("targets") and all(t.get("expr") for t in panel["targets"]), panel["title"]
    ids = [p["id"] for p in dashboard_panels(dashboard)]
    assert len(ids) == len(set(ids))

    used = set().union(*map(metric_names, dashboard_exprs(dashboard)))
    assert used <= METRIC_NAMES, f"unknown metrics in the dashboard: {sorted(used - METRIC_NAMES)}"
    assert used == METRIC_NAMES, f"exported metrics with no panel: {sorted(METRIC_NAMES - used)}"


def test_dashboard_queries_parse(promtool, tmp_path):
    """Each panel query, its Grafana variables filled in, as a recording rule that promtool parses."""
    dashboard = json.loads(DASHBOARD.read_text())
    rules = []
    for n, expr in enumerate(t["expr"] for p in dashboard_panels(dashboard) for t in p.get("targets", [])):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"unhandled Grafana variable in {expr!r}"
        rules.append({"record": f"dashboard:query_{n}", "expr": expr})
    rules_file = tmp_path / "dashboard_rules.yml"  # JSON is YAML
    rules_file.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run_promtool(promtool, "check", "rules", rules_file))
