"""Ed25519 signing of checkpoints (the `cryptography` package).

AUDIT_SIGNING_KEY is the private key: 32 raw bytes in base64 (what the devstack
generates), or a PKCS#8 PEM. AUDIT_TRUSTED_KEYS lists further public keys (base64 of
32 raw bytes, comma-separated) whose checkpoints still verify, e.g. after a rotation.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable
from datetime import datetime

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from audit_service.domain.checkpoint import ChainPosition, Checkpoint, Kind, signed_bytes
from audit_service.settings import AuditSettings


class SigningKeyError(ValueError):
    """A configured key that is not an Ed25519 key."""


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(_raw_public(key)).hexdigest()[:16]


def load_private_key(text: str) -> Ed25519PrivateKey:
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise SigningKeyError("AUDIT_SIGNING_KEY is not an Ed25519 key")
            return key
        raw = base64.b64decode(text, validate=True)
        return Ed25519PrivateKey.from_private_bytes(raw)
    except (ValueError, binascii.Error) as exc:
        raise SigningKeyError("AUDIT_SIGNING_KEY is not an Ed25519 private key") from exc


def load_public_key(text: str) -> Ed25519PublicKey:
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text.strip(), validate=True))
    except (ValueError, binascii.Error) as exc:
        raise SigningKeyError("AUDIT_TRUSTED_KEYS holds a key that is not Ed25519") from exc


def generate_private_key() -> str:
    """A new key as AUDIT_SIGNING_KEY takes it (base64 of the 32 raw bytes)."""
    raw = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return base64.b64encode(raw).decode()


def public_key_text(key: Ed25519PublicKey) -> str:
    return base64.b64encode(_raw_public(key)).decode()


class Signer:
    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key = key.public_key()
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:  # never the key itself
        return f"Signer(key_id={self.key_id!r})"

    def sign(self, position: ChainPosition, kind: Kind, signed_at: datetime) -> Checkpoint:
        signature = self._key.sign(signed_bytes(position, kind, signed_at))
        return Checkpoint(
            org_id=position.org_id,
            kind=kind,
            seq=position.seq,
            entry_id=position.entry_id,
            hash=position.hash,
            signed_at=signed_at,
            key_id=self.key_id,
            signature=base64.b64encode(signature).decode(),
        )


class Verifier:
    """Checks checkpoint signatures against the trusted public keys."""

    def __init__(self, keys: Iterable[Ed25519PublicKey]) -> None:
        self._keys = {key_id(k): k for k in keys}

    @property
    def key_ids(self) -> list[str]:
        return sorted(self._keys)

    def __bool__(self) -> bool:
        return bool(self._keys)

    def valid(self, checkpoint: Checkpoint) -> bool:
        key = self._keys.get(checkpoint.key_id)
        if key is None:
            return False
        try:
            signature = base64.b64decode(checkpoint.signature, validate=True)
            key.verify(signature, checkpoint.signed_bytes())
        except (InvalidSignature, ValueError, binascii.Error):
            return False
        return True


def signer_of(settings: AuditSettings) -> Signer | None:
    if settings.audit_signing_key is None:
        return None
    return Signer(load_private_key(settings.audit_signing_key.get_secret_value()))


def verifier_of(settings: AuditSettings) -> Verifier | None:
    """The trusted public keys (the signing key's and AUDIT_TRUSTED_KEYS); None if none."""
    keys = [load_public_key(k) for k in settings.audit_trusted_keys.split(",") if k.strip()]
    signer = signer_of(settings)
    if signer is not None:
        keys.append(signer.public_key)
    return Verifier(keys) if keys else None
