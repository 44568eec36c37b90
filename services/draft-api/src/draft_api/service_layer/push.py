"""Push and retry-push, with Idempotency-Key semantics.

Postgres decides (the key row commits with the push, under the draft's row lock);
the cache only answers replays early and turns concurrent duplicates away with 409.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from orderflow_shared.preconditions import Preconditions

from draft_api.domain import errors
from draft_api.domain.idempotency import IdempotencyRecord, Operation, fingerprint, parse_key
from draft_api.domain.model import Actor, DraftOrder, DraftStatus, ExportStatus
from draft_api.service_layer.clock import utcnow
from draft_api.service_layer.drafts import check_preconditions
from draft_api.service_layer.ports import (
    CacheState,
    IdempotencyCache,
    UnitOfWork,
    UnitOfWorkFactory,
)


@dataclass(frozen=True)
class PushDraft:
    draft_id: uuid.UUID
    operation: Operation
    idempotency_key: str | None = None
    #: checked on a new push only (a replay answers as the first request did)
    expect: Preconditions | None = None


@dataclass(frozen=True)
class PushResult:
    erp_export_id: uuid.UUID
    draft_status: DraftStatus  # the draft's status now
    export_status: ExportStatus  # the export's status now
    replayed: bool

    @property
    def status(self) -> str:
        """What the answer's `status` has always said: the draft's PUSHING for a new
        push, the export's status now for a replay."""
        return self.export_status.value if self.replayed else self.draft_status.value


async def push_draft(
    uow_factory: UnitOfWorkFactory,
    cache: IdempotencyCache,
    actor: Actor,
    cmd: PushDraft,
    *,
    key_ttl: timedelta,
) -> PushResult:
    if cmd.idempotency_key is None:
        return await _push_in_transaction(uow_factory(), actor, cmd, key=None, key_ttl=key_ttl)
    key = parse_key(cmd.idempotency_key)

    entry = await cache.acquire(cmd.draft_id, key)
    if entry.state is CacheState.IN_FLIGHT:
        raise errors.IdempotencyKeyInFlight()
    if entry.state is CacheState.DONE:
        replay = await _replay(uow_factory(), actor, cmd, key)
        if replay is not None:
            return replay
        # The cached key belongs to no request of this org: decide in Postgres alone.
        return await _push_in_transaction(uow_factory(), actor, cmd, key=key, key_ttl=key_ttl)

    try:
        result = await _push_in_transaction(uow_factory(), actor, cmd, key=key, key_ttl=key_ttl)
    except BaseException:
        if entry.token is not None:
            await cache.release(cmd.draft_id, key, entry.token)
        raise
    await cache.remember(cmd.draft_id, key, result.erp_export_id)
    return result


async def _push_in_transaction(
    uow: UnitOfWork, actor: Actor, cmd: PushDraft, *, key: str | None, key_ttl: timedelta
) -> PushResult:
    now = utcnow()
    async with uow:
        target = await uow.drafts.lock_for_push(actor.org_id, cmd.draft_id, key=key)
        if target is None:
            raise errors.DraftNotFound()
        draft = target.draft
        if key is not None:
            earlier = target.earlier
            if earlier is not None and earlier.expired(now):
                await uow.idempotency_keys.delete(actor.org_id, key)
                earlier = None
            if earlier is not None:
                if not earlier.matches(cmd.operation, cmd.draft_id):
                    raise errors.IdempotencyKeyMismatch()
                return await _replayed(uow, actor, draft, earlier.erp_export_id)

        check_preconditions(draft, cmd.expect)
        export_id = uuid.uuid4()
        start = draft.push if cmd.operation is Operation.PUSH else draft.retry_push
        start(
            actor=actor,
            export_id=export_id,
            has_active_connector=target.has_active_connector,
            now=now,
        )
        await uow.drafts.save(draft)
        if key is not None:
            await uow.idempotency_keys.add(
                IdempotencyRecord(
                    org_id=actor.org_id,
                    key=key,
                    operation=cmd.operation,
                    draft_id=cmd.draft_id,
                    fingerprint=fingerprint(cmd.operation, cmd.draft_id),
                    erp_export_id=export_id,
                    created_at=now,
                    expires_at=now + key_ttl,
                )
            )
        await uow.commit()
    return PushResult(export_id, draft.status, ExportStatus.PENDING, replayed=False)


async def _replay(uow: UnitOfWork, actor: Actor, cmd: PushDraft, key: str) -> PushResult | None:
    async with uow:
        record = await uow.idempotency_keys.get(actor.org_id, key)
        if record is None or record.expired(utcnow()):
            return None
        if not record.matches(cmd.operation, cmd.draft_id):
            raise errors.IdempotencyKeyMismatch()
        status = await uow.drafts.export_status(actor.org_id, record.erp_export_id)
        draft = await uow.drafts.get(actor.org_id, cmd.draft_id)
    return PushResult(
        record.erp_export_id,
        draft.status if draft is not None else DraftStatus.PUSHING,
        status or ExportStatus.PENDING,
        replayed=True,
    )


async def _replayed(
    uow: UnitOfWork, actor: Actor, draft: DraftOrder, export_id: uuid.UUID
) -> PushResult:
    """The answer of the earlier push `export_id` of this draft (loaded for a push: its
    latest attempt only; an older one's status is read)."""
    attempt = draft.attempt_for(export_id)
    if attempt is not None:
        status: ExportStatus | None = attempt.status
    else:
        status = await uow.drafts.export_status(actor.org_id, export_id)
    return PushResult(export_id, draft.status, status or ExportStatus.PENDING, replayed=True)
