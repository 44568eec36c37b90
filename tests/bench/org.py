"""A fresh organisation per run with its own active SFTP connection to the stack's dropzone.

Keeps the demo org's data clean; bench files are named `BENCH-...` and are removed
from the dropzone at the end of a run.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.bench.common import Bench, wait_until


def create_bench_org(bench: Bench) -> str:
    org = f"bench-{uuid.uuid4().hex[:8]}"
    sftp = bench.stack.sftp_info()
    body = {
        "name": "Benchmark dropzone",
        "connector_type": "sftp_dropzone",
        "is_active": True,
        "file_format": "csv",
        "file_name_template": "{external_ref}_{export_id}",
        "sftp": {
            "host": "127.0.0.1",
            "port": bench.cfg.ports["sftp"],
            "username": sftp["username"],
            "remote_directory": "/inbox",
            "host_key_fingerprint": sftp["host_key_fingerprint"],
            "private_key": Path(sftp["private_key_path"]).read_text(),
            "password": None,
        },
    }
    headers = {"Authorization": f"Bearer {bench.token(org=org)}"}
    response = httpx.post(
        f"{bench.cfg.gateway_url}/erp-connections", json=body, headers=headers, timeout=30
    )
    response.raise_for_status()
    wait_until(
        lambda: bench.sql(
            "SELECT count(*) FROM draft.erp_connector WHERE org_id = %s AND is_active", (org,)
        )[0][0],
        timeout=60,
        what="draft-api to learn the bench connection",
    )
    return org


def remove_bench_files(bench: Bench) -> int:
    removed = 0
    for path in bench.cfg.inbox_dir.glob("BENCH-*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def wait_drained(bench: Bench, org: str, timeout: float = 600) -> None:
    """Until every push of the org has its outcome back in draft-api."""
    wait_until(
        lambda: (
            bench.sql(
                "SELECT count(*) FROM draft.push_attempt WHERE org_id = %s AND status = 'PENDING'",
                (org,),
            )[0][0]
            == 0
        ),
        timeout=timeout,
        what="the export backlog to drain",
        interval=0.25,
    )
