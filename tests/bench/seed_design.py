"""The seed's own design as a peer of the push API and of end to end (issue 17).

`run(bench)` sets up `tests/bench/seed_peer` on the running stack (its scratch schema
`seedpeer` in the stack's Postgres, Redis database 15, files `SEEDPEER-*` in the
stack's SFTP dropzone), starts it (one uvicorn process, one Celery worker with two
prefork children), measures it the way OrderFlow is measured, and removes it again:

- push: wrk with 32 connections on POST /draft-orders/<id>/push for as long as the
  push benchmark runs (`push_api.run_wrk`, the same Lua script);
- end to end: pushes offered at end_to_end's rate (50/s, 20/s with --quick), each
  timed as end_to_end times OrderFlow's (`requested_at` to the file's mtime), and also
  from the client's 202 to the file's rename in the dropzone (inotify, `Landings`).

The peer lacks OrderFlow's guarantees on purpose (see `tests/bench/seed_peer`).
CPU milliseconds per push (the API process) and per export (the worker, its children
included) are reported too: they hold on a loaded machine where rates do not.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.schema import CreateSchema

from tests.bench.common import Bench, offer_paced, percentile, wait_until
from tests.bench.push_api import CONCURRENCY, run_wrk
from tests.bench.seed_peer.config import FILE_PREFIX, REDIS_DB, SCHEMA, PeerConfig
from tests.bench.seed_peer.landing import Landings
from tests.bench.seed_peer.tables import metadata

#: pushes made (and waited for) before anything is measured: the worker's children
#: connect to Postgres and the dropzone on their first task
WARM_UP = 6
CLK_TCK = os.sysconf("SC_CLK_TCK")


def peer_config(bench: Bench) -> PeerConfig:
    sftp = bench.stack.sftp_info()
    return PeerConfig(
        database_url=bench.cfg.superuser_dsn().replace("postgresql://", "postgresql+psycopg://"),
        redis_url=f"redis://127.0.0.1:{bench.cfg.ports['redis']}/{REDIS_DB}",
        jwt_secret=bench.cfg.secrets()["jwt_secret"],
        sftp_host="127.0.0.1",
        sftp_port=bench.cfg.ports["sftp"],
        sftp_username=sftp["username"],
        sftp_private_key_path=sftp["private_key_path"],
        sftp_known_hosts_line=sftp["known_hosts_line"],
        sftp_directory=sftp["remote_directory"],
    )


# --- the scratch state ---------------------------------------------------------------


def create_scratch(cfg: PeerConfig) -> None:
    engine = create_engine(cfg.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
            conn.execute(CreateSchema(SCHEMA))
            metadata.create_all(conn)
    finally:
        engine.dispose()
    redis.Redis.from_url(cfg.redis_url).flushdb()


def remove_scratch(bench: Bench, cfg: PeerConfig) -> None:
    bench.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    redis.Redis.from_url(cfg.redis_url).flushdb()
    for pattern in (f"{FILE_PREFIX}*", f".{FILE_PREFIX}*.part"):
        for path in bench.cfg.inbox_dir.glob(pattern):
            path.unlink(missing_ok=True)


def make_drafts(bench: Bench, count: int, *, org: str) -> list[str]:
    """Approved drafts of one line each, as tests/bench/drafts.py makes OrderFlow's."""
    ids = [uuid.uuid4() for _ in range(count)]
    now = datetime.now(UTC)
    with bench.connect() as conn, conn.transaction():
        with conn.cursor().copy(
            f"COPY {SCHEMA}.draft_order (id, org_id, customer_id, external_ref, status,"
            " currency, version, updated_at) FROM STDIN"
        ) as copy:
            for draft_id in ids:
                ref = f"{FILE_PREFIX}{draft_id.hex[:12]}"
                copy.write_row((draft_id, org, "C-BENCH", ref, "APPROVED", "EUR", 1, now))
        with conn.cursor().copy(
            f"COPY {SCHEMA}.draft_order_line (draft_id, line_no, sku, description, quantity,"
            " unit, unit_price) FROM STDIN"
        ) as copy:
            for draft_id in ids:
                copy.write_row((draft_id, 1, "SKU-1", "Widget", 3, "EA", "9.50"))
    return [str(i) for i in ids]


