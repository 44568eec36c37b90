"""JWT bearer auth: HS256 with a secret in development, RS256 via JWKS in production.

- `Principal(user_id: str, org_id: str, roles: frozenset[str])` (frozen dataclass),
  `principal.has_any(*roles) -> bool`.
- `JwtVerifier(settings)`: created once (holds one `PyJWKClient` for RS256);
  `verify(token) -> Principal`, raising `AuthError(detail)` for anything wrong
  (expired, bad signature, `alg: none`, wrong iss/aud, missing claims). `algorithms`,
  `iss`, `aud`, `exp` are always checked.
- `mint_token(secret, *, sub, org_id, roles, issuer="orderflow", audience="orderflow",
  ttl_seconds=3600*12) -> str`: dev/test tokens (HS256).
- FastAPI: `install_auth(app, verifier)` stores the verifier on app.state;
  `CurrentPrincipal = Annotated[Principal, Depends(current_principal)]` (401 with
  `WWW-Authenticate: Bearer` when missing/invalid); `require_roles(*roles)` dependency
  factory (403 `{"detail": "Requires one of the roles: ..."}`).
"""
