"""The four-eyes rule per organisation (GET/PUT /draft-settings) and the list's search,
against real Postgres (app in-process)."""

from __future__ import annotations

from typing import Any

ALL = ("viewer", "operator", "approver", "admin")


async def test_four_eyes_keeps_the_creator_and_the_last_editor_from_approving(api: Any) -> None:
    settings = await api.client.get("/draft-settings", headers=api.headers(("viewer",)))
    assert settings.status_code == 200 and settings.json()["four_eyes"] is False
    refused = await api.client.put(
        "/draft-settings", json={"four_eyes": True}, headers=api.headers(("operator",))
    )
    assert refused.status_code == 403  # admin only
    turned = await api.client.put(
        "/draft-settings", json={"four_eyes": True}, headers=api.headers(ALL, sub="boss")
    )
    assert turned.status_code == 200, turned.text
    assert turned.json()["four_eyes"] is True and turned.json()["updated_by_user_id"] == "boss"
    again = await api.client.put(
        "/draft-settings", json={"four_eyes": True}, headers=api.headers(ALL, sub="boss")
    )
    assert again.status_code == 200 and again.json()["four_eyes"] is True  # idempotent

    draft_id = await api.ready()  # created and validated by user-1
    by_creator = await api.client.post(f"/draft-orders/{draft_id}/approve", headers=api.headers())
    assert by_creator.status_code == 403
    assert by_creator.headers["content-type"].startswith("application/problem+json")
    assert "Four-eyes rule" in by_creator.json()["detail"]

    # editor-2 edits the lines: now editor-2 may not approve, user-1 (creator) neither
    draft = (await api.client.get(f"/draft-orders/{draft_id}", headers=api.headers())).json()
    edited = await api.client.patch(
        f"/draft-orders/{draft_id}",
        json={"customer_id": "C-2"},
        headers=api.headers(sub="editor-2"),
    )
    assert edited.status_code == 200 and edited.json()["last_edited_by_user_id"] == "editor-2"
    assert draft["last_edited_by_user_id"] is None
    await api.client.post(f"/draft-orders/{draft_id}/validate", headers=api.headers())
    for user in ("editor-2", "user-1"):
        no = await api.client.post(
            f"/draft-orders/{draft_id}/approve", headers=api.headers(sub=user)
        )
        assert no.status_code == 403, user
    yes = await api.client.post(
        f"/draft-orders/{draft_id}/approve", headers=api.headers(sub="approver-3")
    )
    assert yes.status_code == 200 and yes.json()["status"] == "APPROVED"

    # another organisation's setting is its own (still off)
    other = await api.client.get(
        "/draft-settings", headers=api.headers(("viewer",), org=f"{api.org}-b")
    )
    assert other.json()["four_eyes"] is False


async def test_without_four_eyes_the_creator_may_approve(api: Any) -> None:
    draft_id = await api.ready()
    approved = await api.client.post(f"/draft-orders/{draft_id}/approve", headers=api.headers())
    assert approved.status_code == 200


async def test_search_finds_by_external_reference_or_customer_in_the_org_only(api: Any) -> None:
    hit = (await api.create(external_ref="PO-47_11%", customer_id="ACME-1"))["id"]
    other = (await api.create(external_ref="PO-9000", customer_id="Beta"))["id"]
    await api.client.post(
        "/draft-orders",
        json={"customer_id": "ACME-2", "external_ref": "PO-4711-x", "lines": []},
        headers=api.headers(org=f"{api.org}-b"),
    )

    async def found(q: str) -> set[str]:
        page = await api.client.get("/draft-orders", params={"q": q}, headers=api.headers())
        assert page.status_code == 200, page.text
        return {item["id"] for item in page.json()["items"]}

    assert await found("po-47") == {hit}
    assert await found("acme") == {hit}
    assert await found("beta") == {other}
    assert await found("_11%") == {hit}  # LIKE wildcards are plain text
    assert await found("%") == {hit}
    assert await found("PO-") == {hit, other}
    too_long = await api.client.get("/draft-orders", params={"q": "x" * 101}, headers=api.headers())
    assert too_long.status_code == 422
