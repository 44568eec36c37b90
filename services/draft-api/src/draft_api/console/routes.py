"""The console's pages under /ui: each one calls the services' public APIs as the user."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qs, quote, urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
from orderflow_shared.auth import ROLES, Principal, mint_token

from draft_api.console import session
from draft_api.console.api import Api, ApiRefusal, refusal_of
from draft_api.console.feed import sse
from draft_api.console.hostkey import HostKeyError, fetch_fingerprint
from draft_api.console.settings import dev_sign_in
from draft_api.console.state import ConsoleState
from draft_api.domain.model import DraftStatus

router = APIRouter(prefix="/ui", include_in_schema=False)

STATUSES = tuple(DraftStatus)
#: a status as a tab names it: NEEDS_REVIEW -> "Needs review"
STATUS_WORDS = {status: status.replace("_", " ").capitalize() for status in STATUSES}
EDITABLE = {"NEW", "NEEDS_REVIEW"}
VALIDATABLE = {"NEW", "NEEDS_REVIEW", "READY"}
PAGE_SIZE = 25
BLANK_LINES = 2
LINE_FIELDS = ("sku", "description", "quantity", "unit", "unit_price", "currency")
MAX_LINES = 200
HEARTBEAT_SECONDS = 15.0


class SignInRequired(Exception):
    def __init__(self, next_url: str) -> None:
        self.next_url = next_url


class Refused(Exception):
    """A page cannot be shown: its status and a sentence."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


@dataclass
class User:
    """The signed-in user of one request, with what the page needs."""

    request: Request
    token: str
    principal: Principal
    api: Api
    csrf: str
    form: dict[str, list[str]] = field(default_factory=dict)

    def has(self, *roles: str) -> bool:
        return self.principal.has_any(*roles)

    def value(self, name: str, default: str = "") -> str:
        return (self.form.get(name) or [default])[0]

    def values(self, name: str) -> list[str]:
        return self.form.get(name, [])


def _state(request: Request) -> ConsoleState:
    state: ConsoleState = request.app.state.console
    return state


def _next_url(request: Request) -> str:
    path = request.url.path
    if request.url.query:
        path += "?" + request.url.query
    return path if path.startswith("/ui") else "/ui/drafts"


async def _user(request: Request, *, form: bool = False) -> User:
    found = session.current(request)
    if found is None:
        if request.method != "GET":
            raise SignInRequired("/ui/drafts")
        raise SignInRequired(_next_url(request))
    token, principal = found
    state = _state(request)
    user = User(request, token, principal, state.api(token), session.csrf_for(token))
    if form:
        user.form = await _form(request)
        if not session.csrf_ok(request, token, user.value("csrf")):
            raise Refused(
                403,
                "This form has expired or did not come from this console; "
                "reload the page and try again.",
            )
    return user


async def _form(request: Request) -> dict[str, list[str]]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise Refused(415, "The console only accepts its own forms.")
    body = await request.body()
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise Refused(400, "The form was not sent as UTF-8 text.") from exc
    parsed = parse_qs(text, keep_blank_values=True, max_num_fields=5000)
    if any("\x00" in v for values in parsed.values() for v in values):
        raise Refused(400, "The form contains a NUL character.")
    return parsed


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    state = _state(request)
    flash = _read_flash(request)
    html = state.templates.get_template(name).render(
        request=request,
        flash=flash,
        status_words=STATUS_WORDS,
        statuses=STATUSES,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    )
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if flash is not None:
        session.clear_cookie(request, response, session.FLASH_COOKIE)
    return response


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(session.FLASH_COOKIE)
    if not raw:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("text"), str):
        return None
    return {
        "kind": "error" if value.get("kind") == "error" else "ok",
        "text": value["text"][:2000],
        "fields": [str(f)[:300] for f in value.get("fields", [])][:10],
    }


def redirect(
    request: Request, url: str, *, text: str | None = None, error: ApiRefusal | None = None
) -> RedirectResponse:
    response = RedirectResponse(url, status_code=303)
    if text is not None or error is not None:
        payload = {
            "kind": "error" if error is not None else "ok",
            "text": error.message if error is not None else text,
            "fields": error.fields if error is not None else [],
        }
        encoded = base64.urlsafe_b64encode(json.dumps(payload).encode()).decode()
        session.set_cookie(request, response, session.FLASH_COOKIE, encoded, 60)
    return response


