"""One path for each kind of plumbing, held in place by reading the source:

- domain events reach an outbox only through a service's unit of work at commit
  (`adapters/unit_of_work.py` calls `outbox.add_event`; a repository never does);
- a consumer group is joined, and offsets committed, only by the shared
  `ConsumerRunner`: any other Kafka consumer in a service reads without a group
  (the console's live feed, the checkpoint topic's reader, lag probes)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
SOURCES = sorted(
    p
    for p in [*ROOT.glob("services/*/src/**/*.py"), *ROOT.glob("shared/src/**/*.py")]
    if "migrations" not in p.parts
)
RUNNER = ROOT / "shared/src/orderflow_shared/messaging/consumer.py"
OUTBOX = ROOT / "shared/src/orderflow_shared/messaging/outbox.py"


def _calls(path: Path, name: str) -> list[ast.Call]:
    """Calls of `name` or `<anything>.name` in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if called == name:
                found.append(node)
    return found


def _where(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_sources_are_found() -> None:
    assert len(SOURCES) > 100
    assert RUNNER in SOURCES


def test_only_a_unit_of_work_writes_the_outbox() -> None:
    writers = {
        _where(p)
        for p in SOURCES
        if p != OUTBOX and (_calls(p, "add_event") or _calls(p, "add_events"))
    }
    assert writers == {
        "services/draft-api/src/draft_api/adapters/unit_of_work.py",
        "services/export-service/src/export_service/adapters/unit_of_work.py",
    }


def test_no_consumer_outside_the_runner_joins_a_group_or_commits() -> None:
    found = []
    for path in SOURCES:
        if path == RUNNER:
            continue
        for call in _calls(path, "AIOKafkaConsumer"):
            group = next((k.value for k in call.keywords if k.arg == "group_id"), None)
            if not (isinstance(group, ast.Constant) and group.value is None):
                found.append(f"{_where(path)}:{call.lineno}: joins a consumer group")
        for call in _calls(path, "commit"):
            if _is_consumer_commit(call):
                found.append(f"{_where(path)}:{call.lineno}: commits offsets")
    assert not found, "outside ConsumerRunner: " + "; ".join(found)


def _is_consumer_commit(call: ast.Call) -> bool:
    """`consumer.commit(...)`: a Kafka consumer's commit (a session's or a unit of
    work's commit is on another name)."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and "consumer" in func.value.id.lower()
    )


def test_the_guards_find_what_they_forbid(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "c = AIOKafkaConsumer(group_id='mine')\n"
        "async def f(consumer):\n    await consumer.commit()\n"
        "outbox.add_event(s, t, e)\n"
    )
    (group,) = _calls(module, "AIOKafkaConsumer")
    assert group.keywords[0].value.value == "mine"  # type: ignore[attr-defined]
    assert [_is_consumer_commit(c) for c in _calls(module, "commit")] == [True]
    assert len(_calls(module, "add_event")) == 1
