"""Unit tests build settings without a stack: each test gets keys of its own in
JWT_SECRET and EXPORT_ENCRYPTION_KEY (never constants), unless the test sets them."""

from __future__ import annotations

import base64
import os
import secrets

import pytest


@pytest.fixture(autouse=True)
def _keys_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    if "JWT_SECRET" not in os.environ:
        monkeypatch.setenv("JWT_SECRET", secrets.token_urlsafe(32))
    if "EXPORT_ENCRYPTION_KEY" not in os.environ:
        key = base64.urlsafe_b64encode(os.urandom(32)).decode()
        monkeypatch.setenv("EXPORT_ENCRYPTION_KEY", key)
