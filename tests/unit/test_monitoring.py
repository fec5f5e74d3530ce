"""The compose stack's monitoring files: Grafana's provisioned dashboard and datasource, Prometheus's scrape jobs.

Every panel's query names a metric family the platform exports (the `metrics` branch's final names, listed
in README "Metrics"), so a renamed family breaks this test instead of leaving a panel empty.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "monitoring"
# Families /metrics serves (API and worker exporters), and Prometheus's own `up`.
KNOWN_FAMILIES = {
    "evaluator_http_requests_total", "evaluator_http_request_duration_seconds", "evaluator_intake_events_total",
    "evaluator_run_stage_duration_seconds", "evaluator_run_failures_total", "evaluator_runs_finished_total",
    "evaluator_runs", "evaluator_runs_lease_expired", "evaluator_run_worker_crashes_total",
    "evaluator_outbox_messages_waiting", "evaluator_queue_depth", "evaluator_queue_delayed",
    "evaluator_queue_dead_letters", "evaluator_workers_live", "evaluator_worker_processes",
    "evaluator_sandboxes_in_use", "dramatiq_messages_total", "dramatiq_message_errors_total",
    "dramatiq_message_retries_total", "dramatiq_message_rejects_total", "dramatiq_messages_inprogress",
    "dramatiq_delayed_messages_inprogress", "dramatiq_message_duration_milliseconds", "up",
}
HISTOGRAMS = {"evaluator_http_request_duration_seconds", "evaluator_run_stage_duration_seconds",
              "dramatiq_message_duration_milliseconds"}
# What the issue asks the board to show, as the family each needs.
REQUIRED = {"runs by status": "evaluator_runs", "stage latencies": "evaluator_run_stage_duration_seconds",
            "queue depth": "evaluator_queue_depth", "failures by code": "evaluator_run_failures_total",
            "worker liveness": "evaluator_workers_live"}
PROMQL_WORDS = {"sum", "max", "min", "avg", "by", "without", "rate", "increase", "histogram_quantile", "le",
                "count", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "offset"}


def dashboard() -> dict:
    return json.loads((MONITORING / "grafana" / "dashboards" / "evaluator.json").read_text())


def families(expr: str) -> set[str]:
    """The metric names an expression reads (histogram series mapped to their family)."""
    without_labels = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", expr)
    names = set()
    for word in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", without_labels):
        if word in PROMQL_WORDS or word.startswith("__") or re.fullmatch(r"[a-z]", word):
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", word)
        names.add(base if base in HISTOGRAMS else word)
    return names - {"status", "stage", "queue", "code", "host", "route", "le"}


def test_every_panel_queries_known_families_through_the_provisioned_datasource():
    board = dashboard()
    datasources = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
                                 .read_text())["datasources"]
    [prometheus] = datasources
    assert prometheus["url"] == "http://prometheus:9090" and prometheus["type"] == "prometheus"
    assert board["uid"] and board["panels"]
    used = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == prometheus["uid"], panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == prometheus["uid"]
            found = families(target["expr"])
            assert found, target["expr"]
            unknown = found - KNOWN_FAMILIES
            assert not unknown, f"panel {panel['title']!r} reads unknown families {unknown}"
            used |= found
    missing = {what: family for what, family in REQUIRED.items() if family not in used}
    assert not missing, f"the board does not show {missing}"
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))


def test_the_dashboard_provider_loads_the_folder_compose_mounts():
    provider = yaml.safe_load((MONITORING / "grafana" / "provisioning" / "dashboards" / "evaluator.yml")
                              .read_text())["providers"][0]
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in grafana["volumes"]}
    assert mounts[provider["options"]["path"]] == "./monitoring/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./monitoring/grafana/provisioning"
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/evaluator.json"


def test_prometheus_scrapes_the_api_and_every_worker_on_their_compose_ports():
    settings = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in settings["scrape_configs"]}
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert set(jobs) == {"api", "worker"}
    api_sd, worker_sd = jobs["api"]["dns_sd_configs"][0], jobs["worker"]["dns_sd_configs"][0]
    assert api_sd["names"] == ["api"] and api_sd["port"] == int(compose["api"]["environment"]["EVALUATOR_API_PORT"])
    assert worker_sd["names"] == ["worker"]
    assert worker_sd["port"] == int(compose["worker"]["environment"]["EVALUATOR_WORKER_METRICS_PORT"])
    assert compose["worker"]["environment"]["EVALUATOR_WORKER_METRICS_HOST"] == "0.0.0.0"
    assert all(job.get("metrics_path", "/metrics") == "/metrics" for job in jobs.values())
