import base64
import os

import pytest
from export_service.settings import ExportSettings
from pydantic import ValidationError


def test_the_encryption_key_has_no_default_and_must_be_a_fernet_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EXPORT_ENCRYPTION_KEY", raising=False)
    with pytest.raises(ValidationError, match="export_encryption_key"):
        ExportSettings()
    with pytest.raises(ValidationError, match="Fernet key"):
        ExportSettings(export_encryption_key="not-a-key")
    key = base64.urlsafe_b64encode(os.urandom(32)).decode()
    assert ExportSettings(export_encryption_key=key).export_encryption_key.get_secret_value() == key
    rotated = f"{base64.urlsafe_b64encode(os.urandom(32)).decode()},{key}"
    assert ExportSettings(export_encryption_key=rotated)
    with pytest.raises(ValidationError, match="Fernet keys"):
        ExportSettings(export_encryption_key=f"{key},short")


def test_defaults_follow_the_contract():
    settings = ExportSettings()
    assert settings.http_port == 8102 and settings.service_name == "export-service"