def pending(bench: Bench) -> int:
    return int(
        bench.sql(f"SELECT count(*) FROM {SCHEMA}.push_attempt WHERE status = 'PENDING'")[0][0]
    )


# --- the peer's processes ------------------------------------------------------------


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLK_TCK


def process_tree(pid: int) -> list[int]:
    tree = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            tree += process_tree(int(child))
    return tree


@dataclass
class Peer:
    url: str
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    logs: Path

    def api_cpu(self) -> float:
        return cpu_seconds([self.api.pid])

    def worker_cpu(self) -> float:
        return cpu_seconds(process_tree(self.worker.pid))

    def check_alive(self) -> None:
        for name, proc in (("api", self.api), ("worker", self.worker)):
            if proc.poll() is not None:
                log = (self.logs / f"{name}.log").read_text()[-3000:]
                raise RuntimeError(f"the seed peer's {name} exited ({proc.returncode}):\n{log}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def running_peer(bench: Bench, cfg: PeerConfig) -> Iterator[Peer]:
    port = _free_port()
    env = {**os.environ, **cfg.env()}
    python = sys.executable
    api_cmd = [
        python, "-m", "uvicorn", "--factory", "tests.bench.seed_peer.app:make_app",
        "--host", "127.0.0.1", "--port", str(port), "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    worker_cmd = [python, "-m", "tests.bench.seed_peer.worker"]
    with tempfile.TemporaryDirectory(prefix="seedpeer-") as tmp, ExitStack() as files:
        logs = Path(tmp)
        started: list[subprocess.Popen[bytes]] = []
        try:
            for name, cmd in (("api", api_cmd), ("worker", worker_cmd)):
                log = files.enter_context((logs / f"{name}.log").open("wb"))
                started.append(
                    subprocess.Popen(
                        cmd, cwd=bench.cfg.repo_root, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                )
            peer = Peer(f"http://127.0.0.1:{port}", started[0], started[1], logs)

            def ready() -> bool:
                peer.check_alive()
                return _answers(f"{peer.url}/docs")

            wait_until(ready, timeout=180, what="the seed peer's API")
            yield peer
        finally:
            for proc in started:
                proc.terminate()
            for proc in started:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)


# --- measuring -----------------------------------------------------------------------


async def offered_load(
    peer: Peer, token: str, drafts: list[str], rate: float, inbox: Path, patience_s: float
) -> dict[str, Any]:
    """Pushes `drafts` at `rate`/s; each 202 until its file lands in `inbox` (waiting
    at most `patience_s` after the last push for the files still on their way)."""
    accepted: dict[str, float] = {}
    failed = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with (
        Landings(inbox, FILE_PREFIX) as landed,
        httpx.AsyncClient(
            base_url=peer.url,
            headers={"Authorization": f"Bearer {token}"},
            limits=limits,
            timeout=30,
        ) as client,
    ):

        async def push(draft_id: str) -> None:
            nonlocal failed
            try:
                response = await client.post(f"/draft-orders/{draft_id}/push")
            except httpx.HTTPError:  # e.g. no free connection for 30 s on an overloaded machine
                failed += 1
                return
            if response.status_code == 202:
                accepted[response.json()["erp_export_id"]] = time.monotonic()
            else:
                failed += 1

        await offer_paced(drafts, rate, push)
        try:
            async with asyncio.timeout(patience_s):
                await landed.wait_for(len(accepted))
        except TimeoutError:
            pass  # reported as accepted but not landed
    latencies = []
    for name, when in landed.times.items():
        export_id = name.removesuffix(".csv").rsplit("_", 1)[1]
        if export_id in accepted:
            latencies.append((when - accepted[export_id]) * 1000)
    return {
        "accepted": len(accepted),
        "failed": failed,
        "landed": len(latencies),
        "latencies_ms": latencies,
    }


def measure_push(bench: Bench, peer: Peer, token: str, drafts: list[str]) -> dict[str, Any]:
    seconds = 3 if bench.quick else 15  # as push_api.run
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as f:
        f.write("\n".join(drafts) + "\n")
        ids_path = f.name
    api_before, worker_before = peer.api_cpu(), peer.worker_cpu()
    try:
        result = run_wrk(
            peer.url, seconds=seconds, env={"BENCH_IDS": ids_path, "BENCH_TOKEN": token}
        )
    finally:
        os.unlink(ids_path)
    api_cpu = peer.api_cpu() - api_before
    committed = int(bench.sql(f"SELECT count(*) FROM {SCHEMA}.push_attempt")[0][0]) - WARM_UP
    drain_started = time.monotonic()
    wait_until(lambda: pending(bench) == 0, timeout=600, what="the peer's backlog", interval=0.25)
    peer.check_alive()
    return {
        **result,
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "pushes_committed": committed,
        "api_cpu_ms_per_push": api_cpu * 1000 / max(committed, 1),
        # the worker's CPU per export over the push run and its backlog's drain
        "worker_cpu_ms_per_export": (peer.worker_cpu() - worker_before) * 1000 / max(committed, 1),
        "backlog_drain_s": time.monotonic() - drain_started,
    }


def measure_end_to_end(bench: Bench, peer: Peer, token: str, drafts: list[str]) -> dict[str, Any]:
    rate = 20.0 if bench.quick else 50.0  # as end_to_end.latency_at_rate
    api_before, worker_before = peer.api_cpu(), peer.worker_cpu()
    load = asyncio.run(offered_load(peer, token, drafts, rate, bench.cfg.inbox_dir, patience_s=120))
    peer.check_alive()
    from_202 = load.pop("latencies_ms")
    by_mtime = landing_by_mtime(bench, drafts)
    done = max(load["landed"], 1)
    return {
        "offered_rate_per_s": rate,
        "pushes": len(drafts),
        **load,
        # as end_to_end's file_p50_ms: requested_at (stamped by the API before its
        # transaction) -> the file's mtime (the upload's last write; a coarse clock)
        "p50_ms": percentile(by_mtime, 50),
        "p99_ms": percentile(by_mtime, 99),
        # the client's 202 -> the file's rename under its final name (inotify)
        "from_202_p50_ms": percentile(from_202, 50),
        "from_202_p99_ms": percentile(from_202, 99),
        "from_202_max_ms": max(from_202, default=float("nan")),
        "api_cpu_ms_per_push": (peer.api_cpu() - api_before) * 1000 / done,
        "worker_cpu_ms_per_export": (peer.worker_cpu() - worker_before) * 1000 / done,
    }


def landing_by_mtime(bench: Bench, drafts: list[str]) -> list[float]:
    """What tests/bench/end_to_end.py measures for OrderFlow, on the peer's rows."""
    requested = {
        str(export_id): float(at)
        for export_id, at in bench.sql(
            f"SELECT erp_export_id, extract(epoch FROM requested_at) FROM {SCHEMA}.push_attempt"
            " WHERE draft_id = ANY(%s::uuid[])",
            (drafts,),
        )
    }
    landed = []
    for path in bench.cfg.inbox_dir.glob(f"{FILE_PREFIX}*"):
        export_id = path.stem.rsplit("_", 1)[-1]
        if export_id in requested:
            landed.append((path.stat().st_mtime - requested[export_id]) * 1000)
    return landed


def run(bench: Bench) -> dict[str, Any]:
    cfg = peer_config(bench)
    org = f"seedpeer-{uuid.uuid4().hex[:8]}"
    token = bench.token(org=org)
    # more drafts than 32 connections can push in the time: no push is a replay
    push_drafts = 5_000 if bench.quick else 25_000
    e2e_pushes = 40 if bench.quick else 1500  # as end_to_end.latency_at_rate
    create_scratch(cfg)
    try:
        warm_up = make_drafts(bench, WARM_UP, org=org)
        for_push = make_drafts(bench, push_drafts, org=org)
        for_e2e = make_drafts(bench, e2e_pushes, org=org)
        with running_peer(bench, cfg) as peer:
            started = asyncio.run(
                offered_load(peer, token, warm_up, 50.0, bench.cfg.inbox_dir, patience_s=60)
            )
            if started["landed"] != WARM_UP:
                peer.check_alive()
                raise RuntimeError(
                    f"the seed peer delivered {started['landed']} of {WARM_UP} warm-up pushes"
                )
            push = measure_push(bench, peer, token, for_push)
            end_to_end = measure_end_to_end(bench, peer, token, for_e2e)
    finally:
        remove_scratch(bench, cfg)
    return {
        "design": "FastAPI + SQLAlchemy Core + Redis SET NX + Celery on Redis",
        "processes": {"uvicorn": 1, "celery_prefork_children": 2},
        "push": push,
        "end_to_end": end_to_end,
    }
