"""orderflow_devstack.kafka_cluster: one node unchanged, three nodes as one quorum with
replication 3 / min ISR 2; compose start phases follow depends_on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from orderflow_devstack import kafka_cluster as kc
from orderflow_devstack.compose import start_phases
from orderflow_devstack.config import StackConfig, find_repo_root
from orderflow_devstack.procs import StackError
from orderflow_devstack.stack import Stack


def config(tmp_path: Path) -> StackConfig:
    return StackConfig.from_env(state_dir=tmp_path, port_offset=40000, environment="test")


def props(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and line[0] != "#")


def test_one_broker_is_the_single_node_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(kc.BROKERS_ENV, raising=False)
    cfg = config(tmp_path)
    assert kc.broker_count(cfg) == 1
    assert kc.topic_policy(cfg) == kc.TopicPolicy(partitions=6, replication=1, min_insync=1)
    assert cfg.kafka_bootstrap == f"127.0.0.1:{cfg.ports['kafka']}"
    assert kc.format_args(cfg) == ["--standalone"]
    assert "kafka-2" not in Stack(cfg).components
    text = Stack(cfg).component("kafka").server_properties()  # type: ignore[attr-defined]
    assert props(text)["controller.quorum.bootstrap.servers"].endswith(
        str(cfg.ports["kafka-controller"])
    )
    assert "controller.quorum.voters" not in props(text)


def test_three_brokers_form_one_quorum_with_replication_three_and_min_isr_two(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(kc.BROKERS_ENV, "3")
    cfg = config(tmp_path)
    stack = Stack(cfg)
    nodes = [stack.component(n) for n in ("kafka", "kafka-2", "kafka-3")]
    ports = [node.port for node in nodes]
    assert len(set(ports)) == 3 and ports[0] == cfg.ports["kafka"]
    assert cfg.kafka_bootstrap == ",".join(f"127.0.0.1:{p}" for p in ports)
    assert kc.format_args(cfg) == []
    voters = set()
    for number, node in enumerate(nodes, start=1):
        p = props(node.server_properties())  # type: ignore[attr-defined]
        assert p["node.id"] == str(number)
        assert p["listeners"].startswith(f"SASL://127.0.0.1:{node.port},")
        assert p["log.dirs"] == str(node.data_dir)  # type: ignore[attr-defined]
        assert "controller.quorum.bootstrap.servers" not in p
        voters.add(p["controller.quorum.voters"])
        for key in ("default.replication.factor", "offsets.topic.replication.factor"):
            assert p[key] == "3"
        for key in ("min.insync.replicas", "transaction.state.log.min.isr"):
            assert p[key] == "2"
    assert len(voters) == 1 and voters.pop().count("@127.0.0.1:") == 3
    assert len({node.home for node in nodes}) == 3  # type: ignore[attr-defined]


def test_a_formatted_stack_keeps_its_broker_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(kc.BROKERS_ENV, raising=False)
    cfg = config(tmp_path)
    kc.record_brokers(cfg)  # formatted with one
    monkeypatch.setenv(kc.BROKERS_ENV, "3")
    with pytest.raises(StackError, match="formatted with 1 broker"):
        kc.check_recorded(cfg)
    monkeypatch.setenv(kc.BROKERS_ENV, "2")
    with pytest.raises(StackError, match="one of"):
        kc.broker_count(cfg)


def test_set_properties_replaces_removes_and_adds_keys_only() -> None:
    text = "a=1\n# c=3\nb=2\\\n  x=y\nd=4\n"
    out = kc.set_properties(text, {"a": "9", "d": None, "e": "5", "x": "no"})
    assert out == "a=9\n# c=3\nb=2\\\n  x=y\ne=5\nx=no\n"


def test_compose_starts_each_service_after_all_it_depends_on() -> None:
    phases = start_phases(find_repo_root() / "docker-compose.yml")
    position = {name: i for i, phase in enumerate(phases) for name in phase}
    assert phases[0] == ["kafka", "postgres", "redis", "sftp"]
    assert position["gateway"] == len(phases) - 1
    assert position["export-worker"] > position["export-service-migrate"]
    assert position["draft-api"] > position["topics"]
    assert "kafka-2" not in position  # the kafka-cluster profile is off by default
    clustered = start_phases(find_repo_root() / "docker-compose.yml", ["kafka-cluster"])
    assert {"kafka-2", "kafka-3"} <= set(clustered[0])


def test_a_test_session_after_a_cluster_run_makes_the_stack_it_is_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`make test-cluster` leaves a state dir formatted with three brokers; the next
    session on that offset wipes it and must not keep kafka-2/kafka-3 from it."""
    from orderflow_devstack.pytest_plugin import _Session

    state = tmp_path / "state"
    monkeypatch.setenv("ORDERFLOW_TEST_STATE_DIR", str(state))
    monkeypatch.setenv("ORDERFLOW_PORT_OFFSET", "40000")
    monkeypatch.delenv("ORDERFLOW_TEST_INFRA", raising=False)
    monkeypatch.setenv(kc.BROKERS_ENV, "3")
    kc.record_brokers(config(state))  # what the cluster tier formatted
    monkeypatch.delenv(kc.BROKERS_ENV)
    session = _Session()
    assert "kafka-2" in session.stack.components  # read from the old state dir
    # nothing of it runs here: cleaning is wiping the directory
    monkeypatch.setattr(session.stack, "clean", lambda: shutil.rmtree(state))
    session.fresh()
    assert not state.exists()
    assert "kafka-2" not in session.stack.components
    assert kc.broker_count(session.cfg) == 1
