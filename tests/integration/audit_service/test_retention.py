"""Retention and signed checkpoints against the real Postgres and Kafka (spec 026).

- retention archives exactly the entries past the org's policy, then prunes them; the
  archive files reproduce the pruned rows and their SHA-256 is recorded;
- the chain still verifies after pruning (its first kept entry links to a signed anchor);
- truncating the newest entries, deleting a middle one, editing one and rewriting the
  chain are each caught (`verify`, `audit-verify` against the topic, GET /audit-log/verify);
- a retention SIGKILLed half-way loses nothing, and the next run prunes nothing twice;
- the scheduled loop prunes and publishes on its own.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from audit_service.adapters import checkpoint_topic
from audit_service.adapters.signing import generate_private_key
from audit_service.bootstrap import build, close
from audit_service.domain.entry import AuditEntry, link_hash
from audit_service.domain.retention import read_archive
from audit_service.entrypoints.retention import run_retention_forever
from audit_service.service_layer.ingest import ingest
from orderflow_shared.auth import mint_token
from orderflow_shared.messaging.kafka import client_options

from .conftest import AuditDb, AuditProcess, wait_for

KEY = generate_private_key()
NOW = datetime.now(UTC)
OLD_MARCH = datetime(NOW.year - 2, 3, 10, 8, 0, 0, 123456, tzinfo=UTC)
OLD_APRIL = datetime(NOW.year - 2, 4, 2, 9, 30, tzinfo=UTC)
YOUNG = NOW - timedelta(days=5)
COLUMNS = (
    "id, event_id, org_id, action, entity_type, entity_id, actor_user_id, occurred_at,"
    " created_at, recorded_at, source_topic, producer, data, prev_hash, hash"
)


@pytest.fixture(scope="module")
def archive_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("audit-archive")


def _env(audit_db: AuditDb, archive_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "ORDERFLOW_ENV": "test",
        "DATABASE_URL": audit_db.runtime_url,
        "MIGRATION_DATABASE_URL": audit_db.owner_url,
        **audit_db.servers.service_kafka_env,
        "JWT_SECRET": audit_db.servers.jwt_secret,
        "AUDIT_SIGNING_KEY": KEY,
        "AUDIT_ARCHIVE_DIR": str(archive_dir),
        "DB_POOL_SIZE": "2",
        **extra,
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "audit_service", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def _seed(audit_db: AuditDb, org: str, times: list[datetime]) -> list[int]:
    """Append entries that happened at `times` (in this order) through the ingest use case."""

    async def run() -> None:
        container = build(audit_db.settings())
        try:
            entries = [
                AuditEntry(
                    event_id=uuid.uuid4(),
                    org_id=org,
                    action="DRAFT_CREATED",
                    entity_type="draft_order",
                    entity_id=f"d-{n}",
                    actor_user_id="u-1",
                    occurred_at=moment,
                    source_topic="draft.created",
                    data={"n": n, "note": "Grüße", "lines": [{"qty": "1.5"}]},
                    producer="draft-api",
                )
                for n, moment in enumerate(times)
            ]
            for entry in entries:  # one batch each: ids follow the order given
                await ingest(container.appender, [entry])
        finally:
            await close(container)

    asyncio.run(run())
    return _ids(audit_db, org)


def _ids(audit_db: AuditDb, org: str) -> list[int]:
    rows = audit_db.rows("SELECT id FROM audit.audit_log WHERE org_id = %s ORDER BY id", [org])
    return [r[0] for r in rows]


def _log_rows(audit_db: AuditDb, org: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in audit_db.rows(
            f"SELECT {COLUMNS} FROM audit.audit_log WHERE org_id = %s ORDER BY id",
            [org],
        )
    ]


def _as_tuple(row: Any) -> tuple[Any, ...]:
    entry = row.entry
    return (
        row.id,
        entry.event_id,
        entry.org_id,
        entry.action,
        entry.entity_type,
        entry.entity_id,
        entry.actor_user_id,
        entry.occurred_at,
        row.created_at,
        row.recorded_at,
        entry.source_topic,
        entry.producer,
        dict(entry.data),
        row.prev_hash,
        row.hash,
    )


def _archives(audit_db: AuditDb, org: str) -> list[tuple[Any, ...]]:
    return [
        tuple(r)
        for r in audit_db.rows(
            "SELECT period, first_seq, last_seq, entry_count, path, sha256, pruned_at IS NOT NULL"
            " FROM audit.archives WHERE org_id = %s ORDER BY first_id",
            [org],
        )
    ]


def _superuser(audit_db: AuditDb, sql: str, params: Any = None) -> None:
    """As a superuser with the append-only trigger off: what an attacker could do."""
    with psycopg.connect(audit_db.superuser, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute(sql, params)


@pytest.fixture(scope="module")
def http(audit_db: AuditDb, archive_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    process = AuditProcess(
        audit_db,
        f"audit-service-it-{uuid.uuid4().hex[:10]}",
        tmp_path_factory.mktemp("audit-http") / "serve.log",
    )
    process.env.update({"AUDIT_SIGNING_KEY": KEY, "AUDIT_ARCHIVE_DIR": str(archive_dir)})
    process.start()
    yield process
    process.stop()


def _verify_http(http: AuditProcess, org: str) -> dict[str, Any]:
    response = http.get("/audit-log/verify", org=org, roles=("admin",))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_retention_prunes_exactly_the_old_entries_and_the_archive_reproduces_them(
    audit_db, archive_dir, http
):
    org = f"org-ret-{uuid.uuid4().hex[:8]}"
    # March x3 and April x2 are past 365 days; then young ones, an old late arrival
    # (kept: it waits for the younger entry before it), and a young head
    times = [OLD_MARCH] * 3 + [OLD_APRIL] * 2 + [YOUNG, OLD_MARCH, YOUNG]
    ids = _seed(audit_db, org, times)
    before = _log_rows(audit_db, org)
    env = _env(audit_db, archive_dir)

    result = _cli(env, "retention", "--org", org)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = _lines(result)
    assert summary[0]["org_id"] == org and summary[0]["pruned"] == 5
    assert summary[0]["archives"] == 2 and summary[0]["policy"] == "default"
    assert _ids(audit_db, org) == ids[5:]

    archives = _archives(audit_db, org)
    march = f"{OLD_MARCH:%Y-%m}"
    april = f"{OLD_APRIL:%Y-%m}"
    assert [(a[0], a[1], a[2], a[3], a[6]) for a in archives] == [
        (march, 1, 3, 3, True),
        (april, 4, 5, 2, True),
    ]
    archived = []
    for _period, _first, _last, _count, path, sha256, _pruned in archives:
        content = (archive_dir / path).read_bytes()
        assert hashlib.sha256(content).hexdigest() == sha256
        archived += read_archive(content)
    assert [_as_tuple(r) for r in archived] == before[:5]
    assert [r.seq for r in archived] == [1, 2, 3, 4, 5]
    # the archived rows are still a chain, and the first kept entry links to its end
    assert all(link_hash(r.prev_hash, r.entry) == r.hash for r in archived)
    assert before[5][13] == archived[-1].hash

    verified = _cli(env, "verify", "--org", org)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    line = _lines(verified)[0]
    assert (line["ok"], line["entries_checked"], line["first_seq"], line["last_seq"]) == (
        True,
        3,
        6,
        8,
    )
    assert line["checkpoint_seq"] == 8
    against_topic = _cli(env, "audit-verify", "--org", org)
    assert against_topic.returncode == 0, against_topic.stdout + against_topic.stderr
    assert _verify_http(http, org) == {"ok": True, "entries_checked": 3, "first_broken": None}

    again = _cli(env, "retention", "--org", org)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _lines(again)[0]["pruned"] == 0
    assert _ids(audit_db, org) == ids[5:]
    assert _archives(audit_db, org) == archives


def test_an_org_sets_its_own_retention_and_only_an_admin_may(audit_db, archive_dir, http):
    org = f"org-pol-{uuid.uuid4().hex[:8]}"
    ids = _seed(audit_db, org, [NOW - timedelta(days=60)] * 2 + [YOUNG])
    url = f"{http.url}/audit-log/retention"

    def call(method: str, roles: tuple[str, ...], body: Any = None, **kw: Any) -> httpx.Response:
        token = mint_token(http.env["JWT_SECRET"], sub="admin-1", org_id=org, roles=roles)
        return httpx.request(
            method, url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10, **kw
        )

    got = call("GET", ("admin",))
    assert got.status_code == 200
    assert got.json()["retention_days"] == 365 and got.json()["source"] == "default"
    assert call("GET", ("viewer",)).status_code == 403
    assert call("PUT", ("operator",), {"retention_days": 30}).status_code == 403
    for bad in ({"retention_days": 0}, {"retention_days": "30"}, {"days": 30}, {}):
        assert call("PUT", ("admin",), bad).status_code == 422, bad
    wrong_type = call("PUT", ("admin",), None, content=b"retention_days=30")
    assert wrong_type.status_code == 415
    put = call("PUT", ("admin",), {"retention_days": 30})
    assert put.status_code == 200, put.text
    assert (put.json()["org_id"], put.json()["retention_days"], put.json()["source"]) == (
        org,
        30,
        "org",
    )
    # another org keeps the default
    other = f"org-other-{uuid.uuid4().hex[:8]}"
    token = mint_token(http.env["JWT_SECRET"], sub="a", org_id=other, roles=("admin",))
    assert httpx.get(url, headers={"Authorization": f"Bearer {token}"}).json()["source"] == (
        "default"
    )

    result = _cli(_env(audit_db, archive_dir), "retention", "--org", org)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _lines(result)[0]["retention_days"] == 30
    assert _ids(audit_db, org) == ids[2:]
    assert _verify_http(http, org)["ok"] is True


def _sealed_org(audit_db: AuditDb, archive_dir: Path, n: int = 6) -> tuple[str, list[int]]:
    org = f"org-tamper-{uuid.uuid4().hex[:8]}"
    ids = _seed(audit_db, org, [OLD_MARCH] * 2 + [YOUNG] * (n - 2))
    result = _cli(_env(audit_db, archive_dir), "retention", "--org", org)  # prunes 2, signs head
    assert result.returncode == 0, result.stdout + result.stderr
    assert _ids(audit_db, org) == ids[2:]
    return org, ids[2:]


def _truncate(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    _superuser(audit_db, "DELETE FROM audit.audit_log WHERE id = ANY(%s)", [ids[-2:]])


def _delete_middle(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    _superuser(audit_db, "DELETE FROM audit.audit_log WHERE id = %s", [ids[1]])


def _edit(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    _superuser(
        audit_db,
        "UPDATE audit.audit_log SET actor_user_id = 'someone-else' WHERE id = %s",
        [ids[2]],
    )


def _rewrite(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    """Edit an entry and recompute every hash after it: the chain alone looks whole."""
    rows = audit_db.rows(
        f"SELECT {COLUMNS} FROM audit.audit_log WHERE org_id = %s ORDER BY id",
        [org],
    )
    prev = rows[0][13]
    with psycopg.connect(audit_db.superuser, autocommit=False) as conn:
        conn.execute("SET session_replication_role = replica")
        for n, r in enumerate(rows):
            entry = AuditEntry(
                event_id=r[1],
                org_id=r[2],
                action=r[3],
                entity_type=r[4],
                entity_id=r[5],
                actor_user_id="someone-else" if n == 1 else r[6],
                occurred_at=r[7],
                source_topic=r[10],
                data=r[12],
                producer=r[11],
            )
            digest = link_hash(prev, entry)
            conn.execute(
                "UPDATE audit.audit_log SET actor_user_id = %s, prev_hash = %s, hash = %s"
                " WHERE id = %s",
                [entry.actor_user_id, prev, digest, r[0]],
            )
            prev = digest
        conn.commit()


@pytest.mark.parametrize(
    ("tamper", "reason", "head_lost"),
    [
        (_truncate, "deleted from the end", True),
        (_delete_middle, "prev_hash does not match", False),
        (_edit, "hash does not match the entry's content", False),
        (_rewrite, "rewritten", True),
    ],
    ids=["truncate-newest", "delete-middle", "edit-one", "rewrite-chain"],
)
def test_tampering_after_pruning_is_detected(
    audit_db, archive_dir, http, tamper, reason, head_lost
):
    org, kept = _sealed_org(audit_db, archive_dir)
    env = _env(audit_db, archive_dir)
    assert _cli(env, "verify", "--org", org).returncode == 0
    assert _verify_http(http, org)["ok"] is True

    tamper(audit_db, org, kept)

    for command in ("verify", "audit-verify"):
        result = _cli(env, command, "--org", org)
        assert result.returncode == 1, (command, result.stdout, result.stderr)
        line = _lines(result)[0]
        assert line["ok"] is False and reason in line["first_broken"]["reason"], line
    body = _verify_http(http, org)
    assert body["ok"] is False and reason in body["first_broken"]["reason"]
    # and no checkpoint is signed over the damage: where the last signed head is gone or
    # changed, the checkpointer refuses (exit 1) and says why; damage before it leaves
    # the head as signed (and the walk above reports it)
    sealed = _cli(env, "retention", "--org", org)
    summary = _lines(sealed)[-1]
    assert summary["checkpoints_signed"] == 0
    assert (sealed.returncode, org in summary["checkpoints_refused"]) == (
        (1, True) if head_lost else (0, False)
    )


def test_only_the_topic_catches_truncation_when_the_checkpoints_table_is_emptied(
    audit_db, archive_dir
):
    org, kept = _sealed_org(audit_db, archive_dir)
    env = _env(audit_db, archive_dir)
    _truncate(audit_db, org, kept)
    _superuser(audit_db, "DELETE FROM audit.checkpoints WHERE org_id = %s AND kind = 'head'", [org])
    assert _cli(env, "verify", "--org", org).returncode == 0  # the database alone agrees
    result = _cli(env, "audit-verify", "--org", org)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deleted from the end" in _lines(result)[0]["first_broken"]["reason"]


def test_a_forged_checkpoint_is_refused(audit_db, archive_dir):
    org, kept = _sealed_org(audit_db, archive_dir)
    _superuser(
        audit_db,
        "INSERT INTO audit.checkpoints (org_id, kind, seq, entry_id, hash, signed_at, key_id,"
        " signature) VALUES (%s, 'head', 99, %s, %s, now(), '0123456789abcdef', 'AAAA')",
        [org, kept[-1], "0" * 64],
    )
    result = _cli(_env(audit_db, archive_dir), "verify", "--org", org)
    assert result.returncode == 1
    assert "no valid signature" in _lines(result)[0]["first_broken"]["reason"]


@pytest.mark.parametrize("point", ["after_archive", "before_commit"])
def test_a_sigkill_in_the_middle_of_retention_loses_nothing(audit_db, archive_dir, tmp_path, point):
    org = f"org-kill-{uuid.uuid4().hex[:8]}"
    ids = _seed(audit_db, org, [OLD_MARCH] * 4 + [YOUNG] * 2)
    before = _log_rows(audit_db, org)
    env = _env(audit_db, archive_dir, AUDIT_RETENTION_PAUSE_AT=point)
    stderr = tmp_path / "retention.err"
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "audit_service", "retention", "--org", org],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    try:

        def paused() -> str | None:
            if proc.poll() is not None:
                raise AssertionError(f"retention exited: {stderr.read_text()[-2000:]}")
            for line in stderr.read_text().splitlines():
                if line.startswith(f"retention paused {point} "):
                    return line.split(" ", 3)[3]
            return None

        relative = wait_for(paused, f"retention paused {point}", deadline=120)
        assert (archive_dir / relative).is_file()  # the archive is there, durable
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    # killed before its commit: every row is still there, nothing recorded as archived
    assert _log_rows(audit_db, org) == before
    assert _archives(audit_db, org) == []
    anchors = audit_db.rows(
        "SELECT count(*) FROM audit.checkpoints WHERE org_id = %s AND kind = 'anchor'", [org]
    )
    assert anchors == [(0,)]
    locked = audit_db.rows(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    )
    assert locked == [(0,)]

    clean = _env(audit_db, archive_dir)
    rerun = _cli(clean, "retention", "--org", org)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert _lines(rerun)[0]["pruned"] == 4
    assert _ids(audit_db, org) == ids[4:]
    [archive] = _archives(audit_db, org)
    assert archive[4] == relative
    content = (archive_dir / relative).read_bytes()
    assert hashlib.sha256(content).hexdigest() == archive[5]
    assert [_as_tuple(r) for r in read_archive(content)] == before[:4]
    assert _cli(clean, "verify", "--org", org).returncode == 0
    twice = _cli(clean, "retention", "--org", org)
    assert _lines(twice)[0]["pruned"] == 0
    assert _archives(audit_db, org) == [archive]


def test_the_loop_prunes_signs_and_publishes_until_stopped(audit_db, archive_dir):
    org = f"org-loop-{uuid.uuid4().hex[:8]}"
    ids = _seed(audit_db, org, [OLD_MARCH] * 2 + [YOUNG] * 2)
    settings = audit_db.settings(
        audit_signing_key=KEY,
        audit_archive_dir=archive_dir,
        audit_checkpoint_interval_seconds=0.5,
        audit_retention_interval_seconds=0.5,
    )

    async def on_topic() -> list[Any]:
        found = await checkpoint_topic.read_all(client_options(settings))
        return [c for c in found if c.org_id == org]

    async def run() -> list[Any]:
        container = build(settings)
        stop = asyncio.Event()
        task = asyncio.create_task(run_retention_forever(container, stop))
        try:
            deadline = asyncio.get_running_loop().time() + 90
            while True:
                published = await on_topic()
                if _ids(audit_db, org) == ids[2:] and any(c.seq == 4 for c in published):
                    break
                assert not task.done(), task
                assert asyncio.get_running_loop().time() < deadline, "loop did not prune"
                await asyncio.sleep(0)  # the probe itself takes a broker round trip
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
            await close(container)
        return published

    published = asyncio.run(run())
    assert max(c.seq for c in published) == 4
    assert _ids(audit_db, org) == ids[2:]


def _sealed_orgs(audit_db: AuditDb) -> set[str]:
    async def run() -> set[str]:
        container = build(audit_db.settings())
        try:
            async with container.uow() as uow:
                return await uow.retention.sealed_orgs()
        finally:
            await close(container)

    return asyncio.run(run())


def _move_head(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    _seed(audit_db, org, [YOUNG])


def _change_head_hash(audit_db: AuditDb, org: str, ids: list[int]) -> None:
    _superuser(audit_db, "UPDATE audit.audit_log SET hash = %s WHERE id = %s", ["f" * 64, ids[-1]])


@pytest.mark.parametrize(
    ("change", "set_aside"),
    [(None, True), (_move_head, False), (_change_head_hash, False), (_truncate, False)],
)
def test_each_round_sets_aside_only_the_orgs_whose_signed_head_is_unchanged(
    audit_db, archive_dir, change, set_aside
):
    """The loop seals every org each round; one statement first sets aside those with
    nothing to seal. An org whose head moved, or whose signed head is gone or changed,
    goes through the whole check, which signs or refuses it."""
    org, kept = _sealed_org(audit_db, archive_dir)
    if change is not None:
        change(audit_db, org, kept)
    assert (org in _sealed_orgs(audit_db)) is set_aside
    summary = _lines(_cli(_env(audit_db, archive_dir), "retention"))[-1]
    assert (org in summary["checkpoints_refused"]) is (change in (_change_head_hash, _truncate))
    if change is _move_head:
        assert org in _sealed_orgs(audit_db)  # signed this round, set aside the next