def _page_context(user: User, **context: Any) -> dict[str, Any]:
    return {"user": user.principal, "csrf": user.csrf, "roles": user.principal.roles, **context}


def _safe_next(value: str | None, default: str = "/ui/drafts") -> str:
    if value and value.startswith("/ui") and not value.startswith("//") and "\\" not in value:
        return value
    return default


# --- sign-in ---------------------------------------------------------------------------


@router.get("")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/drafts", status_code=303)


@router.get("/sign-in")
async def sign_in_page(request: Request, next: str = "/ui/drafts") -> HTMLResponse:
    return _sign_in_form(request, _safe_next(next))


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    state = _state(request)
    form = await _form(request)

    def value(name: str) -> str:
        return (form.get(name) or [""])[0].strip()

    nonce = request.cookies.get(session.SIGN_IN_COOKIE, "")
    if not nonce or value("nonce") != nonce or not session.same_origin(request):
        raise Refused(403, "The sign-in form has expired; open it again.")
    next_url = _safe_next(value("next"))
    if dev_sign_in(state.settings) and "token" not in form:
        roles = [r for r in form.get("roles", []) if r in ROLES]
        problems = []
        if not value("user_id") or len(value("user_id")) > 128:
            problems.append("Enter a user id (at most 128 characters).")
        if not value("org_id") or len(value("org_id")) > 128:
            problems.append("Enter an organisation (at most 128 characters).")
        if not roles:
            problems.append("Pick at least one role.")
        if problems:
            return _sign_in_again(request, " ".join(problems), next_url)
        secret = state.settings.jwt_secret
        if secret is None:  # dev_sign_in is off without one; a guard for the type checker
            raise Refused(403, "The development sign-in is off.")
        token = mint_token(
            secret.get_secret_value(),
            sub=value("user_id"),
            org_id=value("org_id"),
            roles=roles,
            issuer=state.settings.jwt_issuer,
            audience=state.settings.jwt_audience,
            ttl_seconds=state.settings.console_session_hours * 3600,
        )
    else:
        token = value("token")
    verifier = request.app.state.jwt_verifier
    try:
        principal = verifier.verify(token)
    except Exception:
        return _sign_in_again(
            request,
            "That token was not accepted (expired, or not from the configured issuer).",
            next_url,
        )
    exp = int(_claims_exp(token) or 3600)
    response = RedirectResponse(next_url, status_code=303)
    session.set_cookie(request, response, session.SESSION_COOKIE, token, max(60, exp))
    session.clear_cookie(request, response, session.SIGN_IN_COOKIE)
    del principal
    return response


def _claims_exp(token: str) -> int | None:
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return int(claims["exp"]) - int(time.time())
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _sign_in_again(request: Request, message: str, next_url: str) -> HTMLResponse:
    return _sign_in_form(request, next_url, error=message, status_code=422)


def _sign_in_form(
    request: Request, next_url: str, *, error: str | None = None, status_code: int = 200
) -> HTMLResponse:
    """The sign-in page, with a new nonce in its cookie (the form must send it back)."""
    state = _state(request)
    nonce = session.new_sign_in_nonce()
    response = render(
        request,
        "sign_in.html",
        status_code=status_code,
        dev=dev_sign_in(state.settings),
        nonce=nonce,
        next=next_url,
        all_roles=sorted(ROLES),
        user=None,
        error=error,
    )
    session.set_cookie(request, response, session.SIGN_IN_COOKIE, nonce, 900)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await _user(request, form=True)
    response = RedirectResponse("/ui/sign-in", status_code=303)
    session.clear_cookie(request, response, session.SESSION_COOKIE)
    return response


# --- drafts ------------------------------------------------------------------------------


async def _counts(api: Api) -> dict[str, int]:
    async def one(status: str | None) -> int:
        page = await api.get("draft-api", "/draft-orders", params={"status": status, "limit": 1})
        return int(page["total"])

    found = await asyncio.gather(one(None), *(one(s) for s in STATUSES))
    return {"ALL": found[0], **dict(zip(STATUSES, found[1:], strict=True))}


