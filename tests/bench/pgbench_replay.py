"""The database's own limit for a push: pgbench replaying the SQL one push issues.

The SQL is recorded from the running service on every run, never written by hand:
Postgres logs every statement (`log_statement = 'all'`, set with ALTER SYSTEM on the
bench's stack and reset at once) while a few real pushes go through the API; the
statements that the backend of one push ran, from the end of its previous transaction
to the COMMIT of the transaction that updated `draft_order`, become a pgbench script.

Values that differ from one recorded push to the next and look like UUIDs (the draft,
its new export, event ids) become pgbench variables, fetched before BEGIN from a table
of pre-made ones (one primary-key SELECT per transaction, reported in the per-statement
latencies); every other parameter is a constant passed with `-D`, so the statements
are sent as the service sends them, with parameters. The replay runs on copies of
draft-api's tables in a scratch schema (same columns, indexes, defaults and foreign
keys), holding approved drafts of the same shape, so nothing reaches the real outbox.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.bench.common import Bench, wait_until
from tests.bench.drafts import make_approved_drafts

SCHEMA = "bench_pgreplay"
SOURCE_SCHEMA = "draft"
CLIENTS = 32
THREADS = 2
RECORDED_PUSHES = 5

_RECORD_START = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(?:\.\d+)? \S+ \[(\d+)\] ([A-Z]+):  (.*)$"
)
_STATEMENT = re.compile(r"^(?:statement|execute [^:]+): (.*)$", re.S)
_PARAM = re.compile(r"\$(\d+) = ('(?:[^']|'')*'|NULL)")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_PUSH_UPDATE = re.compile(rf'\bUPDATE\s+(?:"?{SOURCE_SCHEMA}"?\.)?"?draft_order"?\s', re.I)
_TX_END = re.compile(r"^\s*(COMMIT|ROLLBACK|END)\b", re.I)


@dataclass
class Statement:
    sql: str
    params: dict[int, str | None] = field(default_factory=dict)  # $n -> value (None: NULL)


def pgbench_binary() -> str | None:
    found = shutil.which("pgbench")
    if found:
        return found
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))
    return candidates[-1] if candidates else None


def _unquote(literal: str) -> str | None:
    if literal == "NULL":
        return None
    return literal[1:-1].replace("''", "'")


def parse_log(text: str) -> dict[int, list[Statement]]:
    """Statements per backend pid, in order, with their parameters."""
    records: list[tuple[int, str, str]] = []
    for line in text.splitlines():
        match = _RECORD_START.match(line)
        if match:
            records.append((int(match[1]), match[2], match[3]))
        elif records:  # a statement's further lines
            pid, level, message = records[-1]
            records[-1] = (pid, level, message + "\n" + line)
    by_pid: dict[int, list[Statement]] = {}
    for pid, level, message in records:
        if level == "LOG":
            statement = _STATEMENT.match(message)
            if statement:
                by_pid.setdefault(pid, []).append(Statement(statement[1].strip()))
        elif level == "DETAIL" and message.startswith("parameters: ") and by_pid.get(pid):
            by_pid[pid][-1].params = {
                int(n): _unquote(value) for n, value in _PARAM.findall(message)
            }
    return by_pid


def _client_ports(pids: list[int], server_port: int) -> set[int]:
    """Local ports of the TCP connections these processes hold to server_port."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    target = os.readlink(fd)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[9] in inodes and int(fields[2].rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def api_backends(bench: Bench) -> set[int]:
    """The Postgres backends serving draft-api's HTTP process (its pool), not its
    consumer or relay processes, which update drafts too."""
    ports = _client_ports(bench.service_pids("draft-api"), bench.cfg.ports["postgres"])
    rows = bench.sql(
        "SELECT pid FROM pg_stat_activity WHERE client_port = ANY(%s)", (sorted(ports),)
    )
    return {int(r[0]) for r in rows}


def push_units(by_pid: dict[int, list[Statement]]) -> list[list[Statement]]:
    """Each push: the statements its backend ran since its previous transaction ended,
    through the COMMIT of a transaction that updated draft_order. A backend's first
    unit is left out (it may hold the connection's own set-up)."""
    later: list[list[Statement]] = []
    firsts: list[list[Statement]] = []
    for statements in by_pid.values():
        current: list[Statement] = []
        for statement in statements:
            current.append(statement)
            if _TX_END.match(statement.sql):
                if any(_PUSH_UPDATE.search(s.sql) for s in current):
                    (later if current[0] is not statements[0] else firsts).append(current)
                current = []
    return later if len(later) >= 2 else later + firsts


