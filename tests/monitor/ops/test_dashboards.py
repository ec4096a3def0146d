"""The dashboards' JSON as Grafana's file provisioning loads it. Grafana itself is not installable on this
machine (no Debian package, no network for its release tarball), so its loader is not run: the structure
it requires is checked here, and every query is executed by tests/monitor/ops/test_prometheus.py."""

from __future__ import annotations

import yaml

from tests.monitor.ops.dashboards import DASHBOARDS, POSTGRES_UID, PROMETHEUS_UID, ROOT, dashboards, targets

PROVISIONING = ROOT / "deploy" / "grafana" / "provisioning"


def test_four_dashboards_with_unique_uids_and_well_formed_panels():
    found = dashboards()
    assert set(found) == {"sre-overview.json", "quality.json", "review.json", "shadow.json"}
    uids = [d["uid"] for d in found.values()]
    assert len(set(uids)) == len(uids)
    for name, dashboard in found.items():
        assert isinstance(dashboard["schemaVersion"], int) and dashboard["title"] and dashboard["panels"], name
        assert "id" not in dashboard or dashboard["id"] is None, f"{name}: a provisioned dashboard has no id"
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(set(ids)) == len(ids), name
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert {"x", "y", "w", "h"} <= set(grid) and grid["x"] + grid["w"] <= 24, (name, panel["title"])
            assert panel["type"] in {"timeseries", "stat", "table", "gauge", "bargauge"}, panel["type"]
            assert panel["datasource"]["uid"] in {PROMETHEUS_UID, POSTGRES_UID}, panel["title"]
            refs = [t["refId"] for t in panel["targets"]]
            assert refs and len(set(refs)) == len(refs), panel["title"]
            for target in panel["targets"]:
                assert target.get("expr") or target.get("rawSql"), panel["title"]


def test_provisioning_points_at_the_dashboards_and_the_uids_they_use():
    sources = yaml.safe_load((PROVISIONING / "datasources" / "watchkeeper.yaml").read_text())
    assert sources["apiVersion"] == 1
    by_uid = {s["uid"]: s["type"] for s in sources["datasources"]}
    assert by_uid == {PROMETHEUS_UID: "prometheus", POSTGRES_UID: "grafana-postgresql-datasource"}
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "watchkeeper.yaml").read_text())
    assert providers["apiVersion"] == 1 and providers["providers"][0]["type"] == "file"
    assert providers["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/watchkeeper"
    assert DASHBOARDS.is_dir()


def test_every_panel_has_a_query_and_prometheus_queries_only_name_metrics_we_export():
    exported = {
        "watchkeeper_records_total", "watchkeeper_consumer_lag", "watchkeeper_batch_duration_seconds_bucket",
        "watchkeeper_store_duration_seconds_bucket", "watchkeeper_commit_duration_seconds_bucket",
        "watchkeeper_database_errors_total", "watchkeeper_database_up", "watchkeeper_consumers",
        "watchkeeper_assigned_partitions", "watchkeeper_alerts_firing", "watchkeeper_alert_outbox_pending",
        "watchkeeper_alert_delivery_failures_total", "watchkeeper_build_info", "watchkeeper_findings_total",
        "watchkeeper_drift_events_total", "watchkeeper_review_queue_depth", "watchkeeper_shadow_replays_total",
        "watchkeeper_shadow_replay_duration_seconds_bucket", "watchkeeper_reference_up",
        "watchkeeper_reference_requests_waiting", "watchkeeper_reference_kv_cache_usage_ratio",
    }
    import re

    for name, title, expr in targets("prometheus"):
        for metric in re.findall(r"watchkeeper_[a-z_]+", expr):
            assert metric in exported, f"{name} / {title}: {metric} is not a metric Watchkeeper exports"
    assert len(targets("postgres")) >= 6
