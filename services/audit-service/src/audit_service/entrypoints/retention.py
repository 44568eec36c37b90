"""Retention and checkpoints as a command and as a loop (docs/audit-retention.md).

- `python -m audit_service retention [--org ORG]`: archive and prune what is past
  retention, then sign and publish the chain heads; exit 1 if an org was refused.
- `python -m audit_service audit-verify [--org ORG]` (`make audit-verify`): every chain
  against its anchors and newest signed head, from the table and from the topic.
- `run_retention_forever(container, stop)`: the same on a schedule, as the
  `retention-loop` role (bootstrap.py): heads every AUDIT_CHECKPOINT_INTERVAL_SECONDS,
  retention every AUDIT_RETENTION_INTERVAL_SECONDS; a failing round is logged and
  retried next time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orderflow_shared.messaging.kafka import client_options
from orderflow_shared.timing import sleep_or_stop
from prometheus_client import Counter, Gauge

from audit_service.adapters import checkpoint_topic
from audit_service.adapters.archive_files import ArchiveDir, ArchiveDirError
from audit_service.adapters.repository import SqlUnitOfWork
from audit_service.adapters.signing import signer_of, verifier_of
from audit_service.domain.checkpoint import Checkpoint
from audit_service.service_layer.checkpoints import SealResult, seal_heads
from audit_service.service_layer.retention import OrgRetention, PauseHook, retain_all
from audit_service.service_layer.verify import verify_all
from audit_service.settings import AuditSettings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from audit_service.bootstrap import Container

_log = logging.getLogger(__name__)

PAUSE_POINTS = ("after_archive", "before_commit")

CHECKPOINTS_SIGNED = Counter(
    "orderflow_audit_checkpoints_signed_total", "Chain heads signed as checkpoints."
)
CHECKPOINTS_REFUSED = Counter(
    "orderflow_audit_checkpoints_refused_total",
    "Heads not signed because the log lost or changed its last signed head.",
)
CHECKPOINT_PUBLISH_FAILURES = Counter(
    "orderflow_audit_checkpoint_publish_failures_total",
    "Rounds whose checkpoints could not be sent to audit.checkpoint (sent again next round).",
)
ENTRIES_ARCHIVED = Counter(
    "orderflow_audit_retention_archived_entries_total", "Entries written to archive files."
)
ENTRIES_PRUNED = Counter(
    "orderflow_audit_retention_pruned_entries_total", "Entries deleted after their archive."
)
ARCHIVES_WRITTEN = Counter("orderflow_audit_retention_archives_total", "Archive files recorded.")
RETENTION_FAILURES = Counter(
    "orderflow_audit_retention_failures_total",
    "Retention rounds that failed, and orgs retention refused to prune.",
)
CHECKPOINT_AGE = Gauge(
    "orderflow_audit_checkpoint_age_seconds",
    "Seconds since this process last signed and published every org's head "
    "(from its start until the first such round).",
)
RETENTION_AGE = Gauge(
    "orderflow_audit_retention_age_seconds",
    "Seconds since this process last ran retention over every org without a refusal.",
)
#: when the last good round of each job ended (monotonic clock of this process)
_last_good: dict[str, float] = {}


def _since(job: str) -> float:
    return time.monotonic() - _last_good.setdefault(job, time.monotonic())


def _register_age_gauges() -> None:
    CHECKPOINT_AGE.set_function(lambda: _since("checkpoints"))
    RETENTION_AGE.set_function(lambda: _since("retention"))


def pause_hook(settings: AuditSettings) -> PauseHook:
    """The test hook: at the chosen point say so on stderr, then wait to be killed."""
    point = settings.audit_retention_pause_at
    if point and point not in PAUSE_POINTS:
        raise ValueError(f"AUDIT_RETENTION_PAUSE_AT must be one of {', '.join(PAUSE_POINTS)}")
    active = bool(point) and settings.orderflow_env == "test"

    async def pause(at: str, detail: str) -> None:
        if active and at == point:
            print(f"retention paused {at} {detail}", file=sys.stderr, flush=True)
            await asyncio.Event().wait()  # until the test kills the process

    return pause


class MissingKeyError(RuntimeError):
    """Retention without AUDIT_SIGNING_KEY (it signs the anchor of what it prunes)."""


class RetentionJobs:
    """One round of each job, as the command and the loop run them."""

    def __init__(
        self, settings: AuditSettings, session_factory: async_sessionmaker[AsyncSession]
    ) -> None:
        self.settings = settings
        self._session_factory = session_factory
        self.signer = signer_of(settings)
        #: signed heads not yet on the topic, by org (sent again each round until they are)
        self.unpublished: dict[str, Checkpoint] = {}
        self.publish_failed = False

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self._session_factory)

    async def checkpoints(
        self, org_ids: list[str] | None = None, *, republish: bool = False
    ) -> SealResult:
        """Sign each moved head, then send every unsent one (all newest, if `republish`)."""
        if self.signer is None:
            _log.warning("AUDIT_SIGNING_KEY is not set: no audit checkpoints are signed")
            return SealResult()
        result = await seal_heads(self.uow, self.signer, datetime.now(UTC), org_ids)
        CHECKPOINTS_SIGNED.inc(len(result.signed))
        CHECKPOINTS_REFUSED.inc(len(result.refused))
        if republish:
            async with self.uow() as uow:
                for head in await uow.retention.newest_heads():
                    if org_ids is None or head.org_id in org_ids:
                        self.unpublished.setdefault(head.org_id, head)
        for checkpoint in result.signed:
            self.unpublished[checkpoint.org_id] = checkpoint
        self.publish_failed = False
        try:
            await checkpoint_topic.publish(
                client_options(self.settings),
                list(self.unpublished.values()),
                client_id=f"{self.settings.service_name}-checkpoints",
            )
        except Exception:
            self.publish_failed = True
            CHECKPOINT_PUBLISH_FAILURES.inc()
            _log.exception("audit checkpoints not published (sent again next round)")
            return result
        self.unpublished.clear()
        if not result.refused:
            _last_good["checkpoints"] = time.monotonic()
        return result

    async def retention(
        self, org_ids: list[str] | None = None, pause: PauseHook | None = None
    ) -> list[OrgRetention]:
        s = self.settings
        if self.signer is None:
            raise MissingKeyError("AUDIT_SIGNING_KEY is not set: retention signs its anchors")
        if s.audit_archive_dir is None:
            raise ArchiveDirError("AUDIT_ARCHIVE_DIR is not set: retention archives first")
        archive = ArchiveDir(s.audit_archive_dir)
        archive.check()
        results = await retain_all(
            self.uow,
            default_days=s.audit_retention_days,
            archive=archive,
            signer=self.signer,
            now=datetime.now(UTC),
            batch_size=s.audit_retention_batch_size,
            org_ids=org_ids,
            pause=pause or pause_hook(s),
        )
        refused = [r for r in results if r.refused]
        for r in results:
            ENTRIES_ARCHIVED.inc(r.archived)
            ENTRIES_PRUNED.inc(r.pruned)
            ARCHIVES_WRITTEN.inc(r.archives)
        RETENTION_FAILURES.inc(len(refused))
        if not refused:
            _last_good["retention"] = time.monotonic()
        return results


async def run_retention_forever(container: Container, stop: asyncio.Event) -> None:
    """Checkpoints every AUDIT_CHECKPOINT_INTERVAL_SECONDS and retention every
    AUDIT_RETENTION_INTERVAL_SECONDS until `stop` is set (the first of each right
    away). A failing round is logged, counted and tried again at the next interval; a
    round cancelled or killed half-way leaves nothing half-done (see retain_org)."""
    _register_age_gauges()
    s = container.settings
    jobs = RetentionJobs(s, container.session_factory)
    clock = asyncio.get_running_loop().time
    next_checkpoint = next_retention = clock()
    republish = True
    while not stop.is_set():
        if clock() >= next_checkpoint:
            try:
                await jobs.checkpoints(republish=republish)
                republish = False
            except Exception:
                CHECKPOINT_PUBLISH_FAILURES.inc()
                _log.exception("audit checkpoint round failed")
            next_checkpoint = clock() + s.audit_checkpoint_interval_seconds
        if stop.is_set():
            break
        if clock() >= next_retention:
            try:
                await jobs.retention()
            except (ArchiveDirError, MissingKeyError) as exc:  # configuration: say it plainly
                RETENTION_FAILURES.inc()
                _log.error("audit retention cannot run: %s", exc)
            except Exception:
                RETENTION_FAILURES.inc()
                _log.exception("audit retention round failed")
            next_retention = clock() + s.audit_retention_interval_seconds
        await sleep_or_stop(stop, max(0.0, min(next_checkpoint, next_retention) - clock()))


# --- the commands ---------------------------------------------------------------------
def _print(line: dict[str, object]) -> None:
    print(json.dumps(line, default=str), flush=True)


def retention_command(settings: AuditSettings, org: str | None) -> int:
    """Exit 0 when every org was handled and the heads published, 1 otherwise."""
    from audit_service.bootstrap import build, close

    async def run() -> int:
        container = build(settings)
        orgs = [org] if org else None
        try:
            jobs = RetentionJobs(settings, container.session_factory)
            results = await jobs.retention(orgs)
            sealed = await jobs.checkpoints(orgs, republish=True)
        finally:
            await close(container)
        for r in results:
            _print(
                {
                    "org_id": r.org_id,
                    "retention_days": r.policy.days,
                    "policy": r.policy.source,
                    "archives": r.archives,
                    "archived": r.archived,
                    "pruned": r.pruned,
                    "refused": r.refused,
                }
            )
        refused = [r for r in results if r.refused]
        _print(
            {
                "orgs": len(results),
                "pruned": sum(r.pruned for r in results),
                "refused": len(refused),
                "checkpoints_signed": len(sealed.signed),
                "checkpoints_refused": sealed.refused,
                "published": not jobs.publish_failed,
            }
        )
        return 1 if refused or sealed.refused or jobs.publish_failed else 0

    return asyncio.run(run())


def verify_command(settings: AuditSettings, org: str | None, *, kafka: bool) -> int:
    """Exit 0 when every chain holds (its anchors and newest signed head included), 1
    with each org's first broken link otherwise, 2 if the topic could not be read."""
    from audit_service.bootstrap import build, close

    async def run() -> int:
        external: Sequence[Checkpoint] = ()
        if kafka:
            try:
                external = await checkpoint_topic.read_all(client_options(settings))
            except Exception as exc:
                _print({"ok": False, "error": f"cannot read {checkpoint_topic.TOPIC}: {exc!r}"})
                return 2
        container = build(settings)
        try:
            reports = await verify_all(
                container.uow_factory, [org] if org else None, verifier_of(settings), external
            )
        finally:
            await close(container)
        broken = 0
        for org_id, report in reports.items():
            line: dict[str, object] = {
                "org_id": org_id,
                "ok": report.ok,
                "entries_checked": report.entries_checked,
                "first_seq": report.anchor_seq + 1 if report.entries_checked else None,
                "last_seq": report.last_seq,
                "checkpoint_seq": report.checkpoint_seq,
            }
            if report.first_broken is not None:
                broken += 1
                line["first_broken"] = asdict(report.first_broken)
            _print(line)
        _print({"orgs_checked": len(reports), "orgs_broken": broken, "ok": not broken})
        return 1 if broken else 0

    return asyncio.run(run())
