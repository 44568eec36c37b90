"""The console's session: the user's token in a cookie, CSRF tokens derived from it.

- The token lives in `orderflow_session`: HttpOnly, SameSite=Strict, Path=/ui, and
  Secure unless the console is served on localhost (the gateway is plain HTTP there).
- Every state-changing form carries `csrf`, an HMAC of a fixed label keyed by the
  session token: the page's scripts cannot read the cookie, another site can neither
  read the page nor send the cookie (SameSite=Strict), so only this console's own pages
  have it. POSTs whose Origin names another site are refused as well.
- The sign-in form (no session yet) carries the value of a random pre-session cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import urlsplit

from fastapi import Request, Response
from orderflow_shared.auth import AuthError, JwtVerifier, Principal

SESSION_COOKIE = "orderflow_session"
SIGN_IN_COOKIE = "orderflow_sign_in"
FLASH_COOKIE = "orderflow_flash"
COOKIE_PATH = "/ui"
LOCAL_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}


def is_local(request: Request) -> bool:
    return (request.url.hostname or "") in LOCAL_HOSTS


def set_cookie(request: Request, response: Response, name: str, value: str, age: int) -> None:
    response.set_cookie(
        name,
        value,
        max_age=age,
        path=COOKIE_PATH,
        httponly=True,
        samesite="strict",
        secure=not is_local(request),
    )


def clear_cookie(request: Request, response: Response, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="strict", secure=not is_local(request)
    )


def csrf_for(token: str) -> str:
    return hmac.new(token.encode(), b"orderflow-console-csrf", hashlib.sha256).hexdigest()


def new_sign_in_nonce() -> str:
    return secrets.token_urlsafe(24)


def same_origin(request: Request) -> bool:
    """False when the browser says the request comes from another origin."""
    origin = request.headers.get("origin")
    if not origin or origin == "null":
        return origin is None
    seen = urlsplit(origin)
    host = request.headers.get("host", "")
    return seen.netloc == host


def csrf_ok(request: Request, token: str, sent: str | None) -> bool:
    return bool(sent) and same_origin(request) and hmac.compare_digest(csrf_for(token), sent or "")


def current(request: Request) -> tuple[str, Principal] | None:
    """The session's token and who it names; None when absent, expired or invalid."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        return None
    verifier: JwtVerifier = request.app.state.jwt_verifier
    try:
        return token, verifier.verify(token)
    except AuthError:
        return None
