"""`python -m orderflow_shared token`: prints only a token the services accept."""

from __future__ import annotations

import pytest
from orderflow_shared.__main__ import main
from orderflow_shared.auth import JwtVerifier
from orderflow_shared.settings import ServiceSettings
from pydantic import SecretStr


def test_token_prints_one_verifiable_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "cli-test-secret-0123456789abcdef0123456789"
    monkeypatch.setenv("JWT_SECRET", secret)
    assert main(["token", "--org", "acme", "--roles", "viewer,approver", "--sub", "user-9"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1
    principal = JwtVerifier(
        ServiceSettings(orderflow_env="test", jwt_secret=SecretStr(secret))
    ).verify(out.strip())
    assert principal.org_id == "acme"
    assert principal.user_id == "user-9"
    assert principal.roles == {"viewer", "approver"}


def test_token_refuses_unknown_roles(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "--roles", "viewer,root"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "root" in captured.err
