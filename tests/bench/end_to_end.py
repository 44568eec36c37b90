"""2. End to end: push accepted → file in the dropzone → export.sent consumed → PUSHED.

Latency at a fixed offered rate, read from draft-api's own push history
(`push_attempt.requested_at` → `finished_at`, both stamped by draft-api), and the
maximum sustained delivery rate with a backlog, against OpenSSH `sftp -b` uploading
the same number of files of the same size over one connection.
"""

from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.common import Bench, offer_paced, percentile, wait_until
from tests.bench.drafts import make_approved_drafts
from tests.bench.org import wait_drained


async def _offered_load(bench: Bench, org: str, drafts: list[str], rate: float) -> int:
    headers = {"Authorization": f"Bearer {bench.token(org=org)}"}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    accepted = 0
    async with httpx.AsyncClient(
        base_url=bench.cfg.gateway_url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def push(draft_id: str) -> None:
            nonlocal accepted
            try:
                response = await client.post(f"/draft-orders/{draft_id}/push")
            except httpx.TransportError:  # a timeout on an overloaded machine: not accepted
                return
            if response.status_code == 202:
                accepted += 1

        await offer_paced(drafts, rate, push)
    return accepted


def latency_at_rate(bench: Bench, org: str) -> dict[str, Any]:
    rate = 20.0 if bench.quick else 50.0
    count = 40 if bench.quick else 1000
    drafts = make_approved_drafts(bench, count, org=org)
    accepted = asyncio.run(_offered_load(bench, org, drafts, rate))
    wait_drained(bench, org)
    rows = bench.sql(
        "SELECT extract(epoch FROM finished_at - requested_at) FROM draft.push_attempt"
        " WHERE org_id = %s AND draft_id = ANY(%s::uuid[]) AND status = 'SENT'",
        (org, drafts),
    )
    latencies = [float(r[0]) * 1000 for r in rows]
    landed = _landing_ms(bench, org, drafts)
    hops = _hops(bench, org, drafts)
    return {
        "offered_rate_per_s": rate,
        "pushes": count,
        "accepted": accepted,
        "sent": len(latencies),
        # 202 (requested_at, stamped by draft-api) -> the outcome back in draft-api
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        # 202 -> the file in the dropzone (its mtime: the upload's last write)
        "landed": len(landed),
        "file_p50_ms": percentile(landed, 50),
        "file_p99_ms": percentile(landed, 99),
        "hops": hops,
    }


#: each hop of a push, from the timestamps the pipeline keeps (in this order)
HOPS = (
    ("push", "push stamped -> its outbox row written (in the push's transaction)"),
    ("relay", "-> marked published by the relay (commit, wake-up, send, Kafka's ack)"),
    ("to_export", "-> export row written (Kafka fetch, export-service consume)"),
    ("upload", "-> file in the dropzone (worker wake-up, claim, render, SFTP upload)"),
    ("outcome", "-> outcome committed (the worker's outcome transaction)"),
    ("result_relay", "-> export.sent marked published by the relay (wake-up, send, ack)"),
    ("back", "-> outcome applied in draft-api (Kafka fetch, results consumer)"),
)
#: a consumer may have the record before the relay has marked it published, so the
#: hop after a relay can be shorter than it was, by the mark's own time


def _hops(bench: Bench, org: str, drafts: list[str]) -> dict[str, dict[str, float]]:
    """The median and p99 of each hop (ms), for the drafts pushed once and sent."""
    rows = bench.sql(
        "SELECT e.id::text,"
        " extract(epoch FROM a.requested_at), extract(epoch FROM d.created_at),"
        " extract(epoch FROM d.published_at),"
        " extract(epoch FROM e.created_at), extract(epoch FROM e.sent_at),"
        " extract(epoch FROM x.published_at), extract(epoch FROM i.applied_at)"
        " FROM draft.push_attempt a"
        " JOIN draft.outbox d ON d.key = a.draft_id::text AND d.topic = 'draft.push_requested'"
        " JOIN export.erp_export e ON e.id = a.erp_export_id"
        " JOIN export.outbox x ON x.key = a.draft_id::text AND x.topic = 'export.sent'"
        " JOIN draft.inbox i ON i.event_id = x.event_id"
        " WHERE a.org_id = %s AND a.draft_id = ANY(%s::uuid[]) AND a.status = 'SENT'",
        (org, drafts),
    )
    landed = {
        path.stem.rsplit("_", 1)[-1]: path.stat().st_mtime
        for path in bench.cfg.inbox_dir.glob("BENCH-*")
    }
    spans: dict[str, list[float]] = {name: [] for name, _ in HOPS}
    for export_id, requested, written, relayed, created, sent, result, applied in rows:
        if export_id not in landed:
            continue
        marks = [requested, written, relayed, created, landed[export_id], sent, result, applied]
        marks = [float(m) for m in marks]
        for (name, _), start, end in zip(HOPS, marks, marks[1:], strict=False):
            spans[name].append((end - start) * 1000)
    return {
        name: {"p50_ms": percentile(values, 50), "p99_ms": percentile(values, 99)}
        for name, values in spans.items()
    }


def _landing_ms(bench: Bench, org: str, drafts: list[str]) -> list[float]:
    requested = {
        str(export_id): float(at)
        for export_id, at in bench.sql(
            "SELECT erp_export_id, extract(epoch FROM requested_at) FROM draft.push_attempt"
            " WHERE org_id = %s AND draft_id = ANY(%s::uuid[]) AND status = 'SENT'",
            (org, drafts),
        )
    }
    landed = []
    for path in bench.cfg.inbox_dir.glob("BENCH-*"):
        export_id = path.stem.rsplit("_", 1)[-1]  # the bench's template ends with it
        if export_id in requested:
            landed.append((path.stat().st_mtime - requested[export_id]) * 1000)
    return landed


def backlog_throughput(bench: Bench, org: str) -> dict[str, Any]:
    count = 100 if bench.quick else 2000
    drafts = make_approved_drafts(bench, count, org=org)
    # export-service's consumer and workers stop (its API and relay run on), so the
    # requests wait in Kafka and the delivery of all of them is measured from the start
    pausing = [
        bench.stack.component(name)
        for name in bench.stack.processes_of("export-service")
        if name.startswith("export-worker-") or name == "export-service-consumer"
    ]
    for process in pausing:
        process.stop()
    try:
        asyncio.run(_offered_load(bench, org, drafts, rate=2000.0))
        # the backlog is the requests already in Kafka for export-service
        wait_until(
            lambda: (
                bench.sql("SELECT count(*) FROM draft.outbox o WHERE o.published_at IS NULL")[0][0]
                == 0
            ),
            timeout=120,
            what="draft-api's outbox to publish the backlog",
        )
        # what draft-api took (a push whose answer timed out may have been taken too)
        count = int(
            bench.sql(
                "SELECT count(*) FROM draft.push_attempt WHERE org_id = %s"
                " AND draft_id = ANY(%s::uuid[])",
                (org, drafts),
            )[0][0]
        )
    finally:
        for process in pausing:
            process.start(wait=False)
        for process in pausing:
            process.wait_ready()
    started = time.monotonic()
    wait_until(
        lambda: (
            bench.sql(
                "SELECT count(*) FROM export.erp_export WHERE org_id = %s AND status = 'SENT'"
                " AND draft_order_id = ANY(%s::uuid[])",
                (org, drafts),
            )[0][0]
            >= count
        ),
        timeout=600,
        what="the backlog to be delivered",
        interval=0.1,
    )
    elapsed = time.monotonic() - started
    first, last = bench.sql(
        "SELECT min(sent_at), max(sent_at) FROM export.erp_export WHERE org_id = %s"
        " AND draft_order_id = ANY(%s::uuid[])",
        (org, drafts),
    )[0]
    wait_drained(bench, org)
    sizes = [p.stat().st_size for p in bench.cfg.inbox_dir.glob("BENCH-*")][:200]
    return {
        "offered": len(drafts),
        "backlog": count,
        "seconds_from_restart": elapsed,
        "deliveries_per_s_incl_start": count / elapsed,
        "deliveries_per_s": (count - 1) / max((last - first).total_seconds(), 1e-6),
        "file_size_bytes": int(sum(sizes) / len(sizes)) if sizes else 300,
    }


def sftp_anchor(bench: Bench, count: int, size: int) -> dict[str, Any]:
    sftp = bench.stack.sftp_info()
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp)
        payload = b"x" * size
        names = [f"ANCHOR-{i:05d}.csv" for i in range(count)]
        for name in names:
            (local / name).write_bytes(payload)
        batch = local / "batch"
        batch.write_text("".join(f"put {local / n} /inbox/{n}\n" for n in names))
        known = local / "known_hosts"
        known.write_text(sftp["known_hosts_line"] + "\n")
        command = [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-i",
            sftp["private_key_path"],
            "-P",
            str(bench.cfg.ports["sftp"]),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={known}",
            "-o",
            "StrictHostKeyChecking=yes",
            f"{sftp['username']}@127.0.0.1",
        ]
        started = time.monotonic()
        subprocess.run(command, check=True, capture_output=True)
        elapsed = time.monotonic() - started
    for name in names:
        (bench.cfg.inbox_dir / name).unlink(missing_ok=True)
    return {
        "files": count,
        "file_size_bytes": size,
        "seconds": elapsed,
        "files_per_s": count / elapsed,
    }


def run(bench: Bench, org: str) -> dict[str, Any]:
    latency = latency_at_rate(bench, org)
    backlog = backlog_throughput(bench, org)
    if backlog["backlog"] < 0.9 * backlog["offered"]:
        # the load generator's requests failed before they reached the gateway (seen
        # once: all but one of 2000 ended in client transport errors), so there was no
        # backlog to measure; the repetition's delivery figures are left out
        skipped = {**backlog, "deliveries_per_s": None, "deliveries_per_s_incl_start": None}
        return {"latency": latency, "backlog": skipped, "anchor_sftp_b": None, "ratio": None}
    anchor = sftp_anchor(bench, backlog["backlog"], backlog["file_size_bytes"])
    return {
        "latency": latency,
        "backlog": backlog,
        "anchor_sftp_b": anchor,
        "ratio": backlog["deliveries_per_s"] / anchor["files_per_s"],
    }
