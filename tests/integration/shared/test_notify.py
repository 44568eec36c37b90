"""Wake-ups between processes: a NOTIFY sent by one engine reaches a listener on
another connection, repeated calls fold into few sends, and the listener stops."""

from __future__ import annotations

import asyncio
import time
import uuid

from orderflow_shared.db import make_engine
from orderflow_shared.notify import Notifier, listen

from .conftest import Backbone


async def wait_until(condition, what: str, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_a_notifier_wakes_a_listener_on_another_connection(backbone: Backbone) -> None:
    channel = f"test_due_{uuid.uuid4().hex[:8]}"
    engine = make_engine(backbone.dsn, pool_size=2)
    woken: list[float] = []
    stop = asyncio.Event()
    listener = asyncio.create_task(listen(backbone.dsn, channel, lambda: woken.append(1), stop))
    try:
        await wait_until(lambda: len(woken) == 1, "the wake-up that LISTEN starts with")
        notify = Notifier(engine, channel)
        notify()
        await wait_until(lambda: len(woken) == 2, "the NOTIFY")
        for _ in range(50):  # a burst folds into one send, and one more after it
            notify()
        assert notify._pending is not None
        await asyncio.wait_for(notify._pending, timeout=10)
        notify()  # a marker: notifications arrive in the order they were committed
        await wait_until(lambda: len(woken) >= 4, "the burst's NOTIFY and the marker")
        await asyncio.wait_for(notify._pending, timeout=10)
        assert 4 <= len(woken) <= 5, woken
    finally:
        stop.set()
        await asyncio.wait_for(listener, timeout=5)
        await engine.dispose()


async def test_a_notifier_whose_database_is_gone_does_not_raise() -> None:
    engine = make_engine("postgresql://nobody@127.0.0.1:9/none", pool_size=1)
    notify = Notifier(engine, "nowhere")
    notify()
    assert notify._pending is not None
    await asyncio.wait_for(notify._pending, timeout=15)  # logged, not raised
    await engine.dispose()
