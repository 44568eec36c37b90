"""Signed checkpoints: a position of an org's chain that audit-service vouches for.

A checkpoint names an entry by its position in the org's chain (`seq`, 1 = the first
entry ever, counting pruned ones), its row id and its hash. `head` checkpoints are the
newest entry at signing time: a log that no longer reaches `seq`, or whose entry there
has another hash, lost or rewrote entries. `anchor` checkpoints are the newest entry
retention pruned: the first kept entry links to it, so the rest still verifies.

The signature (Ed25519, `adapters.signing`) covers `signed_bytes()`; the format is the
contract of topic `audit.checkpoint` (orderflow_shared.contracts.checkpoints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from orderflow_shared.contracts.checkpoints import SIGNING_CONTEXT, AuditCheckpointV1

from audit_service.domain.entry import canonical_time

Kind = Literal["head", "anchor"]


@dataclass(frozen=True)
class ChainPosition:
    """An entry of an org's chain, by position."""

    org_id: str
    seq: int
    entry_id: int
    hash: str


@dataclass(frozen=True)
class Checkpoint:
    org_id: str
    kind: Kind
    seq: int
    entry_id: int
    hash: str
    signed_at: datetime
    key_id: str
    signature: str  # base64

    @property
    def position(self) -> ChainPosition:
        return ChainPosition(self.org_id, self.seq, self.entry_id, self.hash)

    def signed_bytes(self) -> bytes:
        return signed_bytes(self.position, self.kind, self.signed_at)

    def to_record(self) -> AuditCheckpointV1:
        return AuditCheckpointV1(
            org_id=self.org_id,
            seq=self.seq,
            entry_id=self.entry_id,
            hash=self.hash,
            signed_at=self.signed_at,
            kind=self.kind,
            key_id=self.key_id,
            signature=self.signature,
        )

    @classmethod
    def of_record(cls, record: AuditCheckpointV1) -> Checkpoint:
        return cls(
            org_id=record.org_id,
            kind=record.kind,
            seq=record.seq,
            entry_id=record.entry_id,
            hash=record.hash,
            signed_at=record.signed_at,
            key_id=record.key_id,
            signature=record.signature,
        )


def signed_bytes(position: ChainPosition, kind: Kind, signed_at: datetime) -> bytes:
    """What the signature covers: the context line, then the sorted compact JSON."""
    body = {
        "org_id": position.org_id,
        "seq": position.seq,
        "entry_id": position.entry_id,
        "hash": position.hash,
        "signed_at": canonical_time(signed_at),
        "kind": kind,
    }
    return (
        SIGNING_CONTEXT
        + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def newest(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint furthest along the chain (then the latest signed)."""
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda c: (c.seq, c.signed_at))
