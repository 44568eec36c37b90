"""SIGKILL of an export-worker container with exports in flight: every draft still
ends PUSHED with exactly one file, nothing lost, duplicated or stuck (the e2e fault
matrix's measure, tests/e2e/flow.py, over the compose stack)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.flow import Flow, Outcome, wait_for
from tests.e2e.test_faults import assert_exactly_once

pytestmark = pytest.mark.stack

N = int(os.environ.get("ORDERFLOW_CONTAINERS_N", "60"))


@pytest.fixture
def flow(stack: Any) -> Iterator[Flow]:
    flow = Flow(stack)
    yield flow
    flow.close()


def test_export_worker_container_sigkill_with_exports_in_flight(stack: Any, flow: Flow) -> None:
    workers = stack.processes_of("export-worker")
    assert len(workers) >= 2, workers  # EXPORT_WORKERS (default 2) containers
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    flow.push_all(drafts[: N // 2])
    wait_for(lambda: flow.statuses(drafts)["PUSHED"] >= 1, timeout=120, what="a first delivery")
    in_flight = N // 2 - flow.statuses(drafts)["PUSHED"]
    stack.kill("export-worker-1")
    assert stack.state("export-worker-1") in {"exited", "stopped"}
    flow.push_all(drafts[N // 2 :])
    stack.start("export-worker-1")
    flow.wait_settled(drafts, timeout=max(240, N * 2))
    outcome = flow.measure(
        Outcome("export-worker container SIGKILL", N, "SIGKILL of export-worker_1"), drafts
    )
    outcome.seconds = time.monotonic() - started
    print(f"\n{outcome} (exports not yet delivered at the kill: {in_flight})")
    assert in_flight > 0, "the kill came after every delivery: nothing was in flight"
    assert_exactly_once(outcome)