def _same_shape(units: list[list[Statement]]) -> list[list[Statement]]:
    """The pushes of the most common statement sequence."""
    shapes = [tuple(s.sql for s in u) for u in units]
    common = max(set(shapes), key=shapes.count)
    return [u for u, shape in zip(units, shapes, strict=True) if shape == common]


def _varying_uuids(same: list[list[Statement]]) -> set[tuple[int, int]]:
    """(statement index, parameter) places whose UUID differs between two pushes."""
    places: set[tuple[int, int]] = set()
    for i, statement in enumerate(same[0]):
        for n, value in statement.params.items():
            if value is None or not _UUID.match(value):
                continue
            if any(other[i].params.get(n) != value for other in same[1:]):
                places.add((i, n))
    return places


@dataclass
class Script:
    text: str
    constants: dict[str, str]
    variables: list[str]  # per-transaction UUIDs: draft_id, export_id, uuid_1, ...
    tables: list[str]
    statements: int  # of the push, as recorded


def build_script(units: list[list[Statement]], draft_ids: set[str], export_ids: set[str]) -> Script:
    same = _same_shape(units) if units else []
    if len(same) < 2:
        raise RuntimeError(f"recorded {len(same)} alike push transactions; need at least 2")
    unit = same[0]
    varying = _varying_uuids(same)
    names: dict[str, str] = {}  # a varying value -> its variable
    constants: dict[str, str] = {}
    tables: set[str] = set()
    lines = [
        f"SELECT * FROM {SCHEMA}.vars WHERE n = (SELECT nextval('{SCHEMA}.vars_n')) \\gset",
    ]
    for i, statement in enumerate(unit):
        sql = statement.sql
        for table in re.findall(rf'\b"?{SOURCE_SCHEMA}"?\."?(\w+)"?', sql):
            tables.add(table)
        sql = re.sub(rf'\b"?{SOURCE_SCHEMA}"?\.("?\w+"?)', rf"{SCHEMA}.\1", sql)

        def substitute(match: re.Match[str], i: int = i, statement: Statement = statement) -> str:
            n = int(match[1])
            value = statement.params.get(n)
            if value is None:
                return "NULL"
            if (i, n) in varying:
                if value not in names:
                    if value in draft_ids:
                        names[value] = "draft_id"
                    elif value in export_ids:
                        names[value] = "export_id"
                    else:
                        names[value] = (
                            f"uuid_{sum(v.startswith('uuid_') for v in names.values()) + 1}"
                        )
                return f":{names[value]}"
            if value == "":
                return "''"  # pgbench -D takes no empty value
            name = f"p{i + 1}_{n}"
            constants[name] = value
            return f":{name}"

        sql = re.sub(r"\$(\d+)\b", substitute, sql)
        # pgbench reads one command up to the semicolon ending a line
        lines.append(" ".join(sql.split()).rstrip(";").rstrip() + ";")
    # the outbox's wake-up goes to a channel nobody listens on: the real relay would
    # otherwise wake for every replayed transaction and load the machine under test
    for line in lines:
        channel = re.search(r"pg_notify\(:(\w+)", line)
        if channel:
            constants[channel[1]] = SCHEMA
    lines = [re.sub(r"\bNOTIFY\s+\w+", f"NOTIFY {SCHEMA}", line, flags=re.I) for line in lines]
    if "draft_id" not in names.values():
        raise RuntimeError("the recorded push does not name its draft in any parameter")
    return Script(
        text="\n".join(lines) + "\n",
        constants=constants,
        variables=sorted(set(names.values())),
        tables=sorted(tables),
        statements=len(unit),
    )


def _push(bench: Bench, org: str, draft_id: str) -> str:
    response = httpx.post(
        f"{bench.cfg.gateway_url}/draft-orders/{draft_id}/push",
        headers={"Authorization": f"Bearer {bench.token(org=org)}"},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["erp_export_id"])


