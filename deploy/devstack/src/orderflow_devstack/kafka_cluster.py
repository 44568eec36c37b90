"""Kafka as a cluster: `make up KAFKA_BROKERS=3` runs three KRaft nodes (each broker
and controller, a static quorum of three voters) instead of the single node.

Node 1 is the `kafka` component (state dir `kafka/`, the dev ports 9092/9093); nodes
2.. are `kafka-2`, `kafka-3` (state dirs `kafka-<n>/`, ports 9094/9095, 9096/9097, plus
ORDERFLOW_PORT_OFFSET). Every client gets every broker as bootstrap servers.

The topic settings of the stack come from one place, `topic_policy()`: partitions,
replication factor (3 with three brokers, else 1) and min.insync.replicas (2 with a
replication factor of 3, else 1), and `reconcile_topics` checks them on the topics
that exist instead of assuming them: it raises partitions and sets the per-topic
configs that differ, and stops with a clear error for what it cannot change (a
replication factor, fewer partitions).

The number of brokers is fixed when the stack's Kafka is formatted (recorded in
`kafka/brokers`); asking for another number on that state dir is an error until
`make clean`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orderflow_devstack import accounts
from orderflow_devstack.components import Kafka, kafka_metadata_ok, run_coroutine
from orderflow_devstack.procs import StackError, port_open

if TYPE_CHECKING:
    from orderflow_devstack.config import StackConfig

BROKERS_ENV = "KAFKA_BROKERS"
#: brokers a stack may have: one node, or a cluster that survives one broker's loss
ALLOWED_BROKERS = (1, 3)
#: node n >= 2 listens on SECOND_NODE_PORT + 2 (n - 2) (broker) and the next port
#: (controller), plus the stack's port offset
SECOND_NODE_PORT = 9094
PARTITIONS = 6


@dataclass(frozen=True)
class TopicPolicy:
    """What every OrderFlow topic must have on this stack's Kafka."""

    partitions: int
    replication: int
    min_insync: int

    @classmethod
    def for_brokers(cls, brokers: int) -> TopicPolicy:
        replication = min(brokers, 3)
        return cls(
            partitions=PARTITIONS,
            replication=replication,
            min_insync=2 if replication >= 3 else 1,
        )


def _brokers_file(cfg: StackConfig) -> Path:
    return cfg.state_dir / "kafka" / "brokers"


def recorded_brokers(cfg: StackConfig) -> int | None:
    path = _brokers_file(cfg)
    return int(path.read_text().strip()) if path.exists() else None


def broker_count(cfg: StackConfig) -> int:
    """KAFKA_BROKERS when set, else what the state dir was formatted with, else 1."""
    raw = os.environ.get(BROKERS_ENV, "").strip()
    if raw:
        try:
            count = int(raw)
        except ValueError:
            raise StackError(f"{BROKERS_ENV}={raw!r}: a number of brokers") from None
    else:
        count = recorded_brokers(cfg) or 1
    if count not in ALLOWED_BROKERS:
        raise StackError(f"{BROKERS_ENV}={count}: one of {ALLOWED_BROKERS}")
    return count


def check_recorded(cfg: StackConfig) -> None:
    """A formatted Kafka keeps its number of nodes: say so instead of half-starting."""
    recorded = recorded_brokers(cfg) or 1
    wanted = broker_count(cfg)
    if recorded != wanted:
        raise StackError(
            f"kafka: this stack's Kafka was formatted with {recorded} broker(s), "
            f"{BROKERS_ENV}={wanted} asks for {wanted}; `make clean` first "
            "(it deletes the stack's data)"
        )


def record_brokers(cfg: StackConfig) -> None:
    path = _brokers_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{broker_count(cfg)}\n")


def topic_policy(cfg: StackConfig) -> TopicPolicy:
    return TopicPolicy.for_brokers(broker_count(cfg))


