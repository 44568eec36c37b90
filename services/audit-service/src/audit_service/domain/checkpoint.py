"""Signed checkpoints: a position of an org's chain that audit-service vouches for.

A checkpoint names an entry by its position in the org's chain (`seq`, 1 = the first
entry ever, counting pruned ones), its row id and its hash. `head` checkpoints are the
newest entry at signing time: a log that no longer reaches `seq`, or whose entry there
has another hash, lost or rewrote entries. `anchor` checkpoints are the newest entry
retention pruned: the first kept entry links to it, so the rest still verifies.

The signature (Ed25519, `adapters.signing`) covers `signed_bytes()`; the format is the
contract of topic `audit.checkpoint` (orderflow_shared.contracts.checkpoints), which
`adapters.checkpoint_topic` turns a checkpoint into and back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from typing import Any, Literal

from orderflow_shared.contracts.checkpoints import SIGNING_CONTEXT

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

    @classmethod
    def of_columns(cls, values: Mapping[str, Any]) -> Checkpoint:
        """The checkpoint in a mapping with its fields' names (a row, a record)."""
        return cls(**{f.name: values[f.name] for f in fields(cls)})


def signed_bytes(position: ChainPosition, kind: Kind, signed_at: datetime) -> bytes:
    """What the signature covers: the context line, then the sorted compact JSON."""
    body = {**asdict(position), "signed_at": canonical_time(signed_at), "kind": kind}
    return (
        SIGNING_CONTEXT
        + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    )


def newest(checkpoints: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint furthest along the chain (then the latest signed)."""
    if not checkpoints:
        return None
    return max(checkpoints, key=lambda c: (c.seq, c.signed_at))
