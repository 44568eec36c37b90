from pathlib import Path

import pytest
from export_service.bootstrap import settings_env
from export_service.settings import DEV_ENCRYPTION_KEY, ExportSettings
from pydantic import ValidationError


def test_a_child_process_reads_back_the_same_settings():
    settings = ExportSettings(
        database_url="postgresql+psycopg://u:p@db:5433/x",
        export_encryption_key="k" * 43 + "=",
        export_storage_dir=Path("/srv/storage"),
        export_delivery_deadline_seconds=600,
        export_circuit_failure_threshold=7,
    )
    env = settings_env(settings)
    assert env["EXPORT_ENCRYPTION_KEY"] == "k" * 43 + "="
    assert ExportSettings(**{k.lower(): v for k, v in env.items()}) == settings


def test_the_dev_encryption_key_is_refused_in_production():
    with pytest.raises(ValidationError):
        ExportSettings(orderflow_env="production", jwt_secret="s" * 40)
    assert ExportSettings().export_encryption_key.get_secret_value() == DEV_ENCRYPTION_KEY


def test_defaults_follow_the_contract():
    settings = ExportSettings()
    assert settings.http_port == 8102 and settings.service_name == "export-service"
