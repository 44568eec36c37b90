"""`python -m tests.bench [--quick] [--repeat N] [--out DIR]`: every benchmark, N times.

Reads the stack from ORDERFLOW_STATE_DIR / ORDERFLOW_PORT_OFFSET (default: the `make up`
stack in .run/). Writes `benchmarks.md` (medians and ranges of the repetitions, each
figure beside its anchor of the same run, the ratio and the target of issue 17) and
`benchmarks.json` (every repetition's raw figures) to --out (default docs/).

The repetitions interleave (push, replay, peer, end to end, relay, audit; then again),
so a figure and its anchor are measured minutes apart at most, under the same load.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from tests.bench import audit_ingest, end_to_end, pgbench_replay, push_api, relay
from tests.bench.common import Bench, RssSampler, cpu_count, spread
from tests.bench.org import create_bench_org, remove_bench_files

BENCHMARKS = ("push_api", "pgbench_replay", "seed_design", "end_to_end", "relay", "audit_ingest")
RSS_LIMIT_MIB = 150
Row = tuple[str, str, str, str, str]


# --- figures of the repetitions ------------------------------------------------------
def _get(run: dict[str, Any], path: str) -> Any:
    value: Any = run
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def runs_of(results: dict[str, Any], name: str) -> list[dict[str, Any] | None]:
    """The repetitions of one benchmark (None where that repetition failed)."""
    entry = results.get(name)
    return list(entry["runs"]) if entry else []


def figure(results: dict[str, Any], name: str, path: str) -> dict[str, float]:
    return spread([_get(r, path) for r in runs_of(results, name) if r is not None])


def ratio(
    results: dict[str, Any], top: tuple[str, str], bottom: tuple[str, str]
) -> dict[str, float]:
    """The ratio of two figures in each repetition (same repetition: same load), spread."""
    values = []
    for a, b in zip(runs_of(results, top[0]), runs_of(results, bottom[0]), strict=False):
        x = _get(a, top[1]) if a else None
        y = _get(b, bottom[1]) if b else None
        if x is not None and y:
            values.append(x / y)
    return spread(values)


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or value != value:  # NaN
        return "n/a"
    return f"{value:,.{digits}f}"


def _s(fig: dict[str, float], digits: int = 0, unit: str = "") -> str:
    """Median (min-max)."""
    text = _fmt(fig["median"], digits) + unit
    low, high = _fmt(fig["min"], digits), _fmt(fig["max"], digits)
    if low != high:
        text += f" ({low}-{high})"
    return text


def _pct(fig: dict[str, float]) -> str:
    if fig["median"] != fig["median"]:
        return "n/a"
    text = f"{fig['median']:.1%}"
    low, high = f"{fig['min']:.1%}", f"{fig['max']:.1%}"
    if low != high:
        text += f" ({low}-{high})"
    return text


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "not measured"
    return "met" if ok else "MISSED"


def _at_least(fig: dict[str, float], bound: float) -> bool | None:
    median = fig["median"]
    return None if median != median else median >= bound


def _below(fig: dict[str, float], bound: float) -> bool | None:
    median = fig["median"]
    return None if median != median else median < bound


def _both(*checks: bool | None) -> bool | None:
    if any(c is None for c in checks):
        return None
    return all(checks)


# --- the table -------------------------------------------------------------------------
def _push_rows(results: dict[str, Any]) -> list[Row]:
    if "push_api" not in results:
        return []
    rate = figure(results, "push_api", "push.req_per_s")
    p50 = figure(results, "push_api", "push.p50_ms")
    p99 = figure(results, "push_api", "push.p99_ms")
    ours = f"{_s(rate)} req/s, p50 {_s(p50, 1)} ms, p99 {_s(p99, 1)} ms"
    rows: list[Row] = []
    if "pgbench_replay" in results:
        replay = figure(results, "pgbench_replay", "tx_per_s")
        r99 = figure(results, "pgbench_replay", "p99_ms")
        statements = results["pgbench_replay"].get("recorded", {}).get("statements_per_push")
        share = ratio(results, ("push_api", "push.req_per_s"), ("pgbench_replay", "tx_per_s"))
        rows.append(
            (
                "Push API via gateway (wrk, 32 conns)",
                ours,
                f"pgbench replay of the push's own {statements} recorded statements,"
                f" 32 clients: {_s(replay)} tx/s, p99 {_s(r99, 1)} ms",
                _pct(share),
                f">= 40% of the replay and p99 < 100 ms: "
                f"{_verdict(_both(_at_least(share, 0.4), _below(p99, 100)))}",
            )
        )
    noop = figure(results, "push_api", "anchor_noop.req_per_s")
    share = ratio(results, ("push_api", "push.req_per_s"), ("push_api", "anchor_noop.req_per_s"))
    rows.append(
        (
            "Push API vs the framework",
            f"{_s(rate)} req/s",
            f"no-op FastAPI route: {_s(noop)} req/s,"
            f" p99 {_s(figure(results, 'push_api', 'anchor_noop.p99_ms'), 1)} ms",
            _pct(share),
            f">= 5% of the no-op route: {_verdict(_at_least(share, 0.05))}",
        )
    )
    if "seed_design" in results:
        peer = figure(results, "seed_design", "push.req_per_s")
        share = ratio(results, ("push_api", "push.req_per_s"), ("seed_design", "push.req_per_s"))
        rows.append(
            (
                "Push API vs the seed's design",
                f"{_s(rate)} req/s, p99 {_s(p99, 1)} ms",
                f"seed-design peer (tests/bench/seed_design.py): {_s(peer)} req/s,"
                f" p99 {_s(figure(results, 'seed_design', 'push.p99_ms'), 1)} ms",
                _pct(share),
                f"more req/s than the peer: {_verdict(_at_least(share, 1.0 + 1e-9))}",
            )
        )
    return rows


def _end_to_end_rows(results: dict[str, Any]) -> list[Row]:
    if "end_to_end" not in results:
        return []
    first = next((r for r in runs_of(results, "end_to_end") if r), None)
    if first is None:
        return []
    lat = first["latency"]
    p50 = figure(results, "end_to_end", "latency.file_p50_ms")
    p99 = figure(results, "end_to_end", "latency.file_p99_ms")
    back50 = figure(results, "end_to_end", "latency.p50_ms")
    back99 = figure(results, "end_to_end", "latency.p99_ms")
    anchor, share = "-", "-"
    if "seed_design" in results:
        peer50 = figure(results, "seed_design", "end_to_end.p50_ms")
        peer99 = figure(results, "seed_design", "end_to_end.p99_ms")
        anchor = f"seed-design peer: p50 {_s(peer50, 1)} ms, p99 {_s(peer99, 1)} ms"
        times = ratio(
            results, ("end_to_end", "latency.file_p50_ms"), ("seed_design", "end_to_end.p50_ms")
        )
        share = f"p50 {_s(times, 1)}x the peer's" if times["median"] == times["median"] else "-"
    rows: list[Row] = [
        (
            f"End to end at {_fmt(lat['offered_rate_per_s'])} pushes/s, 202 until the"
            f" file lands ({lat['pushes']} pushes)",
            f"p50 {_s(p50, 1)} ms, p99 {_s(p99, 1)} ms (until the outcome is back in"
            f" draft-api: p50 {_s(back50, 1)} ms, p99 {_s(back99, 1)} ms)",
            anchor,
            share,
            f"p50 < 20 ms and p99 < 60 ms: {_verdict(_both(_below(p50, 20), _below(p99, 60)))}",
        )
    ]
    # the label comes from a repetition that measured a backlog
    first = next((r for r in runs_of(results, "end_to_end") if r and r["anchor_sftp_b"]), first)
    files = figure(results, "end_to_end", "backlog.deliveries_per_s")
    sftp = figure(results, "end_to_end", "anchor_sftp_b.files_per_s")
    share_fig = ratio(
        results,
        ("end_to_end", "backlog.deliveries_per_s"),
        ("end_to_end", "anchor_sftp_b.files_per_s"),
    )
    rows.append(
        (
            f"Delivery with a backlog of {first['backlog']['backlog']}",
            f"{_s(files)} files/s",
            f"OpenSSH sftp -b: {_s(sftp)} files/s"
            f" ({first['anchor_sftp_b']['file_size_bytes']} B files)",
            _pct(share_fig),
            f">= 60% of sftp -b: {_verdict(_at_least(share_fig, 0.6))}",
        )
    )
    return rows


def _relay_rows(results: dict[str, Any]) -> list[Row]:
    if "relay" not in results:
        return []
    first = next((r for r in runs_of(results, "relay") if r), None)
    if first is None:
        return []
    share = ratio(
        results, ("relay", "relay.events_per_s"), ("relay", "anchor_producer.events_per_s")
    )
    return [
        (
            f"Outbox relay ({first['relay']['events']} events backlog)",
            f"{_s(figure(results, 'relay', 'relay.events_per_s'))} events/s",
            "aiokafka idempotent producer loop:"
            f" {_s(figure(results, 'relay', 'anchor_producer.events_per_s'))} events/s",
            _pct(share),
            f">= 50% of the plain producer: {_verdict(_at_least(share, 0.5))}",
        ),
        (
            f"Outbox lag at {_fmt(first['relay']['lag_rate_per_s'])} events/s",
            f"p50 {_s(figure(results, 'relay', 'relay.lag_p50_ms'), 1)} ms,"
            f" p99 {_s(figure(results, 'relay', 'relay.lag_p99_ms'), 1)} ms",
            "-",
            "-",
            "- (one hop of the end-to-end latency)",
        ),
    ]


def _audit_rows(results: dict[str, Any]) -> list[Row]:
    if "audit_ingest" not in results:
        return []
    first = next((r for r in runs_of(results, "audit_ingest") if r), None)
    if first is None:
        return []
    copy = f"Postgres COPY: {_s(figure(results, 'audit_ingest', 'anchor_copy.rows_per_s'))} rows/s"
    one = ratio(
        results, ("audit_ingest", "ingest.events_per_s"), ("audit_ingest", "anchor_copy.rows_per_s")
    )
    many = ratio(
        results,
        ("audit_ingest", "ingest_many_orgs.events_per_s"),
        ("audit_ingest", "anchor_copy.rows_per_s"),
    )
    return [
        (
            f"Audit ingest ({first['ingest']['events']} events, one org)",
            f"{_s(figure(results, 'audit_ingest', 'ingest.events_per_s'))} events/s",
            copy,
            _pct(one),
            f">= 30% of COPY: {_verdict(_at_least(one, 0.3))}",
        ),
        (
            f"Audit ingest ({first['ingest_many_orgs']['events']} events,"
            f" {first['ingest_many_orgs']['orgs']} orgs)",
            f"{_s(figure(results, 'audit_ingest', 'ingest_many_orgs.events_per_s'))} events/s",
            copy,
            _pct(many),
            "more than one org's ratio, and >= 30%: "
            f"{_verdict(_both(_at_least(many, 0.3), _at_least(many, one['median'] + 1e-9)))}",
        ),
    ]


def _rss_rows(results: dict[str, Any]) -> list[Row]:
    rss: dict[str, float] = results.get("peak_rss_mib") or {}
    if not rss:
        return []
    worst = max(rss, key=lambda name: rss[name])
    return [
        (
            "Peak RSS of each Python process, whole run",
            ", ".join(f"{name} {_fmt(value)}" for name, value in rss.items()) + " MiB",
            "-",
            f"max {_fmt(rss[worst])} MiB ({worst})",
            f"each < {RSS_LIMIT_MIB} MiB: {_verdict(rss[worst] < RSS_LIMIT_MIB)}",
        )
    ]


def table(results: dict[str, Any]) -> list[Row]:
    return [
        *_push_rows(results),
        *_end_to_end_rows(results),
        *_relay_rows(results),
        *_audit_rows(results),
        *_rss_rows(results),
    ]


def cpu_line(results: dict[str, Any], path: str = "cpu_ms_per_push") -> str | None:
    """CPU ms per accepted push by process (medians), the largest first."""
    runs = [r for r in runs_of(results, "push_api") if r and path in r]
    if not runs:
        return None
    names = list(runs[0][path])
    medians = {n: spread([r[path].get(n) for r in runs])["median"] for n in names}
    ordered = sorted(medians.items(), key=lambda kv: -kv[1])
    total = sum(v for v in medians.values() if v == v)
    parts = ", ".join(f"{name} {value:.2f}" for name, value in ordered if value >= 0.005)
    return f"total {total:.2f}: {parts}"


def hops_lines(results: dict[str, Any]) -> list[str]:
    if not any(r and _get(r, "latency.hops") for r in runs_of(results, "end_to_end")):
        return []
    lines = []
    for name, what in end_to_end.HOPS:
        p50 = figure(results, "end_to_end", f"latency.hops.{name}.p50_ms")
        p99 = figure(results, "end_to_end", f"latency.hops.{name}.p99_ms")
        lines.append(f"- {what}: p50 {_s(p50, 1)} ms, p99 {_s(p99, 1)} ms")
    return lines


def markdown(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`python -m tests.bench`); do not edit by hand.",
        f"Run {meta['started_at']} on {meta['machine']} ({meta['cpus']} cores),"
        f" {'quick smoke' if meta['quick'] else 'full'} run, {meta['repeat']} repetitions,"
        f" {meta['seconds']:.0f} s.",
        "Each figure is the median of the repetitions (their range in brackets), beside an"
        " anchor measured in the same repetitions on the same machine; a ratio is the"
        " median of the repetitions' own ratios. The targets are issue 17's.",
        "",
        *(
            ["**Interrupted**: only the repetitions that finished are in the figures.", ""]
            if meta.get("interrupted")
            else []
        ),
        "| benchmark | OrderFlow | anchor | ratio | target |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(row)} |" for row in table(results)]
    cpu = cpu_line(results)
    if cpu:
        lines += [
            "",
            "CPU milliseconds per accepted push, by process, during the push run"
            f" (utime+stime from /proc, medians): {cpu}.",
        ]
    cpu = cpu_line(results, "cpu_ms_per_push_until_drained")
    if cpu:
        lines += [
            "The same until every push's outcome is back (delivery, audit and the result"
            f" included): {cpu}.",
        ]
    hops = hops_lines(results)
    if hops:
        lines += [
            "",
            "Where the end-to-end time goes, hop by hop (the pipeline's own timestamps;"
            " p50 and p99 of each hop, medians of the repetitions):",
            "",
            *hops,
        ]
    errors = [
        f"- {name}, repetition {int(i) + 1}: {err.strip().splitlines()[-1]}"
        for name, entry in results.items()
        if isinstance(entry, dict) and "errors" in entry
        for i, err in sorted(entry["errors"].items())
    ]
    if errors:
        lines += ["", "Failed repetitions (left out of the figures):", *errors]
    skipped = [f"- {name}: {why}" for name, why in results.get("skipped", {}).items()]
    if skipped:
        lines += ["", "Not measured:", *skipped]
    lines += [
        "",
        "Raw figures of every repetition, and the replayed pgbench script:"
        " `benchmarks.json` beside this file.",
        "",
    ]
    notes = results.get("notes")
    if notes:
        lines += ["## Notes", "", *notes, ""]
    return "\n".join(lines)


# --- running ---------------------------------------------------------------------------
def _install(package: str, binary: str) -> bool:
    """Tools from Debian's packages; installed when we may."""
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
        subprocess.run(install, env=env, capture_output=True)
    return shutil.which(binary) is not None


