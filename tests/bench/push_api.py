"""1. Push API: sustained push requests/s and latency, wrk on loopback, vs a no-op route."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.bench.common import Bench, CpuMeter, wait_until
from tests.bench.drafts import make_approved_drafts
from tests.bench.org import wait_drained

CONCURRENCY = 32

WRK_SCRIPT = r"""
local ids = {}
local token = os.getenv("BENCH_TOKEN")
local method = os.getenv("BENCH_METHOD") or "push"
for line in io.lines(os.getenv("BENCH_IDS")) do ids[#ids + 1] = line end
local counter = 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  counter = tid
end
function request()
  counter = counter + 2
  local path
  if method == "noop" then
    path = "/noop"
  else
    path = "/draft-orders/" .. ids[(counter % #ids) + 1] .. "/push"
  end
  return wrk.format("POST", path, {["Authorization"] = "Bearer " .. token})
end
function done(summary, latency, requests)
  local out = {
    requests = summary.requests,
    duration_us = summary.duration,
    non2xx = summary.errors.status,
    socket_errors = summary.errors.connect + summary.errors.read
      + summary.errors.write + summary.errors.timeout,
    p50_us = latency:percentile(50),
    p99_us = latency:percentile(99),
  }
  local parts = {}
  for k, v in pairs(out) do parts[#parts + 1] = string.format('"%s": %d', k, v) end
  io.stderr:write("WRK_JSON {" .. table.concat(parts, ", ") .. "}\n")
end
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_wrk(url: str, *, seconds: int, env: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.lua"
        script.write_text(WRK_SCRIPT)
        proc = subprocess.run(
            [
                "wrk",
                "-t2",
                f"-c{CONCURRENCY}",
                f"-d{seconds}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            check=True,
        )
    line = next(ln for ln in proc.stderr.splitlines() if ln.startswith("WRK_JSON "))
    raw = json.loads(line.removeprefix("WRK_JSON "))
    seconds_run = raw["duration_us"] / 1e6
    ok = raw["requests"] - raw["non2xx"]
    return {
        "requests": raw["requests"],
        "non_2xx": raw["non2xx"],
        "socket_errors": raw["socket_errors"],
        "req_per_s": ok / seconds_run,
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
    }


def noop_anchor(bench: Bench, seconds: int) -> dict[str, Any]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "tests.bench.noop_app:make_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=bench.cfg.repo_root,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until(lambda: _ok(f"{url}/docs"), timeout=30, what="no-op app")
        ids = Path(tempfile.mkstemp()[1])
        ids.write_text("x\n")
        try:
            return run_wrk(
                url,
                seconds=seconds,
                env={"BENCH_IDS": str(ids), "BENCH_TOKEN": "-", "BENCH_METHOD": "noop"},
            )
        finally:
            ids.unlink()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def run(bench: Bench, org: str) -> dict[str, Any]:
    """One repetition: wrk on the push route, then on a no-op route.

    The CPU each process of the stack spent is divided by the pushes accepted, over the
    wrk run itself and over the run until every push's outcome is back in draft-api.
    """
    seconds = 3 if bench.quick else 10
    drafts = make_approved_drafts(bench, 300 if bench.quick else 15_000, org=org)
    cpu = CpuMeter(bench)
    with tempfile.NamedTemporaryFile("w", suffix=".ids", delete=False) as f:
        f.write("\n".join(drafts) + "\n")
        ids_path = f.name
    try:
        started = time.monotonic()
        cpu.begin()
        push = run_wrk(
            bench.cfg.gateway_url,
            seconds=seconds,
            env={"BENCH_IDS": ids_path, "BENCH_TOKEN": bench.token(org=org)},
        )
        push["wall_s"] = time.monotonic() - started
        accepted = push["requests"] - push["non_2xx"]
        during = cpu.ms_per(accepted)
    finally:
        os.unlink(ids_path)
    wait_drained(bench, org)
    until_drained = cpu.ms_per(accepted)
    anchor = noop_anchor(bench, seconds)
    return {
        "concurrency": CONCURRENCY,
        "seconds": seconds,
        "drafts_prepared": len(drafts),
        "push": push,
        "cpu_ms_per_push": during,
        "cpu_ms_per_push_until_drained": until_drained,
        "anchor_noop": anchor,
        "ratio": push["req_per_s"] / anchor["req_per_s"] if anchor["req_per_s"] else None,
    }
