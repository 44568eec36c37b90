"""JWT verification: every way a token can be wrong is refused with a clear reason."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from orderflow_shared.auth import (
    AuthError,
    CurrentPrincipal,
    JwtVerifier,
    Principal,
    install_auth,
    mint_token,
    require_roles,
)
from orderflow_shared.settings import ServiceSettings
from orderflow_shared.web import install_error_handlers
from pydantic import SecretStr

SECRET = "unit-test-secret-0123456789abcdef0123456789"


def hs_settings(**overrides: Any) -> ServiceSettings:
    return ServiceSettings(orderflow_env="test", jwt_secret=SecretStr(SECRET), **overrides)


def claims(**overrides: Any) -> dict[str, Any]:
    """Good claims with `overrides`; an override that is a function of the current Unix
    time is called with it (so a parametrized case is timed when it runs, not when the
    module is collected: a slow run must not expire every token)."""
    now = int(time.time())
    overrides = {k: v(now) if callable(v) else v for k, v in overrides.items()}
    base: dict[str, Any] = {
        "sub": "user-1",
        "org_id": "org-a",
        "roles": ["viewer", "operator"],
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def test_a_minted_token_verifies_to_its_principal() -> None:
    token = mint_token(SECRET, sub="user-1", org_id="demo", roles=["viewer", "admin"])
    principal = JwtVerifier(hs_settings()).verify(token)
    assert principal == Principal("user-1", "demo", frozenset({"viewer", "admin"}))
    assert principal.has_any("admin", "approver")
    assert not principal.has_any("approver")


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [
        ({"exp": lambda now: now - 3600}, "Token expired"),
        ({"aud": "someone-else"}, "Token audience not accepted"),
        ({"iss": "evil"}, "Token issuer not accepted"),
        ({"sub": None}, "Token lacks the sub claim"),
        ({"org_id": None}, "Token lacks the org_id claim"),
        ({"roles": None}, "Token lacks the roles claim"),
        ({"roles": [1, 2]}, "Token claim roles must be a list of strings"),
        ({"org_id": ""}, "Token lacks the org_id claim"),
        ({"exp": None}, "Token lacks the exp claim"),
        ({"aud": None}, "Token lacks the aud claim"),
    ],
)
def test_a_token_with_bad_claims_is_refused(overrides: dict[str, Any], detail: str) -> None:
    token = jwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    with pytest.raises(AuthError) as caught:
        JwtVerifier(hs_settings()).verify(token)
    assert caught.value.detail == detail


STRICT_CLAIMS = [
    ("roles as a plain string", {"roles": "admin"}, "Token claim roles must be a list"),
    ("roles as an object", {"roles": {"admin": True}}, "Token claim roles must be a list"),
    ("exp as a string", {"exp": lambda now: str(now + 600)}, "Token claim exp must be a number"),
    ("iat as a string", {"iat": lambda now: str(now)}, "Token claim iat must be a number"),
    ("nbf as a string", {"nbf": lambda now: str(now - 5)}, "Token claim nbf must be a number"),
    ("exp as a boolean", {"exp": True}, "Token expired"),
    ("no iat", {"iat": None}, "Token lacks the iat claim"),
    ("exp of 10**30", {"exp": 10**30}, "Token lifetime (exp - iat) exceeds 86400 seconds"),
    ("a two-day lifetime", {"exp": lambda now: now + 2 * 86400}, "Token lifetime (exp - iat)"),
    ("NUL in org_id", {"org_id": "demo\u0000evil"}, "Token claim org_id must be a string"),
    ("newline in org_id", {"org_id": "demo\nx"}, "Token claim org_id must be a string"),
    ("control char in sub", {"sub": "user\x1b[31m"}, "Token claim sub must be a string"),
    ("org_id a number", {"org_id": 42}, "Token claim org_id must be a string"),
    ("org_id too long", {"org_id": "o" * 256}, "Token claim org_id must be a string"),
    ("sub a list", {"sub": ["user-1"]}, "Invalid token"),
]


@pytest.mark.parametrize(
    ("overrides", "detail"),
    [(c, d) for _, c, d in STRICT_CLAIMS],
    ids=[name for name, _, _ in STRICT_CLAIMS],
)
def test_loosely_typed_or_unbounded_claims_are_refused(
    overrides: dict[str, Any], detail: str
) -> None:
    token = jwt.encode(claims(**overrides), SECRET, algorithm="HS256")
    with pytest.raises(AuthError) as caught:
        JwtVerifier(hs_settings()).verify(token)
    assert caught.value.detail.startswith(detail), caught.value.detail


def test_a_lifetime_up_to_the_setting_is_accepted_and_the_setting_is_honoured() -> None:
    day = claims(exp=lambda now: now + 86400)
    assert JwtVerifier(hs_settings()).verify(jwt.encode(day, SECRET, algorithm="HS256"))
    with pytest.raises(AuthError, match="exceeds 3600 seconds"):
        JwtVerifier(hs_settings(jwt_max_lifetime_seconds=3600)).verify(
            jwt.encode(day, SECRET, algorithm="HS256")
        )


def test_numeric_dates_may_be_floats_and_nbf_in_the_past_is_fine() -> None:
    dates = {
        "iat": lambda now: now + 0.5,
        "exp": lambda now: now + 600.25,
        "nbf": lambda now: now - 1,
    }
    token = jwt.encode(claims(**dates), SECRET, "HS256")
    assert JwtVerifier(hs_settings()).verify(token).org_id == "org-a"


def test_an_oversized_token_is_refused_before_it_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def must_not_run(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the oversized token was decoded")

    monkeypatch.setattr(jwt, "get_unverified_header", must_not_run)
    monkeypatch.setattr(jwt, "decode", must_not_run)
    huge = jwt.encode(claims(padding="x" * 200_000), SECRET, algorithm="HS256")
    with pytest.raises(AuthError) as caught:
        JwtVerifier(hs_settings()).verify(huge)
    assert caught.value.detail == "Token longer than 8192 bytes"


def test_the_dev_token_minters_carry_iat_and_pass_the_strict_checks() -> None:
    from orderflow_devstack.tokens import mint

    verifier = JwtVerifier(hs_settings())
    for token in (mint(SECRET), mint_token(SECRET, sub="u", org_id="demo", roles=["admin"])):
        assert "iat" in jwt.decode(token, options={"verify_signature": False})
        assert verifier.verify(token).org_id == "demo"


class CountingDecode:
    """`jwt.decode` that counts its calls (and can be told to refuse, as PyJWT would)."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0
        self.refuse: Exception | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.refuse is not None:
            raise self.refuse
        return self.real(*args, **kwargs)


