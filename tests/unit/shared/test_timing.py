"""One backoff and one stoppable sleep (orderflow_shared.timing), and nothing else.

The last test reads every module of the services, shared and the devstack and fails
where one computes an exponential backoff or waits on a stop event with a timeout by
hand instead of calling `backoff()` / `sleep_or_stop()`."""

from __future__ import annotations

import ast
import asyncio
import random
import time
from pathlib import Path

import pytest
from orderflow_shared.timing import backoff, sleep_or_stop

ROOT = Path(__file__).resolve().parents[3]
SOURCES = [
    *sorted(ROOT.glob("services/*/src")),
    ROOT / "shared" / "src",
    ROOT / "deploy" / "devstack" / "src",
]
#: The helpers themselves.
OWN = {ROOT / "shared/src/orderflow_shared/timing.py"}
#: Being rewired by the coordinator (issue 11, process roles): drop from this set when
#: runtime.py's restart delay uses backoff()/sleep_or_stop().
PENDING: set[Path] = set()


def test_backoff_doubles_from_base_to_cap() -> None:
    waits = [backoff(n, base=0.5, cap=10.0, jitter=False) for n in range(1, 8)]
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff(0, base=0.5, cap=10.0, jitter=False) == 0.5  # no failure yet: the base
    assert backoff(10**9, base=0.5, cap=10.0, jitter=False) == 10.0  # no overflow


def test_backoff_jitter_stays_within_half_and_whole_and_is_reproducible() -> None:
    draws = [backoff(3, base=1.0, cap=60.0, rng=random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # the same rng state, the same wait
    rng = random.Random(1)
    waits = {backoff(3, base=1.0, cap=60.0, rng=rng) for _ in range(500)}
    assert all(2.0 <= w <= 4.0 for w in waits)
    assert min(waits) < 2.2 and max(waits) > 3.8


async def test_sleep_or_stop_sleeps_the_time_when_nothing_happens() -> None:
    stop = asyncio.Event()
    begin = time.monotonic()
    assert await sleep_or_stop(stop, 0.05) is False
    assert time.monotonic() - begin >= 0.045


async def test_sleep_or_stop_ends_at_once_when_stop_is_set() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_later(0.01, stop.set)
    begin = time.monotonic()
    assert await sleep_or_stop(stop, 30.0) is True
    assert time.monotonic() - begin < 5.0
    assert await sleep_or_stop(stop, None) is True  # already set: no wait at all


async def test_sleep_or_stop_ends_on_wake_without_stopping() -> None:
    stop, wake = asyncio.Event(), asyncio.Event()
    asyncio.get_running_loop().call_later(0.01, wake.set)
    assert await sleep_or_stop(stop, None, wake=wake) is False
    assert wake.is_set() and not stop.is_set()


def _is_const(node: ast.AST, *values: float) -> bool:
    return isinstance(node, ast.Constant) and node.value in values and node.value is not True


def _calls(node: ast.AST, dotted: str) -> bool:
    """Whether `node` is a call of `dotted` (e.g. "asyncio.wait_for")."""
    if not isinstance(node, ast.Call):
        return False
    func, parts = node.func, dotted.split(".")
    while parts and isinstance(func, ast.Attribute) and func.attr == parts[-1]:
        func, parts = func.value, parts[:-1]
    return len(parts) == 1 and isinstance(func, ast.Name) and func.id == parts[0]


def _is_event_wait(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "wait"
        and not node.args
    )


def hand_written_timing(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each hand-written backoff or stoppable wait in a module."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp):
            if (
                isinstance(node.op, ast.Pow)
                and _is_const(node.left, 2)
                and not isinstance(node.right, ast.Constant | ast.UnaryOp)
            ):
                found.append((node.lineno, "2 ** n: exponential backoff"))
            if isinstance(node.op, ast.LShift) and _is_const(node.left, 1):
                found.append((node.lineno, "1 << n: exponential backoff"))
        if isinstance(node, ast.AugAssign) and isinstance(node.op, ast.Mult):
            if _is_const(node.value, 2):
                found.append((node.lineno, "x *= 2: doubling backoff"))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "min":
            for arg in node.args:
                if (
                    isinstance(arg, ast.BinOp)
                    and isinstance(arg.op, ast.Mult)
                    and (_is_const(arg.left, 2) or _is_const(arg.right, 2))
                ):
                    found.append((node.lineno, "min(x * 2, cap): doubling backoff"))
        if _calls(node, "asyncio.wait_for") and isinstance(node, ast.Call) and node.args:
            if _is_event_wait(node.args[0]):
                found.append((node.lineno, "wait_for(event.wait(), timeout): stoppable sleep"))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            waits_on_event = any(
                (_calls(n, "asyncio.ensure_future") or _calls(n, "asyncio.create_task"))
                and isinstance(n, ast.Call)
                and n.args
                and _is_event_wait(n.args[0])
                for n in ast.walk(node)
            )
            timed = [
                n
                for n in ast.walk(node)
                if _calls(n, "asyncio.wait")
                and isinstance(n, ast.Call)
                and any(k.arg == "timeout" for k in n.keywords)
            ]
            if waits_on_event and timed:
                found.append((timed[0].lineno, "asyncio.wait([event.wait()], timeout): sleep"))
    return sorted(found)


def test_the_guard_finds_each_hand_written_form() -> None:
    source = """
import asyncio
def a(failures): return min(30.0, 0.5 * 2 ** min(failures, 6))
def b(n): return 1 << n
def c(d): return min(d * 2, 60)
def d(x):
    x *= 2
async def e(stop, s): await asyncio.wait_for(stop.wait(), timeout=s)
async def f(stop, wake, s):
    w = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    await asyncio.wait(w, timeout=s)
SLACK = 4 * 2.0**-52
"""
    kinds = [what.split(":")[0] for _, what in hand_written_timing(ast.parse(source))]
    assert kinds == [
        "2 ** n",
        "1 << n",
        "min(x * 2, cap)",
        "x *= 2",
        "wait_for(event.wait(), timeout)",
        "asyncio.wait([event.wait()], timeout)",
    ]


def modules() -> list[Path]:
    return [
        path
        for source in SOURCES
        for path in sorted(source.rglob("*.py"))
        if path not in OWN | PENDING and "migrations" not in path.parts
    ]


def test_modules_are_found() -> None:
    names = {p.name for p in modules()}
    assert {"outbox.py", "consumer.py", "worker.py", "retry.py", "kafka.py"} <= names


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_writes_its_own_backoff_or_stoppable_sleep(path: Path) -> None:
    found = hand_written_timing(ast.parse(path.read_text(), filename=str(path)))
    assert not found, [f"{path.relative_to(ROOT)}:{line}: {what}" for line, what in found]
