"""JWT bearer auth: HS256 with a secret in development, RS256 via JWKS in production.

- `Principal(user_id: str, org_id: str, roles: frozenset[str])` (frozen dataclass),
  `principal.has_any(*roles) -> bool`.
- `JwtVerifier(settings)`: created once (holds one `PyJWKClient` for RS256);
  `verify(token) -> Principal`, raising `AuthError(detail)` for anything wrong
  (expired, bad signature, `alg: none`, wrong iss/aud, missing claims). `algorithms`,
  `iss`, `aud`, `exp` are always checked, and the claims are strictly typed: `exp`,
  `iat` (required) and `nbf` are JSON numbers, `exp - iat` is at most
  `JWT_MAX_LIFETIME_SECONDS`, `roles` is a list of strings, `sub` and `org_id` are
  non-empty strings without control characters; a token longer than
  `JWT_MAX_TOKEN_BYTES` is refused before it is decoded. A token that verified is
  remembered (its principal, keyed by the whole token, in a bounded LRU of
  `cache_size` entries) until it expires (`exp` plus the leeway, the instant PyJWT
  would refuse it) and, with RS256, for at most `jwks_cache_seconds` (as long as the
  signing key itself is cached); a refused token is never remembered.
- `mint_token(secret, *, sub, org_id, roles, issuer="orderflow", audience="orderflow",
  ttl_seconds=3600*12) -> str`: dev/test tokens (HS256).
- FastAPI: `install_auth(app, verifier)` stores the verifier on app.state;
  `CurrentPrincipal = Annotated[Principal, Depends(current_principal)]` (401 with
  `WWW-Authenticate: Bearer` when missing, `Bearer error="invalid_token"` plus an
  `error_description` when invalid, RFC 6750); `require_roles(*roles)` dependency
  factory (403 `{"detail": "Requires one of the roles: ..."}`), one dependency over
  `BearerCredentials`; `authenticate(request, credentials) -> Principal` is the check
  both run (for a dependency of one's own that should not add a level).
"""

from __future__ import annotations

import math
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orderflow_shared.settings import ServiceSettings

ROLES: frozenset[str] = frozenset({"viewer", "operator", "approver", "admin"})
_REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub"]
_TIME_CLAIMS = ("exp", "iat", "nbf")
#: the longest `sub` / `org_id` accepted
MAX_IDENTIFIER_LENGTH = 255


