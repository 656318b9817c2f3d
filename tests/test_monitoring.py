"""The monitoring kit under deploy/: the Prometheus alert rules and the Grafana dashboard.

What users import has to work against what the daemon really serves:

- promtool checks the rules (deploy/prometheus/dropzone-alerts.yml, lint errors fatal), runs
  their unit tests (dropzone-alerts.test.yml), and parses every query of the dashboard
  (deploy/grafana/dropzone.json) as PromQL. promtool comes with Debian's ``prometheus``
  package; without it these tests skip, except in CI (``CI`` set), where they fail.
- every metric name the dashboard's queries and the rules' expressions use is one that
  ``/metrics`` exposes. The exposed names are derived from the metric families' types (a
  counter ``x`` is sampled as ``x_total``, a histogram as ``x_bucket``, ``x_sum`` and
  ``x_count``, a gauge as itself), once from a real ``Metrics`` registry with every series a
  daemon registers, and once from a real daemon's ``/metrics`` (moto and the Ark emulator).
  ``up`` is the one name Prometheus makes itself, for every scrape.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from dropzone.daemon.lease import LeaseKeeper
from dropzone.ledger import SqliteLedger
from dropzone.ops import Metrics
from dropzone.runtime import utc_now
from tests.harness import Stage, free_port, load_scale, required_program, wait_for

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from prometheus_client import Metric

REPO = Path(__file__).resolve().parent.parent
DASHBOARD = REPO / "deploy" / "grafana" / "dropzone.json"
RULES = REPO / "deploy" / "prometheus" / "dropzone-alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "dropzone-alerts.test.yml"

# Made by Prometheus for every target it scrapes, never served by the daemon.
PROMETHEUS_MADE = frozenset({"up"})
ALERTS = frozenset(
    {
        "DropzoneDown",
        "DropzoneBacklogOld",
        "DropzoneNoSuccessfulPoll",
        "DropzoneArkUnreachable",
        "DropzoneFilesRejected",
        "DropzoneAccountRefused",
        "DropzoneEventFeedLagging",
        "DropzoneNotificationsGivenUp",
    }
)

# String literals go first: a label value such as job=~".*dropzone.*" names no metric.
_STRING_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BY = re.compile(r"\bby \(([^)]*)\)")
_METRIC_NAME = re.compile(r"(?<![\w:$])(dropzone_\w+|up)(?![\w:])")
# Grafana's variables, as Grafana would fill them in, so that promtool can parse the query.
_GRAFANA_VALUES = {
    "$__rate_interval": "5m",
    "$__interval": "1m",
    "$__range": "6h",
    "$watch": ".*",
}


# --- names -----------------------------------------------------------------------------------


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression (or a Grafana ``label_values`` query) selects."""
    return set(_METRIC_NAME.findall(_STRING_LITERAL.sub('""', expr)))


def family_sample_names(family: Metric) -> set[str]:
    """The names a scrape of ``family`` yields: from its type, so that a family with no
    series yet (a labelled one before its first event) counts, and from its samples."""
    if family.type == "counter":
        names = {f"{family.name}_total"}
    elif family.type == "histogram":
        names = {f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count")}
    elif family.type == "gauge":
        names = {family.name}
    else:
        pytest.fail(f"{family.name}: a {family.type} family; say which names it exposes")
    return names | {sample.name for sample in family.samples}


def sample_names(families: Iterable[Metric]) -> set[str]:
    return set().union(*map(family_sample_names, families))


def registry_families(tmp_path: Path) -> dict[str, set[str]]:
    """What a daemon's registry can expose, by family: the series of ``Metrics`` and those
    that ``dropzone.daemon.build`` adds (the node's lease, the outage gauge)."""
    metrics = Metrics(["chat"])
    with SqliteLedger.open(tmp_path / "ledger.sqlite3") as ledger:
        metrics.track_node(LeaseKeeper(ledger=ledger, ttl_s=30, clock=utc_now))
        metrics.track_ark_outage(lambda: 0.0)
        return {family.name: family_sample_names(family) for family in metrics.registry.collect()}


def registry_names(tmp_path: Path) -> set[str]:
    return set().union(*registry_families(tmp_path).values())


# --- the files -------------------------------------------------------------------------------


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside a collapsed row too."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_queries(board: dict[str, Any]) -> dict[str, str]:
    """Each query, by where it is (panel title and refId, or the template variable)."""
    queries = {
        f"{panel['title']} (panel {panel['id']}, {target['refId']})": target["expr"]
        for panel in panels(board)
        for target in panel.get("targets", [])
    }
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            queries[f"variable ${variable['name']}"] = variable["definition"]
    return queries


def rules() -> list[dict[str, Any]]:
    loaded = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def unexposed(queries: dict[str, str], exposed: set[str]) -> dict[str, set[str]]:
    """Per query, the metric names it uses that nothing exposes. A query naming no metric
    at all is reported too: the name extraction would be missing it."""
    missing = {}
    for where, expr in queries.items():
        assert "__name__" not in expr, f"{where}: select by name, not __name__: {expr}"
        names = metric_names(expr)
        if not names:
            missing[where] = {f"(no metric name found in {expr!r})"}
        elif names - exposed:
            missing[where] = names - exposed
    return missing


# --- promtool --------------------------------------------------------------------------------


def promtool() -> str:
    return required_program("promtool", "prometheus", "check the alert rules")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60 * load_scale(),
    )


