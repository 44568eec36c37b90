"""The devstack's monitoring: MONITORING=1/0 and its marker, the services' tracing
environment, and a Prometheus config (accepted by promtool) with a target for every
process of the stack."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from orderflow_devstack import monitoring
from orderflow_devstack.config import StackConfig

from tests.unit.deploy.test_prometheus_rules import promtool


def config(tmp_path: Path, environment: str = "development", workers: int = 3) -> StackConfig:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EXPORT_WORKERS", str(workers))
        return StackConfig.from_env(
            state_dir=tmp_path / "state", port_offset=500, environment=environment
        )


def test_monitoring_is_off_until_asked_and_remembered_per_state_dir(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    assert not monitoring.enabled(cfg, {})
    assert monitoring.enabled(cfg, {"MONITORING": "1"})
    assert monitoring.enabled(cfg, {})  # remembered: `make restart` keeps it
    assert not monitoring.enabled(cfg, {"MONITORING": "0"})
    assert not monitoring.enabled(cfg, {})
    assert monitoring.enabled(config(tmp_path, "test"), {})  # the test stack always


def test_services_export_to_the_stack_s_zipkin_when_on(tmp_path: Path) -> None:
    cfg = config(tmp_path, "test")
    env = cfg.service_env("export-service", "export-worker-1")
    assert env["OTEL_EXPORTER_ZIPKIN_ENDPOINT"] == "http://127.0.0.1:9911/api/v2/spans"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env
    described = cfg.describe()["monitoring"]
    assert described["zipkin"]["ui"] == "http://127.0.0.1:9911/zipkin/"
    assert described["prometheus"]["url"] == "http://127.0.0.1:9590"


def test_the_scrape_config_has_every_process_and_promtool_accepts_it(tmp_path: Path) -> None:
    cfg = config(tmp_path, workers=3)
    rendered = monitoring.prometheus_config(cfg)
    parsed = yaml.safe_load(rendered)
    targets = {
        static["labels"]["process"]: static["targets"]
        for job in parsed["scrape_configs"]
        for static in job["static_configs"]
    }
    processes = cfg.describe()["processes"]
    assert set(targets) == set(processes)
    assert {"export-worker-1", "export-worker-3", "audit-service-ingest"} <= set(targets)
    for name, entry in processes.items():
        assert targets[name] == [f"127.0.0.1:{entry['port']}"]
    path = tmp_path / "prometheus.yml"
    path.write_text(rendered)
    checked = promtool("check", "config", path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "rule files found" in checked.stdout + checked.stderr
