"""`make bench` keeps working: a tiny run of every benchmark against the test stack.

No speed is asserted here; the run must finish and report a figure for each benchmark,
the pgbench replay must be recorded from the service and change one draft per
transaction, and every process of the stack must have its peak RSS and CPU reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.stack

REPO = Path(__file__).resolve().parents[2]


def test_every_benchmark_runs_and_reports_its_figures(stack: Any, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ORDERFLOW_STATE_DIR": str(stack.state_dir),
        "ORDERFLOW_PORT_OFFSET": str(stack.port_offset),
    }
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--out", str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text())
    assert figures["meta"]["repeat"] == 1

    def run(name: str) -> dict[str, Any]:
        runs = figures[name]["runs"]
        assert len(runs) == 1 and runs[0] is not None, figures[name]
        return dict(runs[0])

    push = run("push_api")
    assert push["push"]["requests"] > 0
    assert push["anchor_noop"]["requests"] > 0
    assert push["cpu_ms_per_push"]["draft-api"] > 0
    assert push["cpu_ms_per_push_until_drained"]["postgres"] > 0

    recorded = figures["pgbench_replay"]["recorded"]
    script = "\n".join(recorded["script"])
    assert recorded["statements_per_push"] >= 3
    assert "BEGIN;" in script and "COMMIT;" in script
    assert "UPDATE bench_pgreplay.draft_order" in script
    assert {"draft_id", "export_id"} <= set(recorded["variables"])
    replay = run("pgbench_replay")
    assert replay["tx_per_s"] > 0
    assert replay["drafts_changed"] == replay["transactions"]

    if (REPO / "tests" / "bench" / "seed_design.py").exists():
        peer = run("seed_design")
        assert peer["push"]["req_per_s"] > 0
        assert peer["end_to_end"]["p50_ms"] > 0

    e2e = run("end_to_end")
    assert e2e["latency"]["sent"] == e2e["latency"]["pushes"]
    assert e2e["latency"]["landed"] == e2e["latency"]["pushes"]
    assert e2e["latency"]["file_p50_ms"] > 0
    assert e2e["backlog"]["deliveries_per_s"] > 0
    assert e2e["anchor_sftp_b"]["files_per_s"] > 0
    relay = run("relay")
    assert relay["relay"]["events_per_s"] > 0
    assert relay["anchor_producer"]["events_per_s"] > 0
    audit = run("audit_ingest")
    assert audit["ingest"]["events_per_s"] > 0
    assert audit["ingest_many_orgs"]["events_per_s"] > 0
    assert audit["ingest_many_orgs"]["orgs"] > 1
    assert audit["anchor_copy"]["rows_per_s"] > 0

    processes = [
        name
        for service in ("draft-api", "export-service", "audit-service")
        for name in stack.processes_of(service)
    ]
    assert all(figures["peak_rss_mib"].get(name, 0) > 0 for name in processes), figures[
        "peak_rss_mib"
    ]
    report = (tmp_path / "benchmarks.md").read_text()
    assert "| benchmark | OrderFlow | anchor | ratio | target |" in report
    assert "pgbench replay of the push's own" in report
    assert "CPU milliseconds per accepted push" in report
