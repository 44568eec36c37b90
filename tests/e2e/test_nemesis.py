"""The random-fault run (`make test-nemesis`; `make test` deselects it).

A seeded schedule of faults, one at a time, over every component (SIGKILL and restart
of each service, Kafka, Postgres, Redis, the gateway, sshd, each held down 5-19 s),
with clustered SFTP outages of more than a minute in all, a Kafka kill during an SFTP
outage and a Postgres restart during deliveries, while pushes keep arriving; clients
retry with the same Idempotency-Key. Then every invariant is checked and the schedule,
the counts and the client-visible error rate per fault type go to docs/reliability.md.

NEMESIS_SEED reproduces a schedule (printed and written to the report); NEMESIS_MINUTES
(10) and NEMESIS_N (1000) size the run. The export-service deadline must outlast the
run (the Makefile target sets EXPORT_DELIVERY_DEADLINE_SECONDS).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer

from tests.e2e.flow import Flow, Outcome, wait_for

pytestmark = [pytest.mark.stack, pytest.mark.nemesis]

SEED = int(os.environ.get("NEMESIS_SEED") or random.SystemRandom().randrange(1, 1_000_000))
MINUTES = float(os.environ.get("NEMESIS_MINUTES", "10"))
N = int(os.environ.get("NEMESIS_N", "1000"))
REPLAY_SHARE = 0.05
REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
KEEP_MARKER = "<!-- written by hand below this line: kept when the matrix is regenerated -->"
BEGIN, END = "<!-- nemesis:begin -->", "<!-- nemesis:end -->"
#: seconds a component takes to come back (start until ready), roughly
RECOVERY = 10.0
#: what a fault hits: each process of the services (the HTTP APIs and each background
#: role of the devstack's default layout), the gateway, Redis and Kafka
SERVICES = (
    "draft-api",
    "draft-api-relay",
    "draft-api-consumer",
    "export-service",
    "export-service-relay",
    "export-service-consumer",
    "export-worker-1",
    "export-worker-2",
    "audit-service",
    "audit-service-ingest",
    "audit-service-retention",
    "gateway",
    "redis",
    "kafka",
)


@dataclass
class Step:
    """One fault: what it does, to what, for how long (planned, seeded)."""

    kind: str
    target: str
    hold: float
    gap: float
    parts: list[tuple[str, float]] = field(default_factory=list)  # sftp cluster: (down|up, s)
    started: float = 0.0  # offset from the start of the run, measured
    ended: float = 0.0


def plan(rng: random.Random, seconds: float) -> list[Step]:
    """Every component once (shuffled), the three required composites at random places,
    then random faults until the planned time covers the run."""

    def single(target: str) -> Step:
        kind = "restart" if target == "postgres" and rng.random() < 0.5 else "sigkill"
        return Step(kind, target, rng.uniform(5, 19), rng.uniform(4, 10))

    steps = [single(t) for t in (*SERVICES, "postgres")]
    steps.append(Step("stop", "sftp", rng.uniform(5, 19), rng.uniform(4, 10)))
    rng.shuffle(steps)
    cluster: list[tuple[str, float]] = []
    while sum(s for state, s in cluster if state == "down") <= 65:
        if cluster:
            cluster.append(("up", rng.uniform(3, 6)))
        cluster.append(("down", rng.uniform(14, 24)))
    composites = [
        Step("cluster", "sftp", 0.0, rng.uniform(5, 10), cluster),
        Step("kafka-during-sftp", "kafka+sftp", rng.uniform(8, 15), rng.uniform(5, 10)),
        Step("restart", "postgres", 0.0, rng.uniform(5, 10)),  # during deliveries
    ]
    for step in composites:
        steps.insert(rng.randrange(len(steps) + 1), step)

    while sum(planned(s) for s in steps) < seconds:
        steps.append(single(rng.choice((*SERVICES, "postgres", "sftp"))))
    for step in steps:
        if step.target == "sftp" and step.kind == "sigkill":
            step.kind = "stop"
    return steps


def planned(step: Step) -> float:
    """Seconds a step is expected to take, with its pause after it."""
    return step.hold + step.gap + sum(p for _, p in step.parts) + RECOVERY


def label(step: Step) -> str:
    if step.kind == "cluster":
        downs = [round(s) for state, s in step.parts if state == "down"]
        return f"SFTP outages {'+'.join(map(str, downs))} s (clustered)"
    if step.kind == "kafka-during-sftp":
        return "Kafka SIGKILL during an SFTP outage"
    if step.kind == "restart":
        return f"{step.target} restart"
    if step.kind == "stop":
        return "sshd stopped"
    return f"{step.target} SIGKILL"


def fault_type(step: Step) -> str:
    return {"cluster": "sftp cluster", "kafka-during-sftp": "kafka+sftp"}.get(
        step.kind, f"{step.target} {step.kind}"
    )


class Nemesis:
    """Runs the steps one after the other; `current` names the fault now active."""

    def __init__(self, stack: Any, steps: list[Step], t0: float, seconds: float) -> None:
        self.stack = stack
        self.steps = steps
        self.seconds = seconds
        self.done: list[Step] = []
        self.t0 = t0
        self.current = "none"
        self.lock = threading.Lock()
        self.error: BaseException | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    def active(self) -> str:
        with self.lock:
            return self.current

    def _set(self, name: str) -> None:
        with self.lock:
            self.current = name

    def run(self) -> None:
        try:
            for step in self.steps:
                if self.now() >= self.seconds:
                    break  # the run lasted long enough: the rest of the plan is not used
                self.done.append(step)
                step.started = self.now()
                self._set(fault_type(step))
                self._inject(step)
                step.ended = self.now()
                self._set("none")
                time.sleep(step.gap)  # the seeded pause between two faults
        except BaseException as exc:  # reported by the test
            self.error = exc
            self._set("none")

    def _inject(self, step: Step) -> None:
        s = self.stack
        if step.kind == "cluster":
            for state, seconds in step.parts:
                (s.stop if state == "down" else s.start)("sftp")
                time.sleep(seconds)
            s.start("sftp")
        elif step.kind == "kafka-during-sftp":
            s.stop("sftp")
            time.sleep(3)
            s.kill("kafka")
            time.sleep(step.hold)
            s.start("kafka")
            time.sleep(3)
            s.start("sftp")
        elif step.kind == "restart":
            s.restart(step.target)
        elif step.kind == "stop":
            s.stop(step.target)
            time.sleep(step.hold)
            s.start(step.target)
        else:
            s.kill(step.target)
            time.sleep(step.hold)
            s.start(step.target)


@dataclass
class Clients:
    """Pushes with retries (same key), recording every request against the fault."""

    flow: Flow
    nemesis: Nemesis
    keys: dict[str, str] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    gave_up: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def push(self, draft_id: str, timeout: float = 600) -> str | None:
        key = self.keys.setdefault(draft_id, str(uuid.uuid4()))
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            fault = self.nemesis.active()
            ok, export_id = self._once(draft_id, key)
            with self.lock:
                self.requests[fault] += 1
                self.errors[fault] += not ok
            if ok:
                return export_id
            time.sleep(0.3)  # a client's pause before it retries
        with self.lock:
            self.gave_up.append(draft_id)
        return None

    def _once(self, draft_id: str, key: str) -> tuple[bool, str | None]:
        try:
            response = self.flow.http.post(
                f"/draft-orders/{draft_id}/push", headers={"Idempotency-Key": key}
            )
        except httpx.HTTPError:
            return False, None
        if response.status_code not in (200, 202):
            return False, None
        return True, str(response.json()["erp_export_id"])


def run_pushers(
    clients: Clients, drafts: list[str], until: Callable[[], float], workers: int = 8
) -> None:
    """Offer the drafts at an even pace to `workers` clients, so that the last ones come
    near the end of the faults (`until()`: seconds of faults still expected)."""
    work: queue.Queue[str | None] = queue.Queue()

    def worker() -> None:
        while (draft_id := work.get()) is not None:
            export_id = clients.push(draft_id)
            if export_id:
                with clients.lock:
                    clients.exports[draft_id] = export_id

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for n, draft_id in enumerate(drafts):
        work.put(draft_id)
        # the arrival rate of pushes, not a wait for anything
        time.sleep(max(0.0, until() * 0.9) / (len(drafts) - n))
    for _ in threads:
        work.put(None)
    for thread in threads:
        thread.join(timeout=900)


async def sent_checksums(kafka: dict[str, Any], export_ids: set[str]) -> dict[str, set[str]]:
    """The checksums the export.sent events announce, per export (read to the end)."""
    consumer = AIOKafkaConsumer(
        "export.sent",
        **kafka,
        enable_auto_commit=False,
        group_id=None,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + 120
        while not consumer.assignment():
            if time.monotonic() > deadline:
                raise AssertionError("no partitions of export.sent were assigned")
            await consumer.getmany(timeout_ms=100)
        partitions = list(consumer.assignment())
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        found: dict[str, set[str]] = defaultdict(set)

        async def behind() -> bool:
            for tp in partitions:
                if await consumer.position(tp) < end[tp]:
                    return True
            return False

        while await behind():
            if time.monotonic() > deadline:
                raise AssertionError("export.sent could not be read to its end")
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for records in batch.values():
                for record in records:
                    try:
                        data = json.loads(record.value)
                        export_id = str(data["erp_export_id"])
                        digest = str(data["checksum_sha256"])
                    except (ValueError, KeyError, TypeError):
                        continue  # another test's poison record
                    if export_id in export_ids:
                        found[export_id].add(digest)
        return found
    finally:
        await consumer.stop()


def write_report(section: str) -> None:
    text = REPORT.read_text() if REPORT.exists() else "# Reliability\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        if KEEP_MARKER not in text:
            text = text.rstrip("\n") + "\n\n" + KEEP_MARKER + "\n"
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    REPORT.write_text(text)


def test_nemesis_random_faults_while_pushes_arrive_lose_and_duplicate_nothing(
    stack: Any,
) -> None:
    seconds = MINUTES * 60
    deadline = float(stack.service_env("export-service")["EXPORT_DELIVERY_DEADLINE_SECONDS"])
    assert deadline > seconds + 300, (
        f"the delivery deadline ({deadline:.0f} s) must outlast the run: "
        "run it with `make test-nemesis`"
    )
    print(f"nemesis seed {SEED}: {MINUTES:g} min, N={N}")
    rng = random.Random(SEED)
    steps = plan(rng, seconds * 2)  # more than enough; the run stops after `seconds`
    flow = Flow(stack)
    try:
        drafts = flow.approved_drafts(N)
        t0 = time.monotonic()
        nemesis = Nemesis(stack, steps, t0, seconds)
        clients = Clients(flow, nemesis)
        chaos = threading.Thread(target=nemesis.run, daemon=True)
        chaos.start()
        run_pushers(
            clients, drafts, lambda: 0.0 if not chaos.is_alive() else seconds - nemesis.now()
        )
        chaos.join(timeout=seconds + 900)
        assert not chaos.is_alive() and nemesis.error is None, nemesis.error
        faults_done = nemesis.now()
        for name in ("postgres", "redis", "kafka", "sftp", *SERVICES):
            stack.start(name)  # all back (a no-op for what runs)
        missing = [d for d in drafts if d not in clients.exports]
        for draft_id in missing:  # clients that gave up try once more, same key
            export_id = clients.push(draft_id, timeout=120)
            if export_id:
                clients.exports[draft_id] = export_id
        flow.wait_settled(drafts, timeout=900)
        settled = nemesis.now()
        outcome = flow.measure(Outcome("nemesis", N, f"seed {SEED}"), drafts)
        checks = invariants(stack, flow, clients, drafts, rng)
    finally:
        flow.close()
    write_report(section(nemesis.done, outcome, clients, checks, faults_done, settled))
    assert outcome.pushed == N, outcome
    for name in ("lost", "duplicated_files", "duplicated_sent_events", "stuck"):
        assert getattr(outcome, name) == 0, outcome
    for name in ("temp_files", "audit_missing", "audit_duplicated"):
        assert getattr(outcome, name) == 0, outcome
    for name, value in checks.items():
        assert value == 0 or value is True, (name, checks)


def invariants(
    stack: Any, flow: Flow, clients: Clients, drafts: list[str], rng: random.Random
) -> dict[str, Any]:
    """The checks beyond flow.measure; 0 (or True) means the invariant holds."""
    checks: dict[str, Any] = {}
    per_draft = dict(
        stack.psql(
            "SELECT draft_order_id::text, count(*) FROM export.erp_export"
            " WHERE org_id = %s GROUP BY 1",
            (flow.org,),
        )
    )
    checks["drafts without exactly one export"] = sum(1 for d in drafts if per_draft.get(d, 0) != 1)
    attempts = dict(
        stack.psql(
            "SELECT draft_id::text, count(*) FROM draft.push_attempt WHERE org_id = %s GROUP BY 1",
            (flow.org,),
        )
    )
    checks["drafts without exactly one push"] = sum(1 for d in drafts if attempts.get(d) != 1)
    current = dict(
        stack.psql(
            "SELECT id::text, current_export_id::text FROM draft.draft_order"
            " WHERE id = ANY(%s::uuid[])",
            (drafts,),
        )
    )
    checks["client answers naming another export"] = sum(
        1 for d, e in clients.exports.items() if current.get(d) != e
    )
    checks["drafts whose push no client saw answered"] = len(set(drafts) - set(clients.exports))
    replayed = rng.sample(drafts, max(1, int(len(drafts) * REPLAY_SHARE)))
    checks[f"of {len(replayed)} replays (same key), answering another export"] = sum(
        1 for d in replayed if clients.push(d, timeout=60) != current.get(d)
    )
    rows = stack.psql(
        "SELECT id::text, file_name, status FROM export.erp_export WHERE org_id = %s",
        (flow.org,),
    )
    announced = asyncio.run(sent_checksums(stack.kafka_options("admin"), {r[0] for r in rows}))
    inbox = stack.inbox_dir
    mismatched = 0
    for export_id, file_name, status in rows:
        sums = announced.get(export_id, set())
        path = inbox / file_name if file_name else None
        if status != "SENT" or len(sums) != 1 or path is None or not path.exists():
            mismatched += 1
            continue
        mismatched += hashlib.sha256(path.read_bytes()).hexdigest() not in sums
    checks["files not matching their export.sent checksum"] = mismatched
    verify = flow.call("GET", "/audit-log/verify")
    checks["audit chain verifies"] = verify.status_code == 200 and verify.json()["ok"] is True

    def outboxes_empty() -> bool:
        unpublished = stack.psql(
            "SELECT (SELECT count(*) FROM draft.outbox WHERE published_at IS NULL)"
            " + (SELECT count(*) FROM export.outbox WHERE published_at IS NULL)"
        )[0][0]
        return unpublished == 0

    try:
        wait_for(outboxes_empty, timeout=120, what="every outbox event to be published")
        checks["unpublished outbox events"] = 0
    except AssertionError:
        checks["unpublished outbox events"] = 1
    waiting = stack.psql(
        "SELECT count(*) FROM export.erp_export WHERE org_id = %s AND status <> 'SENT'",
        (flow.org,),
    )[0][0]
    checks["exports not SENT"] = waiting
    return checks


def section(
    steps: list[Step],
    o: Outcome,
    clients: Clients,
    checks: dict[str, Any],
    faults_done: float,
    settled: float,
) -> str:
    when = datetime.now(UTC).isoformat(timespec="seconds")
    sftp_down = sum(
        sum(s for state, s in st.parts if state == "down") if st.kind == "cluster" else 0
        for st in steps
    )
    lines = [
        BEGIN,
        "## Random-fault run (nemesis)",
        "",
        f"Generated by `make test-nemesis` (tests/e2e/test_nemesis.py) on {when}; do not edit"
        f" by hand. Seed **{SEED}** (`NEMESIS_SEED={SEED} make test-nemesis` replays the"
        f" schedule), {MINUTES:g} minutes of faults, N={o.n} drafts pushed at an even pace"
        " while the faults run, by 8 clients that retry with the same Idempotency-Key;"
        " faults one at a time, for at least the minutes asked; faults over after"
        f" {faults_done:.0f} s, every draft settled at {settled:.0f} s. Clustered SFTP"
        f" outages: {sftp_down:.0f} s down in all. Postgres runs with durable commits"
        " (`synchronous_commit=on`): a SIGKILL must not take back an acknowledged commit.",
        "",
        "| # | at (s) | fault | lasted (s) |",
        "|---|---|---|---|",
    ]
    for n, st in enumerate(steps, 1):
        lines.append(f"| {n} | {st.started:.0f} | {label(st)} | {st.ended - st.started:.0f} |")
    lines += [
        "",
        "| PUSHED | ERROR | lost | dup files | dup sent | redelivered | stuck | temp files"
        " | audit missing | audit dup |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {o.pushed} | {o.error} | {o.lost} | {o.duplicated_files}"
        f" | {o.duplicated_sent_events} | {o.redelivered_records} | {o.stuck}"
        f" | {o.temp_files} | {o.audit_missing} | {o.audit_duplicated} |",
        "",
        "| invariant | result |",
        "|---|---|",
    ]
    for name, value in checks.items():
        lines.append(f"| {name} | {value} |")
    lines += [
        "",
        "Client-visible errors per fault type (push requests sent while the fault was"
        " active; an error is a 5xx or no answer, after which the client retried):",
        "",
        "| fault type | requests | errors | error rate |",
        "|---|---|---|---|",
    ]
    for fault in sorted(clients.requests):
        sent, failed = clients.requests[fault], clients.errors[fault]
        lines.append(f"| {fault} | {sent} | {failed} | {failed / sent:.1%} |")
    lines.append(END)
    return "\n".join(lines)
