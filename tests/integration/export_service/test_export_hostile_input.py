"""`/erp-connections` with hostile input: NUL, lone surrogates, explicit nulls, loose
JWTs. Each is a 4xx naming what is wrong, and nothing is written."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from export_service.bootstrap import make_app

from .conftest import make_settings, rows


@pytest.fixture
async def client(export_env: dict[str, str], tmp_path: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = make_app(make_settings(export_env, export_storage_dir=str(tmp_path / "storage")))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://export") as c:
            yield c


def body(dropzone: Any, **changes: Any) -> dict[str, Any]:
    sftp = {
        "host": dropzone.host,
        "port": dropzone.port,
        "username": dropzone.username,
        "remote_directory": "/inbox",
        "host_key_fingerprint": dropzone.fingerprint,
        "private_key": dropzone.private_key,
        "password": None,
    }
    sftp.update(changes.pop("sftp", {}))
    return {
        "name": "ERP",
        "connector_type": "sftp_dropzone",
        "is_active": False,
        "file_format": "csv",
        "file_name_template": "{external_ref}_{export_id}",
        "sftp": sftp,
        **changes,
    }


async def connections_of(db: Any, org: str) -> int:
    found = await rows(
        db, "SELECT count(*) AS n FROM export.erp_connection WHERE org_id = :o", o=org
    )
    return int(found[0]["n"])


@pytest.mark.parametrize(
    ("changes", "loc"),
    [
        ({"name": "ERP\x00"}, ["body", "name"]),
        ({"file_name_template": "{external_ref}\x00_{export_id}"}, ["body", "file_name_template"]),
        ({"sftp": {"host": "127.0.0.1\x00evil"}}, ["body", "sftp", "host"]),
        ({"sftp": {"username": "u\x00"}}, ["body", "sftp", "username"]),
        ({"sftp": {"remote_directory": "/inbox\x00"}}, ["body", "sftp", "remote_directory"]),
        ({"sftp": {"password": "pw\ud800"}}, ["body", "sftp", "password"]),
    ],
    ids=["name", "file_name_template", "host", "username", "remote_directory", "password"],
)
async def test_nul_and_lone_surrogates_are_422_naming_the_field(
    infra: Any, dropzone: Any, db: Any, client: httpx.AsyncClient, changes: Any, loc: list[Any]
) -> None:
    org = f"org-{uuid.uuid4().hex[:10]}"
    raw = json.dumps(body(dropzone, **changes)).encode()  # ensure_ascii: \u0000, \ud800
    response = await client.post(
        "/erp-connections",
        content=raw,
        headers={
            **infra.auth_headers(roles=["admin"], org=org),
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    assert "PRIVATE KEY" not in response.text
    assert await connections_of(db, org) == 0


NULLS = [
    ({"sftp": {"host": None}}, ["body", "sftp", "host"]),
    ({"sftp": {"port": None}}, ["body", "sftp", "port"]),
    ({"sftp": {"username": None}}, ["body", "sftp", "username"]),
    ({"sftp": {"remote_directory": None}}, ["body", "sftp", "remote_directory"]),
    ({"sftp": {"host_key_fingerprint": None}}, ["body", "sftp", "host_key_fingerprint"]),
    ({"sftp": None}, ["body", "sftp"]),
    ({"local": None}, ["body", "local"]),
    ({"local": {"directory": None}}, ["body", "local", "directory"]),
    ({"name": None}, ["body", "name"]),
    ({"file_format": None}, ["body", "file_format"]),
    ({"file_name_template": None}, ["body", "file_name_template"]),
    ({"is_active": None}, ["body", "is_active"]),
]


async def test_explicit_nulls_in_a_patch_are_422_and_change_nothing(
    infra: Any, dropzone: Any, client: httpx.AsyncClient
) -> None:
    org = f"org-{uuid.uuid4().hex[:10]}"
    admin = infra.auth_headers(roles=["admin"], org=org)
    created = await client.post("/erp-connections", json=body(dropzone), headers=admin)
    assert created.status_code == 201, created.text
    url = f"/erp-connections/{created.json()['id']}"
    for patch, loc in NULLS:
        response = await client.patch(url, json=patch, headers=admin)
        assert response.status_code == 422, (patch, response.text)
        assert [e["loc"] for e in response.json()["errors"]] == [loc], patch
    after = (await client.get(url, headers=admin)).json()
    for field in ("name", "file_format", "file_name_template", "is_active", "sftp", "updated_at"):
        assert after[field] == created.json()[field], field
    # null for a secret keeps it (as it always did)
    kept = await client.patch(url, json={"sftp": {"password": None}}, headers=admin)
    assert kept.status_code == 200, kept.text
    assert kept.json()["sftp"]["has_private_key"] is True


async def test_a_nul_in_a_path_parameter_is_422(infra: Any, client: httpx.AsyncClient) -> None:
    response = await client.get("/erp-connections/%00", headers=infra.auth_headers(roles=["admin"]))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "connection_id"]


async def test_loose_jwt_claims_are_401_invalid_token(
    infra: Any, client: httpx.AsyncClient
) -> None:
    now = int(time.time())
    base = {
        "sub": "admin-1",
        "org_id": "org-x",
        "roles": ["admin"],
        "iss": "orderflow",
        "aud": "orderflow",
        "iat": now,
        "exp": now + 600,
    }
    for name, change in {
        "roles a string": {"roles": "admin"},
        "exp a string": {"exp": str(now + 600)},
        "exp 10**30": {"exp": 10**30},
        "NUL in org_id": {"org_id": "org-x\x00"},
        "no iat": {"iat": None},
        "200 KB": {"padding": "p" * 200_000},
    }.items():
        claims = {k: v for k, v in {**base, **change}.items() if v is not None}
        token = jwt.encode(claims, infra.jwt_secret, algorithm="HS256")
        response = await client.get(
            "/erp-connections", headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 401, (name, response.text[:200])
        assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