@pytest.fixture
def counting_decode(monkeypatch: pytest.MonkeyPatch) -> CountingDecode:
    counter = CountingDecode(jwt.decode)
    monkeypatch.setattr(jwt, "decode", counter)
    return counter


def test_a_verified_token_is_remembered_until_it_expires_plus_the_leeway(
    monkeypatch: pytest.MonkeyPatch, counting_decode: CountingDecode
) -> None:
    verifier = JwtVerifier(hs_settings(), leeway_seconds=30)
    good = claims(exp=lambda t: t + 60)
    token = jwt.encode(good, SECRET, algorithm="HS256")
    principal = verifier.verify(token)
    assert verifier.verify(token) == principal
    assert counting_decode.calls == 1
    # just before exp + leeway: still the remembered principal
    monkeypatch.setattr(time, "time", lambda: good["exp"] + 29.5)
    assert verifier.verify(token) == principal
    assert counting_decode.calls == 1
    # at exp + leeway it is decoded again (and PyJWT, on that clock, says expired)
    monkeypatch.setattr(time, "time", lambda: good["exp"] + 30)
    counting_decode.refuse = jwt.ExpiredSignatureError("Signature has expired")
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    assert caught.value.detail == "Token expired"
    assert counting_decode.calls == 2


def test_a_refused_token_is_never_remembered(counting_decode: CountingDecode) -> None:
    verifier = JwtVerifier(hs_settings())
    forged = jwt.encode(claims(), "another-secret-0123456789abcdef0123456789", "HS256")
    no_roles = jwt.encode(claims(roles=None), SECRET, "HS256")
    for token, detail in ((forged, "Token signature invalid"), (no_roles, "roles claim")):
        for _ in range(2):
            with pytest.raises(AuthError, match=detail):
                verifier.verify(token)
    assert counting_decode.calls == 4


def test_the_remembered_tokens_are_bounded_least_recently_used_first(
    counting_decode: CountingDecode,
) -> None:
    verifier = JwtVerifier(hs_settings(), cache_size=2)
    first, second, third = (jwt.encode(claims(sub=f"user-{n}"), SECRET, "HS256") for n in (1, 2, 3))
    verifier.verify(first)
    verifier.verify(second)
    verifier.verify(first)  # used again: `second` is now the least recent
    verifier.verify(third)  # evicts `second`
    assert counting_decode.calls == 3
    assert verifier.verify(first).user_id == "user-1"
    assert verifier.verify(third).user_id == "user-3"
    assert counting_decode.calls == 3
    assert verifier.verify(second).user_id == "user-2"
    assert counting_decode.calls == 4


def test_a_token_signed_with_another_secret_is_refused() -> None:
    token = jwt.encode(claims(), "another-secret-0123456789abcdef0123456789", algorithm="HS256")
    with pytest.raises(AuthError, match="signature"):
        JwtVerifier(hs_settings()).verify(token)