def record(bench: Bench, org: str) -> Script:
    """Log every statement while a few real pushes run, one after another; keep those
    of the backends of draft-api's HTTP process."""
    log = bench.cfg.log_file("postgres")
    drafts = make_approved_drafts(bench, RECORDED_PUSHES + 2, org=org)
    _push(bench, org, drafts[0])  # warms the pool's connection up before recording
    start = log.stat().st_size
    bench.sql("ALTER SYSTEM SET log_statement = 'all'")
    try:
        bench.sql("SELECT pg_reload_conf()")
        marker = f"bench-pgreplay-{uuid.uuid4().hex}"

        def logging() -> bool:
            bench.sql(f"SELECT '{marker}'")  # in the log once Postgres has read the setting
            with log.open("rb") as f:
                f.seek(start)
                return marker.encode() in f.read()

        wait_until(logging, timeout=30, what="Postgres to log statements", interval=0.2)
        exports = {_push(bench, org, draft_id) for draft_id in drafts[1:]}
        backends = api_backends(bench)
    finally:
        bench.sql("ALTER SYSTEM RESET log_statement")
        bench.sql("SELECT pg_reload_conf()")
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    by_pid = parse_log(text)
    units = push_units({pid: s for pid, s in by_pid.items() if pid in backends})
    return build_script(units, set(drafts), exports)


def _columns(bench: Bench, table: str) -> list[str]:
    return [
        r[0]
        for r in bench.sql(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (SOURCE_SCHEMA, table),
        )
    ]


def prepare(bench: Bench, org: str, script: Script, count: int) -> None:
    """Copies of draft-api's tables with `count` approved drafts and their variables."""
    template = make_approved_drafts(bench, 1, org=org)[0]
    tables = [
        r[0]
        for r in bench.sql(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s"
            " AND table_type = 'BASE TABLE'",
            (SOURCE_SCHEMA,),
        )
    ]
    with bench.connect() as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        conn.execute(f"CREATE SCHEMA {SCHEMA}")
        for table in tables:
            conn.execute(
                f"CREATE TABLE {SCHEMA}.{table} (LIKE {SOURCE_SCHEMA}.{table} INCLUDING ALL)"
            )
            # own sequences, so the real ones do not move
            for (column,) in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = %s AND table_name = %s"
                " AND column_default LIKE 'nextval(%%'",
                (SOURCE_SCHEMA, table),
            ).fetchall():
                conn.execute(f"CREATE SEQUENCE {SCHEMA}.{table}_{column}_seq")
                conn.execute(
                    f"ALTER TABLE {SCHEMA}.{table} ALTER COLUMN {column}"
                    f" SET DEFAULT nextval('{SCHEMA}.{table}_{column}_seq')"
                )
        conn.execute("SET search_path = pg_catalog")  # constraint definitions qualified
        for table, name, definition in conn.execute(
            "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)"
            " FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace"
            " WHERE n.nspname = %s AND c.contype = 'f'",
            (SOURCE_SCHEMA,),
        ).fetchall():
            short = table.split(".")[-1]
            conn.execute(
                f"ALTER TABLE {SCHEMA}.{short} ADD CONSTRAINT {name} "
                + definition.replace(f"{SOURCE_SCHEMA}.", f"{SCHEMA}.")
            )
        conn.execute("RESET search_path")
        # the org's rows that hang off no draft (its connector) as they are
        for table in tables:
            columns = _columns(bench, table)
            if "org_id" in columns and "draft_id" not in columns and table != "draft_order":
                conn.execute(
                    f"INSERT INTO {SCHEMA}.{table} SELECT * FROM {SOURCE_SCHEMA}.{table}"
                    " WHERE org_id = %s",
                    (org,),
                )
        others = [v for v in script.variables if v != "draft_id"]
        conn.execute(
            f"CREATE TABLE {SCHEMA}.vars (n bigint PRIMARY KEY, draft_id uuid NOT NULL"
            + "".join(f", {v} uuid NOT NULL" for v in others)
            + ")"
        )
        conn.execute(
            f"INSERT INTO {SCHEMA}.vars SELECT g, gen_random_uuid()"
            + ", gen_random_uuid()" * len(others)
            + " FROM generate_series(1, %s) g",
            (count,),
        )
        conn.execute(f"CREATE SEQUENCE {SCHEMA}.vars_n")
        # each variable draft: a copy of the template, with its lines
        order_cols = _columns(bench, "draft_order")
        select = ", ".join("v.draft_id" if c == "id" else f"d.{c}" for c in order_cols)
        conn.execute(
            f"INSERT INTO {SCHEMA}.draft_order ({', '.join(order_cols)}) SELECT {select}"
            f" FROM {SOURCE_SCHEMA}.draft_order d, {SCHEMA}.vars v WHERE d.id = %s",
            (template,),
        )
        line_cols = _columns(bench, "draft_order_line")
        select = ", ".join("v.draft_id" if c == "draft_id" else f"l.{c}" for c in line_cols)
        conn.execute(
            f"INSERT INTO {SCHEMA}.draft_order_line ({', '.join(line_cols)}) SELECT {select}"
            f" FROM {SOURCE_SCHEMA}.draft_order_line l, {SCHEMA}.vars v WHERE l.draft_id = %s",
            (template,),
        )
        conn.execute(f"ANALYZE {SCHEMA}.vars")
        for table in tables:
            conn.execute(f"ANALYZE {SCHEMA}.{table}")


