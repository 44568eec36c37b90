"""Dev/test JWTs (HS256) for the demo org, with the claims docs/DEVELOPING.md fixes."""

from __future__ import annotations

from collections.abc import Iterable

from orderflow_shared.auth import mint_token

from orderflow_devstack.config import ALL_ROLES, DEMO_ORG


def mint(
    secret: str,
    *,
    roles: Iterable[str] = ALL_ROLES,
    org: str = DEMO_ORG,
    sub: str = "user-1",
    ttl_seconds: int = 12 * 3600,
) -> str:
    return mint_token(secret, sub=sub, org_id=org, roles=tuple(roles), ttl_seconds=ttl_seconds)
