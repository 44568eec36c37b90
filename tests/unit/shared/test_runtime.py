"""The shared supervisor: a crashing loop is restarted, a stopped one ends, and the
loops of a role stop with the block that runs them."""

from __future__ import annotations

import asyncio

import pytest
from orderflow_shared import runtime


async def test_a_crashing_loop_is_restarted_until_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "RESTART_DELAY_SECONDS", 0.001)
    runs = 0
    stop = asyncio.Event()

    async def flaky(stop_: asyncio.Event) -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise RuntimeError("boom")
        stop.set()

    await asyncio.wait_for(runtime.supervised("flaky", flaky, stop), timeout=5)
    assert runs == 3


async def test_running_stops_its_loops_and_cancels_what_ignores_stop() -> None:
    stopped = asyncio.Event()
    cancelled = asyncio.Event()

    async def polite(stop: asyncio.Event) -> None:
        await stop.wait()
        stopped.set()

    async def stubborn(stop: asyncio.Event) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with runtime.running({"polite": polite, "stubborn": stubborn}, grace=0.05):
        await asyncio.sleep(0)
    assert stopped.is_set() and cancelled.is_set()


def test_roles_merge_loops_and_checks() -> None:
    async def loop(stop: asyncio.Event) -> None: ...

    async def check() -> bool:
        return True

    merged = runtime.Role({"a": loop}, {"x": check}).merge(runtime.Role({"b": loop}, {"y": check}))
    assert set(merged.loops) == {"a", "b"} and set(merged.checks) == {"x", "y"}