def node_ports(cfg: StackConfig, node: int) -> tuple[int, int]:
    """(broker port, controller port) of node `node` (1-based)."""
    if node == 1:
        return cfg.ports["kafka"], cfg.ports["kafka-controller"]
    broker = SECOND_NODE_PORT + 2 * (node - 2) + cfg.port_offset
    return broker, broker + 1


def bootstrap_servers(cfg: StackConfig) -> str:
    return ",".join(f"127.0.0.1:{node_ports(cfg, n)[0]}" for n in range(1, broker_count(cfg) + 1))


def node_name(node: int) -> str:
    return "kafka" if node == 1 else f"kafka-{node}"


def extra_broker_names(cfg: StackConfig) -> list[str]:
    return [node_name(n) for n in range(2, broker_count(cfg) + 1)]


def extra_brokers(cfg: StackConfig) -> dict[str, KafkaNode]:
    """The components of nodes 2..N (node 1 is the stack's `kafka`)."""
    return {node_name(n): KafkaNode(cfg, n) for n in range(2, broker_count(cfg) + 1)}


def format_args(cfg: StackConfig) -> list[str]:
    """StorageTool format: one node is its own quorum (--standalone); a cluster's
    voters are static (controller.quorum.voters in every node's properties)."""
    return ["--standalone"] if broker_count(cfg) == 1 else []


def set_properties(text: str, updates: dict[str, str | None]) -> str:
    """`text` (a .properties file) with these keys set (None: removed), others kept."""
    out: list[str] = []
    seen: set[str] = set()
    continued = False
    for line in text.splitlines():
        key = line.split("=", 1)[0].strip() if "=" in line and not continued else None
        is_continued = line.endswith("\\")
        if key is not None and key in updates:
            seen.add(key)
            value = updates[key]
            if value is not None:
                out.append(f"{key}={value}")
        else:
            out.append(line)
        continued = is_continued
    out += [f"{k}={v}" for k, v in updates.items() if k not in seen and v is not None]
    return "\n".join(out) + "\n"


def cluster_properties(text: str, cfg: StackConfig, node: int, data_dir: Path) -> str:
    """A node's server.properties: the single-node text unchanged for one broker;
    for a cluster its own id, listeners and log dir, the static quorum, and the
    replication of the internal topics and the default topic settings."""
    count = broker_count(cfg)
    if count == 1:
        return text
    policy = topic_policy(cfg)
    broker, controller = node_ports(cfg, node)
    voters = ",".join(f"{n}@127.0.0.1:{node_ports(cfg, n)[1]}" for n in range(1, count + 1))
    replication, min_isr = str(policy.replication), str(policy.min_insync)
    return set_properties(
        text,
        {
            "node.id": str(node),
            "controller.quorum.bootstrap.servers": None,
            "controller.quorum.voters": voters,
            "listeners": f"SASL://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"SASL://127.0.0.1:{broker}",
            "log.dirs": str(data_dir),
            "num.partitions": str(policy.partitions),
            "default.replication.factor": replication,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": replication,
            "transaction.state.log.replication.factor": replication,
            "transaction.state.log.min.isr": min_isr,
            "share.coordinator.state.topic.replication.factor": replication,
            "share.coordinator.state.topic.min.isr": min_isr,
        },
    )


class KafkaNode(Kafka):
    """Node 2.. of the cluster: its own state dir, ports and node id; the cluster id,
    users and everything else as node 1 (the `kafka` component)."""

    def __init__(self, cfg: StackConfig, node: int) -> None:
        super().__init__(cfg)
        self.node_id = node
        self.name = node_name(node)

    def user(self) -> str:
        return accounts.RUNTIME_USERS["kafka"]

    @property
    def port(self) -> int:
        return node_ports(self.cfg, self.node_id)[0]

    def _cluster_id(self) -> str:
        first = Kafka(self.cfg)
        first.home.mkdir(parents=True, exist_ok=True)
        return first._cluster_id()

    def is_ready(self) -> bool:
        if not port_open(self.port):
            return False
        options = {**self.cfg.kafka_options("admin"), "bootstrap_servers": f"127.0.0.1:{self.port}"}
        return bool(run_coroutine(kafka_metadata_ok(options)))