def test_an_unsigned_alg_none_token_is_refused() -> None:
    token = jwt.encode(claims(), "", algorithm="none")
    with pytest.raises(AuthError, match="algorithm"):
        JwtVerifier(hs_settings()).verify(token)


def test_garbage_is_a_malformed_token() -> None:
    with pytest.raises(AuthError, match="Malformed"):
        JwtVerifier(hs_settings()).verify("not-a-jwt")


# --- RS256 with a JWKS served over HTTP -------------------------------------------------


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def jwks_url(rsa_key: rsa.RSAPrivateKey) -> Iterator[str]:
    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update({"kid": "key-1", "use": "sig", "alg": "RS256"})
    body = json.dumps({"keys": [jwk]}).encode()
    hits = {"count": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits["count"] += 1
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    finally:
        server.shutdown()
        server.server_close()


def rs_settings(jwks_url: str) -> ServiceSettings:
    return ServiceSettings(orderflow_env="test", jwt_algorithm="RS256", jwt_jwks_url=jwks_url)


def test_an_rs256_token_verifies_against_the_jwks(
    rsa_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    verifier = JwtVerifier(rs_settings(jwks_url))
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "key-1"})
    assert verifier.verify(token).org_id == "org-a"
    assert verifier.verify(token).user_id == "user-1"


def test_an_rs256_token_with_an_unknown_kid_is_refused(
    rsa_key: rsa.RSAPrivateKey, jwks_url: str
) -> None:
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "rotated-away"})
    with pytest.raises(AuthError, match="Unknown signing key"):
        JwtVerifier(rs_settings(jwks_url)).verify(token)


def test_an_rs256_token_signed_by_another_key_is_refused(jwks_url: str) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256", headers={"kid": "key-1"})
    with pytest.raises(AuthError, match="signature"):
        JwtVerifier(rs_settings(jwks_url)).verify(token)


def test_an_hs256_token_is_refused_by_an_rs256_verifier(jwks_url: str) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"kid": "key-1"})
    with pytest.raises(AuthError, match="algorithm"):
        JwtVerifier(rs_settings(jwks_url)).verify(token)


def test_an_rs256_verifier_needs_a_jwks_url() -> None:
    with pytest.raises(ValueError, match="JWKS"):
        JwtVerifier(ServiceSettings(orderflow_env="test", jwt_algorithm="RS256"))


def test_hs256_needs_a_signing_key_of_its_own_in_every_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    for env in ("development", "test", "production"):
        with pytest.raises(ValueError, match="JWT_SECRET is required"):
            JwtVerifier(ServiceSettings(orderflow_env=env))
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ServiceSettings(jwt_secret="short-secret")
    rs256 = ServiceSettings(jwt_algorithm="RS256", jwt_jwks_url="https://idp/jwks")
    assert rs256.jwt_secret is None
    JwtVerifier(rs256)  # no signing key: the identity provider's keys verify


# --- FastAPI dependencies ------------------------------------------------------------


@pytest.fixture
def client() -> TestClient:
    app = FastAPI()
    install_error_handlers(app)
    install_auth(app, JwtVerifier(hs_settings()))

    @app.get("/me")
    async def me(principal: CurrentPrincipal) -> dict[str, Any]:
        return {"sub": principal.user_id, "org": principal.org_id}

    @app.post("/approve", dependencies=[Depends(require_roles("approver"))])
    async def approve() -> dict[str, str]:
        return {"status": "APPROVED"}

    return TestClient(app)


def bearer(roles: list[str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(SECRET, sub='u', org_id='o', roles=roles)}"}


def test_a_request_without_a_token_gets_401_with_a_bearer_challenge(client: TestClient) -> None:
    response = client.get("/me")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["detail"] == "Not authenticated"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code


def test_a_request_with_a_bad_token_gets_401_with_the_reason(client: TestClient) -> None:
    response = client.get("/me", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Malformed token"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="invalid_token", error_description="Malformed token"'
    )


def test_a_token_with_roles_as_a_string_gets_401_invalid_token(client: TestClient) -> None:
    token = jwt.encode(claims(roles="admin"), SECRET, algorithm="HS256")
    response = client.get("/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert response.json()["detail"] == "Token claim roles must be a list of strings"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')


def test_a_valid_token_reaches_the_route(client: TestClient) -> None:
    response = client.get("/me", headers=bearer(["viewer"]))
    assert response.status_code == 200
    assert response.json() == {"sub": "u", "org": "o"}


def test_a_missing_role_gets_403(client: TestClient) -> None:
    response = client.post("/approve", headers=bearer(["viewer", "operator"]))
    assert response.status_code == 403
    assert response.json()["detail"] == "Requires one of the roles: approver"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == response.status_code
    assert client.post("/approve", headers=bearer(["approver"])).status_code == 200


def test_require_roles_refuses_an_unknown_role() -> None:
    with pytest.raises(ValueError, match="unknown role"):
        require_roles("superuser")
