"""ETag, If-Match and If-Unmodified-Since on drafts (RFC 9110), against real Postgres."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import httpx
from draft_api.bootstrap import make_app


async def _etag(api: Any, draft_id: str) -> str:
    got = await api.client.get(f"/draft-orders/{draft_id}", headers=api.headers())
    assert got.status_code == 200
    assert got.headers["etag"] == f'"{got.json()["version"]}"'
    return str(got.headers["etag"])


async def test_every_draft_response_carries_its_etag_and_last_modified(api: Any) -> None:
    created = await api.client.post(
        "/draft-orders", json={"customer_id": "C-1", "lines": []}, headers=api.headers()
    )
    assert created.status_code == 201
    assert created.headers["etag"] == '"0"'
    assert created.headers["location"] == f"/draft-orders/{created.json()['id']}"
    modified = parsedate_to_datetime(created.headers["last-modified"])
    assert abs((modified - datetime.now(UTC)).total_seconds()) < 5
    head = await api.client.head(created.headers["location"], headers=api.headers())
    assert (head.status_code, head.content, head.headers["etag"]) == (200, b"", '"0"')


async def test_a_patch_with_a_stale_if_match_is_412_and_changes_nothing(api: Any) -> None:
    draft_id = (await api.create())["id"]
    stale = await _etag(api, draft_id)
    edited = await api.client.patch(
        f"/draft-orders/{draft_id}",
        json={"customer_id": "C-2"},
        headers={**api.headers(), "If-Match": stale},
    )
    assert edited.status_code == 200, edited.text
    assert edited.headers["etag"] != stale

    for if_match in (stale, '"bogus"', f"W/{edited.headers['etag']}"):
        refused = await api.client.patch(
            f"/draft-orders/{draft_id}",
            json={"customer_id": "C-3"},
            headers={**api.headers(), "If-Match": if_match},
        )
        assert refused.status_code == 412, (if_match, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["title"] == "Precondition Failed"
    assert api.db.scalar(
        "SELECT customer_id FROM draft.draft_order WHERE id = %s", (draft_id,)
    ) == ("C-2")
    star = await api.client.patch(
        f"/draft-orders/{draft_id}",
        json={"customer_id": "C-4"},
        headers={**api.headers(), "If-Match": "*"},
    )
    assert star.status_code == 200


async def test_state_changes_take_if_match_and_a_stale_one_is_412(api: Any) -> None:
    api.connect_erp()
    draft_id = (await api.create())["id"]
    first = await _etag(api, draft_id)
    for step, headers in (("validate", api.headers()), ("approve", api.headers(sub="boss"))):
        refused = await api.client.post(
            f"/draft-orders/{draft_id}/{step}", headers={**headers, "If-Match": '"99"'}
        )
        assert refused.status_code == 412, refused.text
        current = await _etag(api, draft_id)
        done = await api.client.post(
            f"/draft-orders/{draft_id}/{step}", headers={**headers, "If-Match": current}
        )
        assert done.status_code == 200, done.text
        assert done.headers["etag"] != current
    refused = await api.client.post(
        f"/draft-orders/{draft_id}/push", headers={**api.headers(), "If-Match": first}
    )
    assert refused.status_code == 412
    assert api.attempts(draft_id) == 0
    pushed = await api.client.post(
        f"/draft-orders/{draft_id}/push",
        headers={**api.headers(), "If-Match": await _etag(api, draft_id)},
    )
    assert pushed.status_code == 202, pushed.text
    assert api.attempts(draft_id) == 1


async def test_if_unmodified_since_is_412_once_the_draft_changed_after_it(api: Any) -> None:
    draft_id = (await api.create())["id"]
    got = await api.client.get(f"/draft-orders/{draft_id}", headers=api.headers())
    modified = parsedate_to_datetime(got.headers["last-modified"])
    before = format_datetime(modified.replace(year=modified.year - 1), usegmt=True)
    refused = await api.client.post(
        f"/draft-orders/{draft_id}/validate",
        headers={**api.headers(), "If-Unmodified-Since": before},
    )
    assert refused.status_code == 412
    allowed = await api.client.post(
        f"/draft-orders/{draft_id}/validate",
        headers={**api.headers(), "If-Unmodified-Since": got.headers["last-modified"]},
    )
    assert allowed.status_code == 200, allowed.text


async def test_of_two_edits_with_the_same_etag_exactly_one_wins(api: Any) -> None:
    """The check and the update are one step (under the row lock): never two winners."""
    for _ in range(5):
        draft_id = (await api.create())["id"]
        etag = await _etag(api, draft_id)
        answers = await asyncio.gather(
            *(
                api.client.patch(
                    f"/draft-orders/{draft_id}",
                    json={"customer_id": f"C-{n}"},
                    headers={**api.headers(), "If-Match": etag},
                )
                for n in range(6)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [200, 412, 412, 412, 412, 412], codes


async def test_require_preconditions_makes_if_match_mandatory(
    infra: Any, db: Any, make_settings: Any
) -> None:
    app = make_app(make_settings(db, require_preconditions=True))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://draft-api") as client:
            headers = infra.auth_headers(roles=["operator"], org="org-428")
            created = await client.post(
                "/draft-orders", json={"customer_id": "C-1"}, headers=headers
            )
            assert created.status_code == 201
            path = created.headers["location"]
            missing = await client.patch(path, json={"customer_id": "C-2"}, headers=headers)
            assert missing.status_code == 428, missing.text
            given = await client.patch(
                path,
                json={"customer_id": "C-2"},
                headers={**headers, "If-Match": created.headers["etag"]},
            )
            assert given.status_code == 200, given.text
