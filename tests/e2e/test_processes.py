"""One process per role: every process of the stack is up on its own port, answers its
own readiness and metrics, and a background role serves nothing else."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.stack

ROLES = {
    "draft-api": ["draft-api", "draft-api-relay", "draft-api-consumer"],
    "export-service": [
        "export-service",
        "export-service-relay",
        "export-service-consumer",
        "export-worker-1",
        "export-worker-2",
    ],
    "audit-service": ["audit-service", "audit-service-ingest", "audit-service-retention"],
}


def test_each_role_is_its_own_process_with_its_own_health_and_metrics(stack: Any) -> None:
    for service, processes in ROLES.items():
        assert stack.processes_of(service) == processes
    ports = {stack.ports[p] for ps in ROLES.values() for p in ps}
    assert len(ports) == sum(len(ps) for ps in ROLES.values())
    for processes in ROLES.values():
        for process in processes:
            base = stack.process_urls[process]
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200, (process, ready.text)
            assert all(v == "ok" for v in ready.json()["checks"].values()), process
            metrics = httpx.get(f"{base}/metrics", timeout=10)
            assert metrics.status_code == 200 and "process_resident_memory_bytes" in metrics.text
            if process not in ROLES:
                # a background role has no API and no API document
                assert httpx.get(f"{base}/draft-orders", timeout=10).status_code == 404
                assert httpx.get(f"{base}/openapi.json", timeout=10).status_code == 404


def test_readiness_of_a_background_role_names_what_it_needs(stack: Any) -> None:
    checks = {
        process: set(
            httpx.get(f"{stack.process_urls[process]}/readyz", timeout=10).json()["checks"]
        )
        for process in ("draft-api-consumer", "export-worker-1", "audit-service-ingest")
    }
    assert checks["draft-api-consumer"] == {"database", "kafka", "consumer"}
    assert checks["export-worker-1"] == {"database", "worker"}
    assert checks["audit-service-ingest"] == {"database", "kafka", "consumer"}


def test_the_pids_differ(stack: Any) -> None:
    pids = {p: stack.pid(p) for ps in ROLES.values() for p in ps}
    assert None not in pids.values(), pids
    assert len(set(pids.values())) == len(pids)
