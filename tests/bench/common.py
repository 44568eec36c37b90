"""What every benchmark needs: the running stack, timing helpers, RSS sampling."""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from orderflow_devstack.config import StackConfig
from orderflow_devstack.stack import Stack
from orderflow_devstack.tokens import mint

SERVICES = ("draft-api", "export-service", "audit-service")
#: what else runs a pipeline's work, measured beside the services' processes
INFRA = ("postgres", "kafka", "redis", "gateway", "sftp")


@dataclass
class Bench:
    """The stack under test (the one `make up` started, or the tests' one via env)."""

    cfg: StackConfig
    stack: Stack
    quick: bool

    @classmethod
    def from_env(cls, *, quick: bool) -> Bench:
        cfg = StackConfig.from_env()
        return cls(cfg=cfg, stack=Stack(cfg), quick=quick)

    def token(self, org: str = "demo", roles: str = "viewer,operator,approver,admin") -> str:
        secret = self.cfg.secrets()["jwt_secret"]
        return str(mint(secret, sub="bench", org=org, roles=roles.split(",")))

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.cfg.superuser_dsn(), autocommit=True) as conn:
            cur = conn.execute(query, params)
            return cur.fetchall() if cur.description else []

    def connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.cfg.superuser_dsn(), autocommit=True)

    def service_pids(self, name: str) -> list[int]:
        pid = self.stack.component(name).pid()
        if pid is None:
            return []
        return [pid, *_descendants(pid)]


def _descendants(pid: int) -> list[int]:
    children: list[int] = []
    try:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                child = int(entry.name)
                children.extend([child, *_descendants(child)])
    except OSError:
        pass
    return children


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


@dataclass
class RssSampler:
    """Samples the RSS of each process of the services (its tree); keeps the peak."""

    bench: Bench
    interval: float = 0.2
    peaks: dict[str, int] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for name in self.bench.stack.apps:
                total = sum(rss_bytes(pid) for pid in self.bench.service_pids(name))
                self.peaks[name] = max(self.peaks.get(name, 0), total)
            self._stop.wait(self.interval)

    @contextmanager
    def running(self) -> Iterator[RssSampler]:
        thread = threading.Thread(target=self._loop, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()


async def offer_paced(
    items: list[str], rate: float, send: Callable[[str], Coroutine[Any, Any, None]]
) -> None:
    """Start `send(item)` for each item at `rate` per second (an open-loop offered load:
    a slow answer does not delay the next request), then wait for all of them."""
    start = time.monotonic()
    tasks: list[asyncio.Task[None]] = []
    for i, item in enumerate(items):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)  # pacing the offered load, not synchronisation
        tasks.append(asyncio.create_task(send(item)))
    await asyncio.gather(*tasks)


def cpu_ticks(pid: int) -> int:
    """utime + stime of the process and of its children it has reaped (clock ticks)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(f) for f in fields[11:15])


@dataclass
class CpuMeter:
    """CPU time of each process of the stack (each role process, and the infrastructure
    with its children) over a window: utime + stime from /proc."""

    bench: Bench
    start: dict[str, int] = field(default_factory=dict)

    def _names(self) -> list[str]:
        present = set(self.bench.stack.components)
        return [*self.bench.stack.apps, *(n for n in INFRA if n in present)]

    def snapshot(self) -> dict[str, int]:
        return {
            name: sum(cpu_ticks(pid) for pid in self.bench.service_pids(name))
            for name in self._names()
        }

    def begin(self) -> None:
        self.start = self.snapshot()

    def ms_per(self, units: int) -> dict[str, float]:
        """CPU milliseconds per unit of work since begin(), by process."""
        tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
        end = self.snapshot()
        return {
            name: (end[name] - self.start.get(name, end[name])) * tick_ms / max(units, 1)
            for name in end
        }


def spread(values: list[float]) -> dict[str, float]:
    """Median and range of the repetitions of one figure."""
    present = [v for v in values if v is not None and v == v]
    if not present:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan")}
    return {
        "median": statistics.median(present),
        "min": min(present),
        "max": max(present),
    }


def wait_until(
    condition: Callable[[], Any], *, timeout: float, what: str, interval: float = 0.05
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    ordered = sorted(values)
    return statistics.quantiles(ordered, n=1000, method="inclusive")[int(pct * 10) - 1]


def cpu_count() -> int:
    return os.cpu_count() or 1
