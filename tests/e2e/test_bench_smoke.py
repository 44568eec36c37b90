"""`make bench` keeps working: a tiny run of every benchmark against the test stack.

No speed is asserted here; the run must finish and report a figure for each benchmark.
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
        cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    figures = json.loads((tmp_path / "benchmarks.json").read_text())
    assert figures["push_api"]["push"]["requests"] > 0
    assert figures["push_api"]["anchor_noop"]["requests"] > 0
    assert figures["end_to_end"]["latency"]["sent"] == figures["end_to_end"]["latency"]["pushes"]
    assert figures["end_to_end"]["backlog"]["deliveries_per_s"] > 0
    assert figures["end_to_end"]["anchor_sftp_b"]["files_per_s"] > 0
    assert figures["relay"]["relay"]["events_per_s"] > 0
    assert figures["relay"]["anchor_producer"]["events_per_s"] > 0
    assert figures["audit_ingest"]["ingest"]["events_per_s"] > 0
    assert figures["audit_ingest"]["anchor_copy"]["rows_per_s"] > 0
    assert (
        "| benchmark | OrderFlow | anchor | ratio | target |"
        in (tmp_path / "benchmarks.md").read_text()
    )