def _stack_answers(bench: Bench) -> bool:
    try:
        ready = httpx.get(f"{bench.cfg.gateway_url}/_svc/draft-api/readyz", timeout=5)
    except httpx.HTTPError:
        return False
    return ready.status_code == 200


def _seed_design_module() -> Any | None:
    """tests/bench/seed_design.py, when it is there (it is written apart from this)."""
    try:
        return importlib.import_module("tests.bench.seed_design")
    except ModuleNotFoundError as exc:
        if exc.name != "tests.bench.seed_design":
            raise
        return None


class Runner:
    """Runs every wanted benchmark once per repetition and keeps each run's figures."""

    def __init__(self, bench: Bench, wanted: set[str], results: dict[str, Any]) -> None:
        self.bench = bench
        self.wanted = wanted
        self.results = results
        self.org = create_bench_org(bench)
        self.script: pgbench_replay.Script | None = None
        self.failed = False

    def _replay(self) -> dict[str, Any]:
        if self.script is None:  # recorded once per run, from the service as it is
            self.script = pgbench_replay.record(self.bench, self.org)
            self.results["pgbench_replay"]["recorded"] = pgbench_replay.script_record(self.script)
        return pgbench_replay.run(self.bench, self.org, script=self.script)

    def benchmarks(self) -> dict[str, Callable[[], dict[str, Any]]]:
        seed_design = _seed_design_module()
        found: dict[str, Callable[[], dict[str, Any]]] = {
            "push_api": lambda: push_api.run(self.bench, self.org),
            "pgbench_replay": self._replay,
            "end_to_end": lambda: end_to_end.run(self.bench, create_bench_org(self.bench)),
            "relay": lambda: relay.run(self.bench),
            "audit_ingest": lambda: audit_ingest.run(self.bench),
        }
        if seed_design is not None:
            found["seed_design"] = lambda: dict(seed_design.run(self.bench))
        elif "seed_design" in self.wanted:
            self.results.setdefault("skipped", {})["seed_design"] = (
                "tests/bench/seed_design.py is not there"
            )
        if "pgbench_replay" in self.wanted and pgbench_replay.pgbench_binary() is None:
            if not _install("postgresql-client", "pgbench"):
                found.pop("pgbench_replay")
                self.results.setdefault("skipped", {})["pgbench_replay"] = (
                    "pgbench not found (apt-get install postgresql-client)"
                )
        return {name: found[name] for name in BENCHMARKS if name in found and name in self.wanted}

    def run(self, repeat: int) -> None:
        todo = self.benchmarks()
        for name in todo:
            self.results[name] = {"runs": [], **self.results.get(name, {})}
        for i in range(repeat):
            for name, benchmark in todo.items():
                print(f"bench: {name} ({i + 1}/{repeat}) ...", flush=True)
                started = time.monotonic()
                try:
                    figures = benchmark()
                except Exception:
                    text = traceback.format_exc()
                    print(text, file=sys.stderr, flush=True)
                    self.results[name].setdefault("errors", {})[i] = text
                    self.results[name]["runs"].append(None)
                    self.failed = True
                    continue
                figures["bench_seconds"] = time.monotonic() - started
                print(f"bench: {name} done in {figures['bench_seconds']:.0f} s", flush=True)
                self.results[name]["runs"].append(figures)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="repetitions of every figure (default 3; 1 with --quick)",
    )
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS)
    args = parser.parse_args(argv)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    if repeat < 1:
        parser.error("--repeat must be at least 1")
    if shutil.which("wrk") is None and not _install("wrk", "wrk"):
        print("make bench needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    bench = Bench.from_env(quick=args.quick)
    if not _stack_answers(bench):
        print(
            "make bench measures a running stack: start it with `make up` first"
            f" (none answers at {bench.cfg.gateway_url}; ORDERFLOW_STATE_DIR or"
            " ORDERFLOW_PORT_OFFSET name another one)",
            file=sys.stderr,
        )
        return 2
    wanted = set(args.only or BENCHMARKS)
    started = time.monotonic()
    results: dict[str, Any] = {
        "meta": {
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": platform.platform(),
            "cpus": cpu_count(),
            "quick": args.quick,
            "repeat": repeat,
        }
    }
    sampler = RssSampler(bench)
    runner = Runner(bench, wanted, results)
    try:
        with sampler.running():
            runner.run(repeat)
    except KeyboardInterrupt:  # Ctrl-C: what was measured so far is still written
        results["meta"]["interrupted"] = True
        runner.failed = True
    finally:
        remove_bench_files(bench)
    results["peak_rss_mib"] = {k: v / 2**20 for k, v in sampler.peaks.items()}
    results["meta"]["seconds"] = time.monotonic() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "benchmarks.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    notes_file = args.out / "benchmarks-notes.md"
    if notes_file.exists():
        results["notes"] = notes_file.read_text().splitlines()
    (args.out / "benchmarks.md").write_text(markdown(results))
    for row in table(results):
        print(" | ".join(row))
    for line in (cpu_line(results), cpu_line(results, "cpu_ms_per_push_until_drained")):
        if line:
            print(f"CPU ms per push: {line}")
    if runner.failed:
        print("bench: some repetitions failed (see above and benchmarks.md)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
