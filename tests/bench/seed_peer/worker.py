"""The peer's Celery worker: `python -m tests.bench.seed_peer.worker` (two prefork children).

`process_export_job(export_id)` reads the draft and its lines, renders the CSV, uploads
it to the dropzone (`.<name>.part`, then `posix_rename`, as export-service does), then
marks the attempt SENT and the draft PUSHED. Each child keeps one SFTP connection and
one event loop of its own, made on its first task (after the fork). The task is
acknowledged late: a child killed after the upload uploads the file again.
"""

from __future__ import annotations

import asyncio
import csv
import io
import posixpath
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncssh
from celery import Celery
from sqlalchemy import Engine, create_engine, select, update

from tests.bench.seed_peer.config import QUEUE, TASK, PeerConfig
from tests.bench.seed_peer.tables import draft_order, draft_order_line, push_attempt

HEADER = [
    "external_ref",
    "customer_id",
    "currency",
    "line_no",
    "sku",
    "description",
    "quantity",
    "unit",
    "unit_price",
]


class Dropzone:
    """One SFTP session to the dropzone, reconnected after a failure."""

    def __init__(self, cfg: PeerConfig) -> None:
        self._cfg = cfg
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    def upload(self, name: str, body: bytes) -> None:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            self._loop.run_until_complete(self._upload(name, body))
        except (OSError, asyncssh.Error):
            if self._conn is not None:
                self._conn.abort()
            self._conn = self._sftp = None
            raise

    async def _upload(self, name: str, body: bytes) -> None:
        cfg = self._cfg
        if self._sftp is None:
            self._conn = await asyncssh.connect(
                cfg.sftp_host,
                port=cfg.sftp_port,
                username=cfg.sftp_username,
                client_keys=[cfg.sftp_private_key_path],
                known_hosts=asyncssh.import_known_hosts(cfg.sftp_known_hosts_line),
            )
            self._sftp = await self._conn.start_sftp_client()
        temp = posixpath.join(cfg.sftp_directory, f".{name}.part")
        async with self._sftp.open(temp, "wb") as remote:
            await remote.write(body)
        await self._sftp.posix_rename(temp, posixpath.join(cfg.sftp_directory, name))


class Exporter:
    """What a child needs, made lazily so that nothing is shared across the fork."""

    def __init__(self, cfg: PeerConfig) -> None:
        self._cfg = cfg
        self._engine: Engine | None = None
        self._dropzone: Dropzone | None = None

    def export(self, export_id: uuid.UUID) -> None:
        if self._engine is None or self._dropzone is None:
            self._engine = create_engine(self._cfg.database_url, pool_size=1)
            self._dropzone = Dropzone(self._cfg)
        with self._engine.connect() as conn:
            draft = conn.execute(
                select(
                    draft_order.c.id,
                    draft_order.c.external_ref,
                    draft_order.c.customer_id,
                    draft_order.c.currency,
                )
                .join(push_attempt, push_attempt.c.draft_id == draft_order.c.id)
                .where(push_attempt.c.erp_export_id == export_id)
            ).one()
            lines = conn.execute(
                select(draft_order_line)
                .where(draft_order_line.c.draft_id == draft.id)
                .order_by(draft_order_line.c.line_no)
            ).all()
        self._dropzone.upload(f"{draft.external_ref}_{export_id}.csv", render(draft, lines))
        now = datetime.now(UTC)
        with self._engine.begin() as conn:
            conn.execute(
                update(push_attempt)
                .where(push_attempt.c.erp_export_id == export_id)
                .values(status="SENT", finished_at=now)
            )
            conn.execute(
                update(draft_order)
                .where(draft_order.c.id == draft.id, draft_order.c.current_export_id == export_id)
                .values(status="PUSHED", updated_at=now)
            )


def render(draft: Any, lines: Sequence[Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADER)
    for line in lines:
        writer.writerow(
            [
                draft.external_ref,
                draft.customer_id,
                draft.currency,
                line.line_no,
                line.sku,
                line.description,
                line.quantity,
                line.unit,
                line.unit_price,
            ]
        )
    return out.getvalue().encode()


def make_celery(cfg: PeerConfig) -> Celery:
    app = Celery("seedpeer", broker=cfg.redis_url)
    app.conf.update(
        task_acks_late=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=True,
    )
    exporter = Exporter(cfg)

    @app.task(name=TASK)  # type: ignore[untyped-decorator]
    def process_export_job(export_id: str) -> None:
        exporter.export(uuid.UUID(export_id))

    return app


def main() -> None:
    make_celery(PeerConfig.from_env()).worker_main(
        [
            "worker",
            "--pool=prefork",
            "--concurrency=2",
            f"--queues={QUEUE}",
            "--hostname=seedpeer@%h",
            "--loglevel=WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
    )


if __name__ == "__main__":
    main()
