"""One of three brokers SIGKILLed while pushes keep arriving: every push is answered,
every draft ends PUSHED with exactly one file (nothing lost, duplicated or stuck), and
the partitions the dead broker led get other leaders. The topics have replication 3
and min.insync.replicas 2, so with acks=all every write still needs two copies."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from orderflow_devstack.kafka_cluster import TopicPolicy, check_topics, node_name
from orderflow_shared.contracts.topics import ALL_TOPICS

from tests.e2e.flow import Flow, Outcome, wait_for
from tests.e2e.test_faults import assert_exactly_once

pytestmark = pytest.mark.stack

N = int(os.environ.get("ORDERFLOW_CLUSTER_N", "60"))
TOPICS = [str(t) for t in ALL_TOPICS]


async def _leaders(kafka: dict[str, Any]) -> dict[tuple[str, int], int]:
    admin = AIOKafkaAdminClient(**{**kafka, "client_id": "cluster-test"})
    await admin.start()
    try:
        described = await admin.describe_topics(TOPICS)
    finally:
        await admin.close()
    return {(t["topic"], p["partition"]): p["leader"] for t in described for p in t["partitions"]}


def leaders(stack: Any) -> dict[tuple[str, int], int]:
    """Partition leaders, asked of whichever broker answers (a client may first pick
    the dead one from its metadata: then it is asked again, a new client each time)."""
    return wait_for(
        lambda: _try_leaders(stack), timeout=60, what="partition metadata from a live broker"
    )


def _try_leaders(stack: Any) -> dict[tuple[str, int], int] | None:
    try:
        return asyncio.run(_leaders(stack.kafka_options("admin")))
    except KafkaError:
        return None


@pytest.fixture
def flow(stack: Any) -> Iterator[Flow]:
    flow = Flow(stack)
    yield flow
    flow.close()


def test_every_orderflow_topic_is_replicated_three_times_with_min_isr_two(
    stack: Any, brokers: list[str]
) -> None:
    policy = TopicPolicy.for_brokers(len(brokers))
    assert (policy.replication, policy.min_insync) == (3, 2)
    report = asyncio.run(check_topics(stack.kafka_options("admin"), policy, fix=False))
    assert report.problems == [], report.problems
    # every partition of every topic has a leader and three in-sync replicas now
    assert all(leader >= 1 for leader in leaders(stack).values())


def test_one_broker_killed_while_pushes_arrive(stack: Any, brokers: list[str], flow: Flow) -> None:
    drafts = flow.approved_drafts(N)
    before = leaders(stack)
    led: dict[int, int] = {}
    for leader in before.values():
        led[leader] = led.get(leader, 0) + 1
    victim_id = max(led, key=lambda b: led[b])
    victim = node_name(victim_id)
    assert victim in brokers
    moved = [tp for tp, leader in before.items() if leader == victim_id]

    answered: dict[str, str] = {}
    errors: list[BaseException] = []

    def push_steadily() -> None:
        try:
            for draft in drafts:  # one after another: pushes keep arriving over the kill
                answered[draft] = flow.push(draft)
                time.sleep(0.02)  # pacing of the load, not a synchronisation
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    pusher = threading.Thread(target=push_steadily, daemon=True)
    started = time.monotonic()
    pusher.start()
    wait_for(lambda: len(answered) >= N // 3, timeout=120, what="a third of the pushes")
    stack.kill(victim)
    killed_at = len(answered)
    pusher.join(timeout=300)
    assert not pusher.is_alive(), "pushes still unanswered after 300 s"
    assert errors == [], errors
    assert len(answered) == N  # every push answered (2xx), across the broker loss
    assert killed_at < N, "the kill came after the last push"

    after = wait_for(
        lambda: _moved(stack, moved, victim_id),
        timeout=60,
        what=f"new leaders for the {len(moved)} partitions {victim} led",
    )
    assert all(after[tp] != victim_id for tp in moved)

    flow.wait_settled(drafts, timeout=max(240, N * 3))
    outcome = flow.measure(Outcome("kafka broker SIGKILL", N, f"SIGKILL {victim}"), drafts)
    outcome.seconds = time.monotonic() - started
    print(f"\n{outcome}; {len(moved)} partitions moved off {victim}; killed after {killed_at}")
    assert_exactly_once(outcome)
    stack.start(victim)


def _moved(
    stack: Any, moved: list[tuple[str, int]], victim_id: int
) -> dict[tuple[str, int], int] | None:
    now = leaders(stack)
    return now if all(now.get(tp, -1) not in (victim_id, -1) for tp in moved) else None
