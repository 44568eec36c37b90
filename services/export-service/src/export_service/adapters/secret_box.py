"""Secrets at rest: Fernet (AES-128-CBC + HMAC), several keys for rotation."""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from export_service.domain.connection import Secrets


class SecretBoxError(Exception):
    pass


class FernetSecretBox:
    """Encrypts with the first key; decrypts with any (comma-separated keys rotate)."""

    def __init__(self, keys: str) -> None:
        try:
            fernets = [Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()]
        except ValueError:
            raise SecretBoxError("EXPORT_ENCRYPTION_KEY is not a valid Fernet key") from None
        if not fernets:
            raise SecretBoxError("EXPORT_ENCRYPTION_KEY is empty") from None
        self._fernet = MultiFernet(fernets)

    def seal(self, secrets: Secrets) -> str | None:
        if secrets.is_empty:
            return None
        plain = json.dumps({"private_key": secrets.private_key, "password": secrets.password})
        return self._fernet.encrypt(plain.encode()).decode()

    def open(self, ciphertext: str | None) -> Secrets:
        if not ciphertext:
            return Secrets()
        try:
            plain = json.loads(self._fernet.decrypt(ciphertext.encode()))
        except (InvalidToken, ValueError):
            raise SecretBoxError(
                "stored secrets cannot be decrypted with the configured key"
            ) from None
        return Secrets(private_key=plain.get("private_key"), password=plain.get("password"))
