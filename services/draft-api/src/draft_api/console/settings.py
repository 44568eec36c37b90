"""The operator console's settings are draft-api's `CONSOLE_*` settings (see README)."""

from __future__ import annotations

from draft_api.settings import DraftApiSettings

ConsoleSettings = DraftApiSettings


def dev_sign_in(settings: DraftApiSettings) -> bool:
    """Whether this process may issue dev tokens: HS256 with a secret only."""
    possible = settings.jwt_algorithm == "HS256" and settings.jwt_secret is not None
    if settings.console_dev_sign_in is not None:
        return bool(settings.console_dev_sign_in and possible)
    return bool(settings.orderflow_env != "production" and possible)