class AuthError(Exception):
    """The token is missing or not acceptable; `detail` is safe to show to the caller."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Principal:
    user_id: str
    org_id: str
    roles: frozenset[str]

    def has_any(self, *roles: str) -> bool:
        return not self.roles.isdisjoint(roles)


class JwtVerifier:
    """Checks signature, algorithm, issuer, audience, expiry and the OrderFlow claims."""

    def __init__(
        self,
        settings: ServiceSettings,
        *,
        leeway_seconds: int = 30,
        jwks_cache_seconds: int = 300,
        cache_size: int = 1024,
    ) -> None:
        self._algorithm = settings.jwt_algorithm
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self._leeway = leeway_seconds
        self._max_lifetime = settings.jwt_max_lifetime_seconds
        self._max_token_bytes = settings.jwt_max_token_bytes
        secret = settings.jwt_secret
        if self._algorithm == "HS256" and secret is None:
            raise ValueError("JWT_SECRET is required with HS256 (`make up` makes one per stack)")
        self._secret = secret.get_secret_value() if secret is not None else ""
        self._jwks: jwt.PyJWKClient | None = None
        #: token -> (the Unix time until which it stays good, its principal)
        self._verified: OrderedDict[str, tuple[float, Principal]] = OrderedDict()
        self._cache_size = cache_size
        #: how long a verified token is trusted without looking at its key again
        self._recheck_after: float = math.inf
        if self._algorithm == "RS256":
            self._recheck_after = jwks_cache_seconds
            if not settings.jwt_jwks_url:
                raise ValueError("JWT_JWKS_URL is required with RS256")
            self._jwks = jwt.PyJWKClient(
                settings.jwt_jwks_url, cache_keys=True, lifespan=jwks_cache_seconds, timeout=5
            )

    def _key(self, token: str) -> Any:
        if self._jwks is None:
            return self._secret
        try:
            return self._jwks.get_signing_key_from_jwt(token).key
        except jwt.PyJWKClientConnectionError as exc:
            raise AuthError("Signing keys are unavailable") from exc
        except jwt.PyJWKClientError as exc:
            raise AuthError("Unknown signing key") from exc

    def verify(self, token: str) -> Principal:
        if len(token) > self._max_token_bytes:
            raise AuthError(f"Token longer than {self._max_token_bytes} bytes")
        now = time.time()
        remembered = self._verified.get(token)
        if remembered is not None:
            good_until, principal = remembered
            if now < good_until:
                self._verified.move_to_end(token)
                return principal
            del self._verified[token]
        claims = self._decode(token)
        principal = _principal(claims)
        if self._cache_size > 0:
            good_until = min(claims["exp"] + self._leeway, now + self._recheck_after)
            self._verified[token] = (good_until, principal)
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return principal

    def _decode(self, token: str) -> dict[str, Any]:
        """The token's claims, checked (signature, algorithm, iss, aud, times)."""
        try:
            header = jwt.get_unverified_header(token)
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthError("Malformed token") from exc
        if header.get("alg") != self._algorithm:
            raise AuthError("Token algorithm not accepted")
        try:
            claims = jwt.decode(
                token,
                key=self._key(token),
                algorithms=[self._algorithm],
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway,
                options={"require": _REQUIRED_CLAIMS},
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("Token expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise AuthError("Token audience not accepted") from exc
        except jwt.InvalidIssuerError as exc:
            raise AuthError("Token issuer not accepted") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"Token lacks the {exc.claim} claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise AuthError("Token signature invalid") from exc
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise AuthError("Invalid token") from exc
        _check_times(claims, self._max_lifetime)
        return claims


def _check_times(claims: dict[str, Any], max_lifetime: int) -> None:
    """`exp`, `iat`, `nbf` as JSON numbers (PyJWT also takes "123"), and a bounded life."""
    for name in _TIME_CLAIMS:
        if name in claims and not _is_number(claims[name]):
            raise AuthError(f"Token claim {name} must be a number")
    if claims["exp"] - claims["iat"] > max_lifetime:
        raise AuthError(f"Token lifetime (exp - iat) exceeds {max_lifetime} seconds")


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def _principal(claims: dict[str, Any]) -> Principal:
    sub = _identifier(claims, "sub")
    org_id = _identifier(claims, "org_id")
    roles = claims.get("roles")
    if roles is None:
        raise AuthError("Token lacks the roles claim")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise AuthError("Token claim roles must be a list of strings")
    return Principal(user_id=sub, org_id=org_id, roles=frozenset(roles))


def _identifier(claims: dict[str, Any], name: str) -> str:
    value = claims.get(name)
    if value is None or value == "":
        raise AuthError(f"Token lacks the {name} claim")
    if (
        not isinstance(value, str)
        or len(value) > MAX_IDENTIFIER_LENGTH
        or any(unicodedata.category(c) in ("Cc", "Cs") for c in value)
    ):
        raise AuthError(
            f"Token claim {name} must be a string of at most {MAX_IDENTIFIER_LENGTH} "
            "characters without control characters"
        )
    return value


def mint_token(
    secret: str,
    *,
    sub: str,
    org_id: str,
    roles: list[str] | tuple[str, ...] | frozenset[str],
    issuer: str = "orderflow",
    audience: str = "orderflow",
    ttl_seconds: int = 3600 * 12,
) -> str:
    """An HS256 token for development and tests."""
    now = int(time.time())
    claims = {
        "sub": sub,
        "org_id": org_id,
        "roles": sorted(roles),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


# --- FastAPI -------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False)


def install_auth(app: FastAPI, verifier: JwtVerifier) -> None:
    app.state.jwt_verifier = verifier


def _unauthorized(detail: str, *, invalid_token: bool = False) -> HTTPException:
    """401; RFC 6750 names the error only when a token was presented."""
    challenge = "Bearer"
    if invalid_token:
        challenge = f'Bearer error="invalid_token", error_description="{detail}"'
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": challenge},
    )


BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None) -> Principal:
    """The caller of `request` from its bearer credentials, or a 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("Not authenticated")
    verifier: JwtVerifier | None = getattr(request.app.state, "jwt_verifier", None)
    if verifier is None:
        raise RuntimeError("install_auth(app, verifier) was not called")
    try:
        return verifier.verify(credentials.credentials)
    except AuthError as exc:
        raise _unauthorized(exc.detail, invalid_token=True) from exc


async def current_principal(request: Request, credentials: BearerCredentials) -> Principal:
    return authenticate(request, credentials)


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def require_roles(*roles: str) -> Callable[..., Coroutine[Any, Any, Principal]]:
    """`Depends(require_roles("approver"))`: 403 unless the caller has one of them.

    One dependency over the bearer credentials (not one over `current_principal`):
    FastAPI resolves every level of dependencies on every request."""
    unknown = set(roles) - ROLES
    if unknown:
        raise ValueError(f"unknown role(s): {sorted(unknown)}")
    refusal = f"Requires one of the roles: {', '.join(roles)}"

    async def dependency(request: Request, credentials: BearerCredentials) -> Principal:
        principal = authenticate(request, credentials)
        if not principal.has_any(*roles):
            raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail=refusal)
        return principal

    return dependency
