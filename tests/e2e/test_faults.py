"""The fault matrix: N drafts pushed, a fault injected mid-flight, then nothing lost,
nothing duplicated, nothing stuck. Each scenario adds its counts to docs/reliability.md."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.flow import Flow, Outcome, wait_for

pytestmark = pytest.mark.stack

N = int(os.environ.get("ORDERFLOW_E2E_N", "100"))  # `make test-faults-long`: 1000
#: how long the drafts may take to settle after a fault (grows with N)
SETTLE = max(180, N * 0.4)


@pytest.fixture
def flow(stack: Any) -> Iterator[Flow]:
    flow = Flow(stack)
    yield flow
    flow.close()


def assert_exactly_once(outcome: Outcome, *, final: str = "PUSHED") -> None:
    assert outcome.lost == 0, outcome
    assert outcome.duplicated_files == 0, outcome
    assert outcome.duplicated_sent_events == 0, outcome
    assert outcome.stuck == 0, outcome
    assert outcome.temp_files == 0, outcome
    assert outcome.audit_missing == 0, outcome
    assert outcome.audit_duplicated == 0, outcome
    assert (outcome.pushed if final == "PUSHED" else outcome.error) == outcome.n, outcome


def finish(
    flow: Flow,
    reliability: list[Outcome],
    outcome: Outcome,
    drafts: list[str],
    started: float,
    **kwargs: Any,
) -> Outcome:
    flow.measure(outcome, drafts, **kwargs)
    outcome.seconds = time.monotonic() - started
    reliability.append(outcome)
    return outcome


def first_delivery(flow: Flow, drafts: list[str]) -> None:
    wait_for(lambda: flow.statuses(drafts)["PUSHED"] >= 1, timeout=60, what="the first delivery")


def test_export_service_sigkill_mid_delivery_loses_and_duplicates_nothing(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    flow.push_all(drafts[: N // 2])
    first_delivery(flow, drafts)
    for process in stack.processes_of("export-service"):
        stack.kill(process)
    flow.push_all(drafts[N // 2 :])
    for process in stack.processes_of("export-service"):
        stack.start(process)
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome("export-service SIGKILL", N, "SIGKILL export-service during deliveries, restart"),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_one_export_worker_sigkill_mid_delivery_loses_and_duplicates_nothing(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    flow.push_all(drafts[: N // 2])
    first_delivery(flow, drafts)
    stack.kill("export-worker-1")  # the other worker goes on; the lost leases expire
    flow.push_all(drafts[N // 2 :])
    stack.start("export-worker-1")
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome("export-worker SIGKILL", N, "SIGKILL one of two export workers mid-delivery"),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_draft_api_sigkill_events_in_the_outbox_still_go_out(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    flow.push_all(drafts[: N // 2])
    for process in stack.processes_of("draft-api"):
        stack.kill(process)
    rest = threading.Thread(target=flow.push_all, args=(drafts[N // 2 :],))
    rest.start()  # a client retrying through the outage
    for process in stack.processes_of("draft-api"):
        stack.start(process)
    rest.join(timeout=180)
    assert not rest.is_alive()
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome(
            "draft-api SIGKILL", N, "SIGKILL draft-api after N/2 pushes; clients retry; restart"
        ),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_audit_service_sigkill_keeps_the_trail_complete(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    flow.push_all(drafts[: N // 2])
    for process in stack.processes_of("audit-service"):
        stack.kill(process)
    flow.push_all(drafts[N // 2 :])
    for process in stack.processes_of("audit-service"):
        stack.start(process)
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome("audit-service SIGKILL", N, "SIGKILL audit-service mid-flow, restart"),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_kafka_sigkill_while_pushes_keep_arriving(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    answers: list[int] = []

    def push_steadily() -> None:
        for draft_id in drafts:
            response = flow.http.post(
                f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            answers.append(response.status_code)

    pusher = threading.Thread(target=push_steadily)
    pusher.start()
    wait_for(lambda: len(answers) >= N // 3, timeout=60, what="a third of the pushes")
    stack.kill("kafka")
    pusher.join(timeout=180)
    assert not pusher.is_alive()
    stack.start("kafka")
    flow.wait_settled(drafts, timeout=SETTLE + 120)
    outcome = finish(
        flow,
        reliability,
        Outcome(
            "Kafka broker SIGKILL", N, "SIGKILL the broker after N/3 pushes while pushes go on"
        ),
        drafts,
        started,
    )
    outcome.notes.append(
        f"push answers while the broker was down: {sorted(set(answers))} (all must be 202)"
    )
    assert set(answers) == {202}, answers
    assert_exactly_once(outcome)


def waiting_shown(flow: Flow, draft_id: str) -> bool:
    """GET /draft-orders/{id} says the push waits for the dropzone, and why."""
    draft = flow.call("GET", f"/draft-orders/{draft_id}").json()
    (push,) = draft["exports"]
    waiting = push["error"] or {}
    return bool(
        draft["status"] == "PUSHING"
        and push["status"] == "PENDING"
        and waiting.get("waiting_for_dropzone")
        and waiting.get("error_code") == "connection_refused"
        and waiting.get("next_attempt_at")
    )


def test_sftp_down_shorter_than_the_deadline_ends_pushed(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    stack.stop("sftp")
    try:
        flow.push_all(drafts)
        wait_for(
            lambda: any(waiting_shown(flow, d) for d in drafts[:10]),
            timeout=60,
            what="a push to show that it waits for the dropzone",
        )
    finally:
        stack.start("sftp")
    flow.wait_settled(drafts, timeout=SETTLE + 60)
    outcome = finish(
        flow,
        reliability,
        Outcome(
            "SFTP down < deadline",
            N,
            "sshd stopped before the pushes (they wait for the dropzone), back before the"
            " delivery deadline",
        ),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_sftp_down_longer_than_the_deadline_errors_then_retry_push_delivers(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    stack.stop("sftp")
    try:
        first = flow.push_all(drafts)
        flow.wait_settled(drafts, final=("ERROR",), timeout=SETTLE + 300)
    finally:
        stack.start("sftp")
    failed = stack.psql(
        "SELECT count(*) FROM export.erp_export WHERE id = ANY(%s::uuid[])"
        " AND status = 'FAILED' AND (error_json->>'deadline_passed')::boolean",
        (list(first.values()),),
    )[0][0]
    assert failed == N  # each failed only when its deadline had passed
    with_retry = {}
    for draft_id in drafts:
        response = flow.call(
            "POST",
            f"/draft-orders/{draft_id}/retry-push",
            headers={"Idempotency-Key": str(uuid.uuid4())},
        )
        assert response.status_code == 202, response.text
        with_retry[draft_id] = response.json()["erp_export_id"]
    assert all(with_retry[d] != first[d] for d in drafts)
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome(
            "SFTP down > deadline",
            N,
            "sshd stopped past the delivery deadline (all ERROR), then back and retry-push",
        ),
        drafts,
        started,
        audit_actions=("DRAFT_PUSHED", "EXPORT_FAILED", "DRAFT_PUSH_RETRIED", "EXPORT_SENT"),
    )
    assert_exactly_once(outcome)


def test_redis_down_keeps_pushes_and_idempotency_correct(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    stack.kill("redis")
    try:
        keys = {d: str(uuid.uuid4()) for d in drafts}
        first = {d: flow.push(d, keys[d]) for d in drafts}
        replay = {d: flow.push(d, keys[d]) for d in drafts}
    finally:
        stack.start("redis")
    assert replay == first
    attempts = stack.psql(
        "SELECT count(*) FROM draft.push_attempt WHERE draft_id = ANY(%s::uuid[])", (drafts,)
    )[0][0]
    assert attempts == N
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome("Redis down", N, "Redis SIGKILLed; every push sent twice with its key; Redis back"),
        drafts,
        started,
    )
    assert_exactly_once(outcome)


def test_postgres_restart_services_recover_by_themselves(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    started = time.monotonic()
    pids = {
        name: stack._stack.component(name).pid()
        for name in ("draft-api", "export-service", "audit-service")
    }
    flow.push_all(drafts[: N // 2])
    stack.restart("postgres")
    flow.push_all(drafts[N // 2 :])
    flow.wait_settled(drafts, timeout=SETTLE)
    outcome = finish(
        flow,
        reliability,
        Outcome("Postgres restart", N, "Postgres restarted after N/2 pushes; services untouched"),
        drafts,
        started,
    )
    assert pids == {name: stack._stack.component(name).pid() for name in pids}
    assert_exactly_once(outcome)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn_replica(stack: Any, service: str, package: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {**os.environ, **stack.service_env(service), "HTTP_PORT": str(port)}
    log = open(stack.state_dir / "logs" / f"{service}-replica.log", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", package, "serve"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, timeout=60, what=f"a second {service}")
    return proc, url


def test_two_replicas_of_draft_api_and_export_service_still_exactly_once(
    stack: Any, flow: Flow, reliability: list[Outcome]
) -> None:
    drafts = flow.approved_drafts(N)
    replicas = [
        _spawn_replica(stack, "export-service", "export_service"),
        _spawn_replica(stack, "draft-api", "draft_api"),
    ]
    started = time.monotonic()
    try:
        draft_replica_url = replicas[1][1]
        flow.push_all(drafts[: N // 2])
        with httpx.Client(
            base_url=draft_replica_url, headers=flow.http.headers, timeout=30
        ) as direct:
            for draft_id in drafts[N // 2 :]:
                response = direct.post(
                    f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": str(uuid.uuid4())}
                )
                assert response.status_code == 202, response.text
        flow.wait_settled(drafts, timeout=SETTLE)
    finally:
        for proc, _ in replicas:
            proc.kill()
            proc.wait(timeout=30)
    outcome = finish(
        flow,
        reliability,
        Outcome(
            "two replicas",
            N,
            "a second draft-api and export-service (consumer rebalance, two relays)",
        ),
        drafts,
        started,
    )
    assert_exactly_once(outcome)