@router.get("/drafts")
async def drafts_page(
    request: Request, status: str = "", q: str = "", page: int = 1
) -> HTMLResponse:
    user = await _user(request)
    if status and status not in STATUSES:
        raise Refused(400, f"There is no status {status[:30]!r}.")
    q = q.strip()[:100]
    page = max(1, min(page, 10_000))
    listing, counts = await asyncio.gather(
        user.api.get(
            "draft-api",
            "/draft-orders",
            params={"status": status, "q": q, "limit": PAGE_SIZE, "offset": (page - 1) * PAGE_SIZE},
        ),
        _counts(user.api),
    )
    total = int(listing["total"])
    pages = max(1, -(-total // PAGE_SIZE))
    base = {"status": status, "q": q}

    def link(**changes: Any) -> str:
        params = {k: v for k, v in {**base, **changes}.items() if v not in ("", None, 1)}
        return "/ui/drafts" + ("?" + urlencode(params) if params else "")

    return render(
        request,
        "drafts.html",
        **_page_context(
            user,
            drafts=listing["items"],
            counts=counts,
            status=status,
            q=q,
            page=page,
            pages=pages,
            total=total,
            link=link,
            keys={d["id"]: str(uuid.uuid4()) for d in listing["items"]},
            here=link(page=page),
        ),
    )


@router.get("/drafts/counts")
async def drafts_counts(request: Request) -> JSONResponse:
    user = await _user(request)
    return JSONResponse(await _counts(user.api), headers={"Cache-Control": "no-store"})


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text)
    except InvalidOperation:
        return None


def _lines_of(draft: dict[str, Any]) -> list[dict[str, Any]]:
    return list(draft.get("lines", []))


async def _audit(user: User, draft_id: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        entries = await user.api.get(
            "audit-service", "/audit-log", params={"entity_id": draft_id, "limit": 200}
        )
    except ApiRefusal as refusal:
        return [], refusal.message
    return list(entries), None


def _deliveries(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """What the audit log knows of each export (remote path, attempts, sent time)."""
    found: dict[str, dict[str, Any]] = {}
    for entry in entries:
        data = entry.get("data") or {}
        export_id = str(data.get("erp_export_id") or "")
        if not export_id:
            continue
        known = found.setdefault(export_id, {})
        for name in ("remote_path", "attempts", "sent_at", "error_code", "error_message"):
            if data.get(name) is not None:
                known[name] = data[name]
    return found


def _actions(user: User, draft: dict[str, Any], four_eyes: bool) -> dict[str, Any]:
    status = draft["status"]
    me = user.principal.user_id
    authors = {draft.get("created_by_user_id"), draft.get("last_edited_by_user_id")}
    blocked = four_eyes and me in authors
    return {
        "validate": status in VALIDATABLE and user.has("operator"),
        "approve": status == "READY" and user.has("approver") and not blocked,
        "approve_blocked": status == "READY" and user.has("approver") and blocked,
        "push": status == "APPROVED" and user.has("operator", "approver"),
        "retry": status == "ERROR" and user.has("operator", "approver"),
        "edit": status in EDITABLE and user.has("operator"),
    }


async def _detail(user: User, draft_id: str) -> dict[str, Any]:
    try:
        uuid.UUID(draft_id)
    except ValueError as exc:
        raise Refused(404, "There is no such draft order in your organisation.") from exc
    draft, settings, (entries, audit_error) = await asyncio.gather(
        user.api.get("draft-api", f"/draft-orders/{draft_id}"),
        user.api.get("draft-api", "/draft-settings"),
        _audit(user, draft_id),
    )
    deliveries = _deliveries(entries)
    exports = [{**e, **deliveries.get(str(e["erp_export_id"]), {})} for e in draft["exports"]]
    return _page_context(
        user,
        draft=draft,
        exports=exports,
        audit=entries,
        audit_error=audit_error,
        four_eyes=bool(settings["four_eyes"]),
        actions=_actions(user, draft, bool(settings["four_eyes"])),
        push_key=str(uuid.uuid4()),
        here=f"/ui/drafts/{draft_id}",
    )


@router.get("/drafts/new")
async def new_draft_page(request: Request) -> HTMLResponse:
    user = await _user(request)
    if not user.has("operator"):
        raise Refused(403, "Creating drafts needs the operator role.")
    return render(
        request,
        "draft_form.html",
        **_page_context(user, draft=None, lines=[{}] * (BLANK_LINES + 1), action="/ui/drafts/new"),
    )


def _lines_from_form(user: User) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    columns = {name: user.values(f"line_{name}") for name in LINE_FIELDS}
    count = min(max((len(v) for v in columns.values()), default=0), MAX_LINES)
    lines, echoed = [], []
    for i in range(count):
        row = {
            name: (columns[name][i] if i < len(columns[name]) else "").strip()
            for name in LINE_FIELDS
        }
        if not any(row.values()):
            continue
        echoed.append(row)
        lines.append(
            {
                "sku": row["sku"],
                "description": row["description"],
                "quantity": row["quantity"],
                "unit": row["unit"] or "EA",
                "unit_price": row["unit_price"],
                "currency": row["currency"].upper(),
            }
        )
    return lines, echoed


def _draft_form_again(
    request: Request,
    user: User,
    refusal: ApiRefusal,
    shown: dict[str, Any],
    echoed: list[dict[str, str]],
    action: str,
) -> HTMLResponse:
    """The draft form again, as it was sent, with why draft-api refused it."""
    lines = echoed + [{}] * BLANK_LINES
    context = _page_context(user, draft=shown, lines=lines, action=action, error=refusal)
    return render(request, "draft_form.html", status_code=refusal.status, **context)


@router.post("/drafts/new")
async def create_draft(request: Request) -> Response:
    user = await _user(request, form=True)
    lines, echoed = _lines_from_form(user)
    body = {
        "customer_id": user.value("customer_id").strip(),
        "external_ref": user.value("external_ref").strip() or None,
        "lines": lines,
    }
    answer = await user.api.send("draft-api", "POST", "/draft-orders", json=body)
    if answer.status >= 400:
        refusal = refusal_of("draft-api", answer.status, answer.body)
        shown = {"customer_id": body["customer_id"], "external_ref": body["external_ref"]}
        return _draft_form_again(request, user, refusal, shown, echoed, "/ui/drafts/new")
    created = answer.body
    return redirect(request, f"/ui/drafts/{created['id']}", text="Draft created.")


@router.get("/drafts/{draft_id}")
async def draft_page(request: Request, draft_id: str, part: str = "") -> HTMLResponse:
    user = await _user(request)
    context = await _detail(user, draft_id)
    if part == "live":
        return render(request, "_draft_live.html", **context)
    return render(request, "draft.html", **context)


@router.get("/drafts/{draft_id}/edit")
async def edit_draft_page(request: Request, draft_id: str) -> HTMLResponse:
    user = await _user(request)
    context = await _detail(user, draft_id)
    draft = context["draft"]
    if not context["actions"]["edit"]:
        raise Refused(
            409 if user.has("operator") else 403,
            "Only NEW or NEEDS_REVIEW drafts can be edited, by an operator.",
        )
    lines = [{k: str(line[k]) for k in LINE_FIELDS} for line in _lines_of(draft)]
    return render(
        request,
        "draft_form.html",
        **_page_context(
            user,
            draft=draft,
            lines=lines + [{}] * BLANK_LINES,
            action=f"/ui/drafts/{draft_id}/edit",
        ),
    )


@router.post("/drafts/{draft_id}/edit")
async def edit_draft(request: Request, draft_id: str) -> Response:
    user = await _user(request, form=True)
    lines, echoed = _lines_from_form(user)
    body = {
        "customer_id": user.value("customer_id").strip(),
        "external_ref": user.value("external_ref").strip(),
        "lines": lines,
    }
    headers = {}
    if user.value("version").isdigit():
        headers["If-Match"] = f'"{user.value("version")}"'
    answer = await user.api.send(
        "draft-api", "PATCH", f"/draft-orders/{quote(draft_id)}", json=body, headers=headers
    )
    if answer.status >= 400:
        refusal = refusal_of("draft-api", answer.status, answer.body)
        if answer.status == 412:
            refusal.message = (
                "Someone changed this draft while you edited it; "
                "reload it and make your change again."
            )
        shown = {
            "id": draft_id,
            "customer_id": body["customer_id"],
            "external_ref": body["external_ref"],
            "version": user.value("version"),
        }
        return _draft_form_again(
            request, user, refusal, shown, echoed, f"/ui/drafts/{draft_id}/edit"
        )
    return redirect(
        request, f"/ui/drafts/{draft_id}", text="Lines saved; the draft is NEW again: validate it."
    )


ACTION_WORDS = {
    "validate": ("validate", "Validated"),
    "approve": ("approve", "Approved"),
    "push": ("push", "Push requested"),
    "retry": ("retry-push", "Retry requested"),
}


async def _act(user: User, draft_id: str, action: str, key: str | None) -> tuple[bool, str]:
    path, done = ACTION_WORDS[action]
    headers = {}
    if action in ("push", "retry"):
        headers["Idempotency-Key"] = key or str(uuid.uuid4())
    try:
        uuid.UUID(draft_id)
    except ValueError:
        return False, "There is no such draft order in your organisation."
    try:
        answer = await user.api.call(
            "draft-api", "POST", f"/draft-orders/{draft_id}/{path}", headers=headers
        )
    except ApiRefusal as refusal:
        return False, refusal.message
    if action == "validate":
        status = answer.body["status"]
        issues = len(answer.body.get("issues", []))
        if status == "READY":
            return True, "Validated: the draft is READY."
        return True, f"Validated: {issues} issue(s) to review (NEEDS_REVIEW)."
    return True, f"{done}."


@router.post("/drafts/{draft_id}/{action}")
async def draft_action(request: Request, draft_id: str, action: str) -> Response:
    user = await _user(request, form=True)
    if action not in ACTION_WORDS:
        raise Refused(404, "There is no such action.")
    ok, message = await _act(user, draft_id, action, user.value("idempotency_key") or None)
    back = _safe_next(user.value("next"), f"/ui/drafts/{draft_id}")
    if ok:
        return redirect(request, back, text=message)
    return redirect(request, back, error=ApiRefusal(400, message))


@router.post("/bulk")
async def bulk(request: Request) -> Response:
    user = await _user(request, form=True)
    action = user.value("action")
    if action not in ("approve", "push"):
        raise Refused(400, "Pick Approve or Push for the selected drafts.")
    ids = list(dict.fromkeys(user.values("ids")))[: PAGE_SIZE * 4]
    if not ids:
        return redirect(
            request,
            _safe_next(user.value("next")),
            error=ApiRefusal(400, "Select at least one draft first."),
        )
    limit = asyncio.Semaphore(8)

    async def one(draft_id: str) -> dict[str, Any]:
        async with limit:
            ok, message = await _act(user, draft_id, action, user.value(f"key_{draft_id}") or None)
        return {"id": draft_id, "ok": ok, "message": message, "ref": user.value(f"ref_{draft_id}")}

    results = await asyncio.gather(*(one(i) for i in ids))
    return render(
        request,
        "bulk.html",
        **_page_context(
            user,
            action=action,
            results=results,
            succeeded=sum(1 for r in results if r["ok"]),
            back=_safe_next(user.value("next")),
        ),
    )


# --- live feed ---------------------------------------------------------------------------


@router.get("/events")
async def events(request: Request) -> Response:
    found = session.current(request)
    if found is None:
        return Response("Sign in first.", status_code=401, media_type="text/plain")
    _, principal = found
    state = _state(request)
    state.start_feed()
    org_id = principal.org_id

    async def stream() -> AsyncIterator[str]:
        with state.feed.subscribe(org_id) as subscription:
            yield "retry: 2000\n\n"
            yield sse("feed", {"live": state.feed.live})
            while True:
                try:
                    message = await asyncio.wait_for(subscription.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    if session.current(request) is None:
                        return  # the session expired: the page signs in again
                    yield ": keep-alive\n\n"
                    continue
                if "feed" in message:
                    yield sse("feed", {"live": message["feed"]})
                else:
                    yield sse("draft", message)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


# --- settings ----------------------------------------------------------------------------


@router.get("/settings")
async def settings_page(request: Request) -> HTMLResponse:
    user = await _user(request)
    settings = await user.api.get("draft-api", "/draft-settings")
    return render(request, "settings.html", **_page_context(user, settings=settings))


@router.post("/settings")
async def save_settings(request: Request) -> Response:
    user = await _user(request, form=True)
    four_eyes = user.value("four_eyes") == "on"
    try:
        await user.api.call("draft-api", "PUT", "/draft-settings", json={"four_eyes": four_eyes})
    except ApiRefusal as refusal:
        return redirect(request, "/ui/settings", error=refusal)
    word = "on" if four_eyes else "off"
    return redirect(request, "/ui/settings", text=f"The four-eyes rule is {word}.")


# --- ERP connections ---------------------------------------------------------------------


@router.get("/connections")
async def connections_page(request: Request) -> HTMLResponse:
    user = await _user(request)
    found = await user.api.get("export-service", "/erp-connections")
    return render(request, "connections.html", **_page_context(user, connections=found))


def _connection_form_context(
    user: User, connection: dict[str, Any] | None, kind: str, **extra: Any
) -> dict[str, Any]:
    return _page_context(user, connection=connection or {}, kind=kind, **extra)


@router.get("/connections/new")
async def new_connection_page(request: Request, type: str = "sftp_dropzone") -> HTMLResponse:
    user = await _user(request)
    kind = type if type in ("sftp_dropzone", "local_dropzone") else "sftp_dropzone"
    return render(
        request,
        "connection_form.html",
        **_connection_form_context(user, None, kind, action="/ui/connections/new"),
    )


def _connection_body(user: User, *, creating: bool) -> dict[str, Any]:
    kind = user.value("connector_type")
    body: dict[str, Any] = {
        "name": user.value("name").strip(),
        "file_format": user.value("file_format") or "csv",
        "file_name_template": user.value("file_name_template").strip()
        or "{external_ref}_{export_id}",
        "csv_formula_guard": user.value("csv_formula_guard") == "on",
    }
    deadline = user.value("delivery_deadline_seconds").strip()
    if deadline:
        body["delivery_deadline_seconds"] = int(deadline) if deadline.isdigit() else deadline
    if creating:
        body["connector_type"] = kind
        body["is_active"] = user.value("is_active") == "on"
    if kind == "sftp_dropzone":
        port = user.value("sftp_port").strip() or "22"
        sftp: dict[str, Any] = {
            "host": user.value("sftp_host").strip(),
            "port": int(port) if port.isdigit() else port,
            "username": user.value("sftp_username").strip(),
            "remote_directory": user.value("sftp_remote_directory").strip(),
            "host_key_fingerprint": user.value("sftp_host_key_fingerprint").strip(),
        }
        key = user.value("sftp_private_key").replace("\r\n", "\n").strip()
        password = user.value("sftp_password")
        if key:
            sftp["private_key"] = key + "\n"
        if password:
            sftp["password"] = password
        body["sftp"] = sftp
    else:
        body["local"] = {"directory": user.value("local_directory").strip()}
    return body


def _echo(body: dict[str, Any]) -> dict[str, Any]:
    """The form's values to show again (never a secret)."""
    shown = {k: v for k, v in body.items() if k not in ("sftp", "local")}
    if "sftp" in body:
        shown["sftp"] = {
            k: v for k, v in body["sftp"].items() if k not in ("private_key", "password")
        }
    if "local" in body:
        shown["local"] = body["local"]
    return shown


def _connection_form_again(
    request: Request,
    user: User,
    refusal: ApiRefusal,
    shown: dict[str, Any],
    kind: str,
    action: str,
) -> HTMLResponse:
    """The connection form again, as it was sent, with why export-service refused it."""
    context = _connection_form_context(user, shown, kind, action=action, error=refusal)
    return render(request, "connection_form.html", status_code=refusal.status, **context)


@router.post("/connections/new")
async def create_connection(request: Request) -> Response:
    user = await _user(request, form=True)
    body = _connection_body(user, creating=True)
    kind = (
        body["connector_type"]
        if body["connector_type"] in ("sftp_dropzone", "local_dropzone")
        else "sftp_dropzone"
    )
    answer = await user.api.send("export-service", "POST", "/erp-connections", json=body)
    if answer.status >= 400:
        refusal = refusal_of("export-service", answer.status, answer.body)
        return _connection_form_again(
            request, user, refusal, _echo(body), kind, "/ui/connections/new"
        )
    return redirect(
        request,
        f"/ui/connections/{answer.body['id']}",
        text="Connection created. Test it before you rely on it.",
    )


@router.post("/connections/host-key")
async def host_key(request: Request) -> JSONResponse:
    user = await _user(request, form=True)
    if not user.has("admin"):
        return JSONResponse({"error": "Fetching a host key needs the admin role."}, status_code=403)
    host = user.value("host").strip()
    port_text = user.value("port").strip() or "22"
    if not host or len(host) > 255 or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        return JSONResponse(
            {"error": "Enter the host and a port (1-65535) first."}, status_code=422
        )
    settings = _state(request).settings
    # as export-service's SFTP targets: private addresses in development or when allowed
    allow_private = (
        settings.console_allow_private_ssh_targets or settings.orderflow_env == "development"
    )
    try:
        fingerprint = await fetch_fingerprint(host, int(port_text), allow_private=allow_private)
    except HostKeyError as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    return JSONResponse({"fingerprint": fingerprint, "host": host, "port": int(port_text)})


def _connection_id(connection_id: str) -> str:
    try:
        return str(uuid.UUID(connection_id))
    except ValueError as exc:
        raise Refused(404, "There is no such connection in your organisation.") from exc


@router.get("/connections/{connection_id}")
async def connection_page(request: Request, connection_id: str) -> HTMLResponse:
    user = await _user(request)
    cid = _connection_id(connection_id)
    connection = await user.api.get("export-service", f"/erp-connections/{cid}")
    return render(
        request,
        "connection_form.html",
        **_connection_form_context(
            user, connection, connection["connector_type"], action=f"/ui/connections/{cid}"
        ),
    )


@router.post("/connections/{connection_id}")
async def update_connection(request: Request, connection_id: str) -> Response:
    user = await _user(request, form=True)
    cid = _connection_id(connection_id)
    body = _connection_body(user, creating=False)
    if "sftp" in body:
        body["sftp"] = {k: v for k, v in body["sftp"].items()}
    answer = await user.api.send("export-service", "PATCH", f"/erp-connections/{cid}", json=body)
    if answer.status >= 400:
        refusal = refusal_of("export-service", answer.status, answer.body)
        shown = _echo(body) | {"id": cid, "connector_type": user.value("connector_type")}
        return _connection_form_again(
            request, user, refusal, shown, user.value("connector_type"), f"/ui/connections/{cid}"
        )
    return redirect(request, f"/ui/connections/{cid}", text="Connection saved.")


@router.post("/connections/{connection_id}/{action}")
async def connection_action(request: Request, connection_id: str, action: str) -> Response:
    user = await _user(request, form=True)
    cid = _connection_id(connection_id)
    if action in ("activate", "deactivate"):
        try:
            await user.api.call("export-service", "POST", f"/erp-connections/{cid}/{action}")
        except ApiRefusal as refusal:
            return redirect(
                request, _safe_next(user.value("next"), "/ui/connections"), error=refusal
            )
        word = "active" if action == "activate" else "inactive"
        return redirect(
            request,
            _safe_next(user.value("next"), "/ui/connections"),
            text=f"The connection is {word}.",
        )
    if action == "test":
        connection = await user.api.get("export-service", f"/erp-connections/{cid}")
        report = (
            await user.api.call("export-service", "POST", f"/erp-connections/{cid}/test")
        ).body
        return render(
            request,
            "connection_test.html",
            **_page_context(user, connection=connection, report=report),
        )
    raise Refused(404, "There is no such action.")