_TPS = re.compile(r"^tps = ([\d.]+)", re.M)
_LATENCY = re.compile(r"^latency average = ([\d.]+) ms", re.M)
_PER_STATEMENT = re.compile(r"^\s+([\d.]+)\s+\d+\s+(\S.*)$", re.M)


def run_pgbench(bench: Bench, script: Script, *, clients: int, per_client: int) -> dict[str, Any]:
    binary = pgbench_binary()
    if binary is None:
        raise RuntimeError("pgbench not found: apt-get install postgresql-client")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "push.sql"
        path.write_text(script.text)
        log_prefix = Path(tmp) / "tx"
        argv = [
            binary,
            "-n",
            "-h",
            "127.0.0.1",
            "-p",
            str(bench.cfg.ports["postgres"]),
            "-U",
            "postgres",
            "-c",
            str(clients),
            "-j",
            str(min(THREADS, clients)),
            "-M",
            "prepared",
            "-t",
            str(per_client),
            "-r",
            "-l",
            "--log-prefix",
            str(log_prefix),
            "-f",
            str(path),
        ]
        for name, value in script.constants.items():
            argv += ["-D", f"{name}={value}"]
        argv.append(bench.cfg.superuser_dsn().rsplit("/", 1)[1])
        env = {**os.environ, "PGPASSWORD": bench.cfg.role_password("postgres")}
        started = time.monotonic()
        proc = subprocess.run(argv, env=env, capture_output=True, text=True)
        wall = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        latencies = sorted(
            int(line.split()[2]) / 1000
            for log in Path(tmp).glob("tx*")
            for line in log.read_text().splitlines()
        )
    out = proc.stdout
    tps = _TPS.search(out)
    avg = _LATENCY.search(out)
    per_statement = [
        {"ms": float(ms), "statement": text.strip()[:120]}
        for ms, text in _PER_STATEMENT.findall(out.split("statement latencies")[-1])
    ]
    return {
        "clients": clients,
        "transactions": clients * per_client,
        "wall_s": wall,
        "tx_per_s": float(tps[1]) if tps else clients * per_client / wall,
        "latency_avg_ms": float(avg[1]) if avg else None,
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        if latencies
        else None,
        "per_statement_ms": per_statement,
    }


def run(bench: Bench, org: str, *, script: Script | None = None) -> dict[str, Any]:
    """One repetition: (record when not given), make the copies, replay."""
    script = script or record(bench, org)
    clients = 4 if bench.quick else CLIENTS
    per_client = 10 if bench.quick else 300
    prepare(bench, org, script, clients * per_client)
    try:
        replay = run_pgbench(bench, script, clients=clients, per_client=per_client)
        pushed = bench.sql(f"SELECT count(*) FROM {SCHEMA}.draft_order WHERE status <> 'APPROVED'")[
            0
        ][0]
    finally:
        bench.sql(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    replay["drafts_changed"] = int(pushed)
    return replay


def script_record(script: Script) -> dict[str, Any]:
    return {
        "statements_per_push": script.statements,
        "tables": script.tables,
        "variables": script.variables,
        "script": script.text.splitlines(),
        "constants": script.constants,
    }
