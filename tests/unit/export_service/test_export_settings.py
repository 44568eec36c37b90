import pytest
from export_service.settings import DEV_ENCRYPTION_KEY, ExportSettings
from pydantic import ValidationError


def test_the_dev_encryption_key_is_refused_in_production():
    with pytest.raises(ValidationError):
        ExportSettings(orderflow_env="production", jwt_secret="s" * 40)
    assert ExportSettings().export_encryption_key.get_secret_value() == DEV_ENCRYPTION_KEY


def test_defaults_follow_the_contract():
    settings = ExportSettings()
    assert settings.http_port == 8102 and settings.service_name == "export-service"
