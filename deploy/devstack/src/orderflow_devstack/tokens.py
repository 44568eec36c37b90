"""Dev/test JWTs (HS256), with the claims docs/DEVELOPING.md fixes."""

from __future__ import annotations

import time
from collections.abc import Iterable

import jwt

from orderflow_devstack.config import ALL_ROLES, DEMO_ORG


def mint(
    secret: str,
    *,
    roles: Iterable[str] = ALL_ROLES,
    org: str = DEMO_ORG,
    sub: str = "user-1",
    ttl_seconds: int = 12 * 3600,
) -> str:
    now = int(time.time())
    claims = {
        "sub": sub,
        "org_id": org,
        "roles": list(roles),
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")
