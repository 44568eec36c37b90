"""deploy/grafana: the push-funnel dashboard queries only metrics the services expose,
covers the funnel's four stages in order, and shows latency percentiles.

"Expose" is read from the metrics the services' code registers with prometheus_client
(the same objects their /metrics serves), with the names as Prometheus stores them: a
counter `x` as `x_total`, a histogram as `x_bucket` / `x_sum` / `x_count`.
"""

from __future__ import annotations

import json
import re
from typing import Any

from orderflow_devstack.config import find_repo_root
from prometheus_client import REGISTRY

DASHBOARD = find_repo_root() / "deploy" / "grafana" / "orderflow-push-funnel.json"
_METRIC = re.compile(r"\b(orderflow_[a-z0-9_]+)\b")


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def queries() -> list[str]:
    return [
        target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])
    ]


def exposed_metric_names() -> set[str]:
    """Every series name the services' registered metrics can produce."""
    # importing registers them (module-level metrics) or the factory does (cached)
    import draft_api.entrypoints.metrics  # noqa: F401
    import orderflow_shared.messaging.consumer
    import orderflow_shared.messaging.outbox
    import orderflow_shared.web  # noqa: F401
    from export_service.adapters.sftp.pool import sftp_metrics
    from export_service.entrypoints.metrics import export_metrics

    export_metrics()
    sftp_metrics()
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def test_every_queried_metric_is_one_the_services_expose() -> None:
    used = {name for expr in queries() for name in _METRIC.findall(expr)}
    assert len(used) >= 10
    missing = used - exposed_metric_names()
    assert not missing, f"the dashboard reads metrics no service exposes: {sorted(missing)}"


def test_the_rows_follow_the_push_funnel_and_show_percentiles() -> None:
    rows = [p["title"] for p in dashboard()["panels"] if p["type"] == "row"]
    stages = ["Pushes", "Exports", "Deliveries", "Results"]
    positions = [next(i for i, title in enumerate(rows) if stage in title) for stage in stages]
    assert positions == sorted(positions), rows
    exprs = queries()
    for histogram in (
        "orderflow_http_request_duration_seconds_bucket",
        "orderflow_export_attempt_seconds_bucket",
        "orderflow_export_delivery_latency_seconds_bucket",
    ):
        quantiles = {
            q
            for expr in exprs
            if histogram in expr
            for q in re.findall(r"histogram_quantile\((0\.\d+)", expr)
        }
        assert {"0.5", "0.95", "0.99"} <= quantiles, histogram


def test_every_panel_uses_the_dashboard_s_prometheus_variable() -> None:
    data = dashboard()
    assert [v["name"] for v in data["templating"]["list"]] == ["datasource"]
    ids = [p["id"] for p in data["panels"]]
    assert len(ids) == len(set(ids))
    for panel in data["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            assert panel["targets"], panel["title"]
