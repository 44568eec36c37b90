"""The record of topic `audit.checkpoint`: a signed head of one organisation's audit chain.

audit-service signs the newest entry of each org's hash chain every
`AUDIT_CHECKPOINT_INTERVAL_SECONDS` (when it changed) and publishes it here, keyed by
the org id, on a compacted topic: the latest checkpoint of every org stays readable
outside the audit database. Anyone holding audit-service's Ed25519 public key can check
that an org's log still reaches `seq` and that its entry there hashes to `hash`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: What the signature covers: this line, then the JSON of `SIGNED_FIELDS` (sorted keys,
#: no whitespace, UTF-8; `signed_at` as RFC 3339 UTC with microseconds).
SIGNING_CONTEXT = b"orderflow.audit.checkpoint.v1\n"
SIGNED_FIELDS: tuple[str, ...] = ("org_id", "seq", "entry_id", "hash", "signed_at", "kind")

HEX64 = r"^[0-9a-f]{64}$"
KEY_ID = r"^[0-9a-f]{16}$"


class AuditCheckpointV1(BaseModel):
    """A signed head (or retention anchor) of one org's audit hash chain."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    org_id: str = Field(min_length=1, description="The organisation (also the record key).")
    seq: int = Field(ge=1, description="Position of the entry in the org's chain (1 = first).")
    entry_id: int = Field(ge=1, description="The entry's id in audit-service's log.")
    hash: str = Field(pattern=HEX64, description="The entry's chain hash (SHA-256, hex).")
    signed_at: datetime = Field(description="When audit-service signed it.")
    kind: Literal["head", "anchor"] = Field(
        default="head",
        description="`head`: the newest entry then; `anchor`: the newest entry retention "
        "pruned, which the first kept entry links to.",
    )
    algorithm: Literal["Ed25519"] = "Ed25519"
    key_id: str = Field(
        pattern=KEY_ID, description="First 16 hex digits of SHA-256 of the raw public key."
    )
    signature: str = Field(
        min_length=1, description="Ed25519 signature (base64) of the signed bytes."
    )