# --- topics: check what exists against the policy --------------------------------------
@dataclass
class TopicReport:
    fixed: list[str]
    problems: list[str]


def wanted_configs(topic: str, policy: TopicPolicy) -> dict[str, str]:
    from orderflow_shared.messaging.kafka import topic_configs

    return {**topic_configs(topic), "min.insync.replicas": str(policy.min_insync)}


async def check_topics(
    kafka: dict[str, Any], policy: TopicPolicy, *, fix: bool = True
) -> TopicReport:
    """Every OrderFlow topic against `policy`: partitions (raised when fewer),
    replication factor (reported), per-topic configs (set when different)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewPartitions
    from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
    from orderflow_shared.contracts.topics import ALL_TOPICS

    report = TopicReport(fixed=[], problems=[])
    admin = AIOKafkaAdminClient(**{**kafka, "client_id": "orderflow-topic-check"})
    await admin.start()
    try:
        names = [str(t) for t in ALL_TOPICS]
        described = {t["topic"]: t for t in await admin.describe_topics(names)}
        grow: dict[str, NewPartitions] = {}
        for name in names:
            meta = described.get(name)
            if meta is None or meta.get("error_code", 0) != 0 or not meta["partitions"]:
                report.problems.append(f"{name}: missing")
                continue
            partitions = meta["partitions"]
            replication = min(len(p["replicas"]) for p in partitions)
            if replication != policy.replication:
                report.problems.append(
                    f"{name}: replication factor {replication}, wanted {policy.replication}"
                    " (a reassignment, not done here: `make clean` for a fresh stack)"
                )
            if len(partitions) < policy.partitions:
                grow[name] = NewPartitions(total_count=policy.partitions)
            elif len(partitions) > policy.partitions:
                report.problems.append(
                    f"{name}: {len(partitions)} partitions, wanted {policy.partitions}"
                    " (Kafka cannot remove partitions)"
                )
        if grow and fix:
            await admin.create_partitions(grow)
            report.fixed += [f"{n}: partitions -> {policy.partitions}" for n in grow]
        elif grow:
            report.problems += [f"{n}: fewer than {policy.partitions} partitions" for n in grow]
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        current: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for resource in response.resources:
                entries = resource[4]
                current[resource[3]] = {e[0]: e[1] for e in entries}
        for name in names:
            wanted = wanted_configs(name, policy)
            have = current.get(name, {})
            differ = {k: v for k, v in wanted.items() if have.get(k) != v}
            if not differ:
                continue
            if fix:
                # AlterConfigs replaces a topic's set: give all of ours at once
                await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name, wanted)])
                report.fixed += [f"{name}: {k}={v}" for k, v in differ.items()]
            else:
                report.problems += [
                    f"{name}: {k}={have.get(k)}, wanted {v}" for k, v in differ.items()
                ]
    finally:
        await admin.close()
    return report


def reconcile_topics(cfg: StackConfig, say: Callable[[str], None]) -> None:
    """`make up`: the existing topics checked against topic_policy(); fixes what can be
    fixed, stops the stack's start with every problem that cannot."""
    policy = topic_policy(cfg)
    report = run_coroutine(check_topics(cfg.kafka_options("admin"), policy))
    for line in report.fixed:
        say(f"kafka: fixed {line}")
    if report.problems:
        raise StackError(
            "kafka: topics do not match the stack's settings:\n  " + "\n  ".join(report.problems)
        )
    say(
        f"kafka: every topic has {policy.partitions} partitions, replication "
        f"{policy.replication}, min.insync.replicas {policy.min_insync}"
    )