def test_promtool_checks_the_rules_lint_included() -> None:
    done = run_promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_rules_unit_tests_pass() -> None:
    done = run_promtool("test", "rules", str(RULE_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_has_a_case_that_fires_and_one_that_does_not() -> None:
    """An alert tested only firing could fire always; one tested only silent, never."""
    cases = [
        case
        for test in yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))["tests"]
        for case in test["alert_rule_test"]
    ]
    alerts = {rule["alert"] for rule in rules()}
    assert alerts == ALERTS
    fires = {case["alertname"] for case in cases if case["exp_alerts"]}
    silent = {case["alertname"] for case in cases if not case["exp_alerts"]}
    assert (sorted(ALERTS - fires), sorted(ALERTS - silent)) == ([], [])
    for case in cases:
        for expected in case["exp_alerts"]:
            assert expected["exp_labels"]["severity"] in {"critical", "warning"}
            assert set(expected["exp_annotations"]) == {"summary", "description"}


def test_every_alert_says_how_bad_and_what_to_do() -> None:
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description"}, rule["alert"]
        grouped_by = {
            label.strip() for labels in _BY.findall(rule["expr"]) for label in labels.split(",")
        }
        if "watch" in grouped_by:
            assert "{{ $labels.watch }}" in rule["annotations"]["summary"], rule["alert"]


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each query, its Grafana variables filled in, as a recording rule: promtool then
    parses it as Prometheus would."""
    recorded = []
    for number, query in enumerate(dashboard_queries(dashboard()).values()):
        if query.startswith("label_values("):
            continue  # Grafana's own function, not PromQL; its metric is checked below
        expr = query
        for variable, value in _GRAFANA_VALUES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"a Grafana variable the test does not know: {query}"
        recorded.append({"record": f"dashboard:query_{number}", "expr": expr})
    assert len(recorded) >= 20
    as_rules = tmp_path / "dashboard-queries.yml"
    as_rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recorded}]}))
    done = run_promtool("check", "rules", str(as_rules))
    assert done.returncode == 0, done.stdout + done.stderr


# --- the dashboard's shape -------------------------------------------------------------------


def test_the_dashboard_imports_into_any_grafana() -> None:
    """No data source of the author's Grafana: every query asks ``${datasource}``, a variable
    the importer chooses; panel ids are unique; the watch variable lists the watches."""
    board = dashboard()
    assert 36 <= board["schemaVersion"] <= 41
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
        "datasource",
        "prometheus",
    )
    assert variables["watch"]["definition"] == (
        "label_values(dropzone_backlog_oldest_age_seconds, watch)"
    )
    ours = {"type": "prometheus", "uid": "${datasource}"}
    every = list(panels(board))
    assert len({panel["id"] for panel in every}) == len(every)
    for panel in every:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == ours, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == ours, panel["title"]


# --- names against what is exposed -----------------------------------------------------------


def test_the_dashboard_and_rules_name_only_series_the_registry_exposes(tmp_path: Path) -> None:
    exposed = registry_names(tmp_path) | PROMETHEUS_MADE
    assert unexposed(dashboard_queries(dashboard()), exposed) == {}
    assert unexposed({rule["alert"]: rule["expr"] for rule in rules()}, exposed) == {}


def test_the_dashboard_shows_every_family_the_registry_has(tmp_path: Path) -> None:
    """A series added to the daemon and not to the dashboard fails here (``*_created`` is
    a counter's start time, nothing to plot)."""
    shown = set().union(*map(metric_names, dashboard_queries(dashboard()).values()))
    not_shown = {
        family
        for family, names in registry_families(tmp_path).items()
        if not {name for name in names if not name.endswith("_created")} & shown
    }
    assert not_shown == set()


@pytest.mark.slow
def test_the_dashboard_and_rules_name_only_series_a_running_daemon_serves(stage: Stage) -> None:
    """A real daemon, after its first poll and one submission, scraped over HTTP."""
    port = free_port()
    stage.daemon.update({"listen": f"127.0.0.1:{port}"})
    stage.put("a.jsonl")
    process = stage.spawn("run")
    scraped: list[str] = []

    def scrape_shows_a_poll_and_a_submission() -> bool:
        try:
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        except httpx.TransportError:
            return False  # not listening yet
        scraped[:] = [answer.text]
        seen = {
            (sample.name, sample.labels.get("outcome", "")): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
            if sample.labels.get("watch") == "chat"
        }
        return ("dropzone_last_successful_poll_timestamp_seconds", "") in seen and seen.get(
            ("dropzone_submissions_total", "submitted")
        ) == 1

    try:
        wait_for(scrape_shows_a_poll_and_a_submission, what="a poll and a submission in /metrics")
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=30 * load_scale())
    assert process.returncode == 0, err
    exposed = sample_names(text_string_to_metric_families(scraped[0])) | PROMETHEUS_MADE
    assert unexposed(dashboard_queries(dashboard()), exposed) == {}
    assert unexposed({rule["alert"]: rule["expr"] for rule in rules()}, exposed) == {}
