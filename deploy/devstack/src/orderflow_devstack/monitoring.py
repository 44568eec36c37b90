"""Optional monitoring of the local stack: Zipkin (traces) and Prometheus (metrics, alerts).

`make up MONITORING=1` turns it on for the state dir (remembered in
`<state>/monitoring.enabled`, so `make restart SVC=...` keeps exporting traces;
`MONITORING=0` turns it off again); the test stack always runs it.

- Zipkin: the server jar from Maven Central (io.zipkin:zipkin-server, classifier
  `exec`), fetched once into /var/lib/orderflow/zipkin-<version>/, in-memory storage,
  on 127.0.0.1:9411 (+ offset), UI at /zipkin/. Every service process then exports its
  spans there (`OTEL_EXPORTER_ZIPKIN_ENDPOINT`, see orderflow_shared.tracing): Zipkin's
  server takes Zipkin's JSON, not OTLP.
- Prometheus: Debian's `prometheus`, on 127.0.0.1:9090 (+ offset), with a scrape config
  rendered from the stack's process list (stack.json "processes": every HTTP API and
  every role process, each with its own /metrics) and deploy/prometheus/rules.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

from orderflow_devstack import accounts
from orderflow_devstack.components import Component
from orderflow_devstack.config import SERVICES, SYSTEM_BASE, StackConfig
from orderflow_devstack.procs import StackError, run

ZIPKIN_VERSION = "3.5.1"
ZIPKIN_ARTIFACT = f"io.zipkin:zipkin-server:{ZIPKIN_VERSION}:jar:exec"
#: spans the local Zipkin keeps (the newest; about 600 pushes), in its 256 MiB heap
ZIPKIN_MAX_SPANS = 20_000
#: dev default ports; ORDERFLOW_PORT_OFFSET is added like to every other port
MONITORING_PORTS = {"zipkin": 9411, "prometheus": 9090}
#: OS users of the two servers (no rights beyond their own state)
USERS = {"zipkin": "orderflow-zipkin", "prometheus": "orderflow-prometheus"}
MARKER = "monitoring.enabled"
#: how often the spans of a service process are sent (ms): at once in tests
TEST_BSP_DELAY_MS = "200"
DEV_BSP_DELAY_MS = "1000"


def enabled(cfg: StackConfig, environ: dict[str, str] | None = None) -> bool:
    """True when this stack runs Zipkin and Prometheus (and its services export spans).

    The test stack always does. Otherwise `MONITORING=1` / `MONITORING=0` in the
    environment decides (and is remembered in the state dir); unset, the state dir's
    marker does."""
    if cfg.environment == "test":
        return True
    env = os.environ if environ is None else environ
    marker = cfg.state_dir / MARKER
    wanted = env.get("MONITORING", "").strip().lower()
    if wanted in ("1", "true", "yes", "on"):
        cfg.state_dir.mkdir(parents=True, exist_ok=True)
        marker.write_text("MONITORING=1\n")
        return True
    if wanted in ("0", "false", "no", "off"):
        marker.unlink(missing_ok=True)
        return False
    return marker.exists()


def port(cfg: StackConfig, name: str) -> int:
    return MONITORING_PORTS[name] + cfg.port_offset


def url(cfg: StackConfig, name: str) -> str:
    return f"http://127.0.0.1:{port(cfg, name)}"


def zipkin_spans_endpoint(cfg: StackConfig) -> str:
    return f"{url(cfg, 'zipkin')}/api/v2/spans"


def tracing_env(cfg: StackConfig) -> dict[str, str]:
    """What a service process needs to export its spans to the stack's Zipkin ({} when
    monitoring is off: the services then make no exporter at all)."""
    if not enabled(cfg):
        return {}
    return {
        "OTEL_EXPORTER_ZIPKIN_ENDPOINT": zipkin_spans_endpoint(cfg),
        "OTEL_BSP_SCHEDULE_DELAY": TEST_BSP_DELAY_MS
        if cfg.environment == "test"
        else DEV_BSP_DELAY_MS,
    }


def components(cfg: StackConfig) -> dict[str, Component]:
    """The monitoring components of this stack ({} when off)."""
    if not enabled(cfg):
        return {}
    return {"zipkin": Zipkin(cfg), "prometheus": Prometheus(cfg)}


def describe(cfg: StackConfig) -> dict[str, Any]:
    """The stack.json entry "monitoring"."""
    if not enabled(cfg):
        return {"enabled": False}
    return {
        "enabled": True,
        "zipkin": {"url": url(cfg, "zipkin"), "ui": f"{url(cfg, 'zipkin')}/zipkin/"},
        "prometheus": {"url": url(cfg, "prometheus")},
    }


def banner_lines(cfg: StackConfig) -> list[str]:
    if not enabled(cfg):
        return ["  monitoring       off (make up MONITORING=1: Zipkin and Prometheus)"]
    return [
        f"  zipkin (traces)  {url(cfg, 'zipkin')}/zipkin/",
        f"  prometheus       {url(cfg, 'prometheus')}/targets   (alerts: /alerts)",
    ]


# --- Zipkin ------------------------------------------------------------------------------


def zipkin_dir() -> Path:
    return SYSTEM_BASE / f"zipkin-{ZIPKIN_VERSION}"


def zipkin_jar() -> Path:
    return zipkin_dir() / f"zipkin-server-{ZIPKIN_VERSION}-exec.jar"


def fetch_zipkin() -> Path:
    """The Zipkin server jar, fetched with Maven once (root-owned, readable by all)."""
    jar = zipkin_jar()
    if jar.exists():
        return jar
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("zipkin: Maven (`mvn`) is missing; run `make install`")
    SYSTEM_BASE.mkdir(parents=True, exist_ok=True)
    SYSTEM_BASE.chmod(0o755)
    with tempfile.TemporaryDirectory(dir=SYSTEM_BASE, prefix=".zipkin-") as tmp:
        run(
            [
                mvn,
                "-q",
                "-B",
                "dependency:copy",
                f"-Dartifact={ZIPKIN_ARTIFACT}",
                f"-DoutputDirectory={tmp}",
            ],
            what=f"mvn dependency:copy {ZIPKIN_ARTIFACT}",
            timeout=1200,
        )
        fetched = Path(tmp) / jar.name
        if not fetched.exists():
            raise StackError(f"zipkin: Maven ran but {jar.name} is not in {tmp}")
        fetched.chmod(0o644)
        zipkin_dir().mkdir(parents=True, exist_ok=True)
        zipkin_dir().chmod(0o755)
        fetched.replace(jar)
    return jar


def _http_ok(address: str) -> bool:
    try:
        with urllib.request.urlopen(address, timeout=2) as response:  # noqa: S310 (loopback)
            return bool(response.status == 200)
    except OSError:
        return False


class Zipkin(Component):
    name = "zipkin"
    ready_timeout = 120.0

    @property
    def port(self) -> int:
        return port(self.cfg, "zipkin")

    def user(self) -> str:
        return USERS["zipkin"]

    def prepare(self) -> None:
        fetch_zipkin()

    def command(self) -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise StackError("zipkin: `java` not found (Java 17 is needed); run `make install`")
        return [
            java,
            "-Xms64m",
            "-Xmx256m",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-Djava.awt.headless=true",
            "-jar",
            str(zipkin_jar()),
            # loopback only, like every other part of the stack
            "--armeria.ports[0].ip=127.0.0.1",
            f"--armeria.ports[0].port={self.port}",
            "--armeria.ports[0].protocols=http",
            # in-memory storage keeps the newest ZIPKIN_MAX_SPANS (the server's default,
            # 500,000, outgrows this heap in one test run and then answers no query)
            f"--zipkin.storage.mem.max-spans={ZIPKIN_MAX_SPANS}",
        ]

    def is_ready(self) -> bool:
        return _http_ok(f"{url(self.cfg, 'zipkin')}/health")


# --- Prometheus --------------------------------------------------------------------------


def scrape_targets(cfg: StackConfig) -> dict[str, list[tuple[str, int]]]:
    """service -> [(process, port)] for every process of the stack (stack.json's
    "processes": the HTTP APIs and each background role, each with its own /metrics)."""
    processes = cfg.describe().get("processes", {})
    targets: dict[str, list[tuple[str, int]]] = {service: [] for service in SERVICES}
    for name, entry in processes.items():
        targets.setdefault(str(entry["service"]), []).append((name, int(entry["port"])))
    return targets


def prometheus_config(cfg: StackConfig, *, rules_dir: Path | None = None) -> str:
    """deploy/prometheus/prometheus.yml for this stack's ports: a job per service, a
    target per process (label `process`), the rules of deploy/prometheus/rules."""
    rules = rules_dir or cfg.repo_root / "deploy" / "prometheus" / "rules"
    interval = "2s" if cfg.environment == "test" else "5s"
    lines = [
        f"# rendered by the devstack for {cfg.state_dir} (do not edit: `make up` rewrites it)",
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "rule_files:",
        f'  - "{rules}/*.yml"',
        "scrape_configs:",
    ]
    for service, processes in scrape_targets(cfg).items():
        lines += [f"  - job_name: {service}", "    static_configs:"]
        for process, process_port in processes:
            lines += [
                f'      - targets: ["127.0.0.1:{process_port}"]',
                f"        labels: {{service: {service}, process: {process}}}",
            ]
    return "\n".join(lines) + "\n"


class Prometheus(Component):
    name = "prometheus"

    @property
    def port(self) -> int:
        return port(self.cfg, "prometheus")

    @property
    def config_file(self) -> Path:
        return self.home / "prometheus.yml"

    def user(self) -> str:
        return USERS["prometheus"]

    def owned_dirs(self) -> list[tuple[Path, int]]:
        return [(self.home, 0o700)]

    def prepare(self) -> None:
        if shutil.which("prometheus") is None:
            raise StackError(
                "prometheus: not installed (Debian package `prometheus`); run `make install`"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(prometheus_config(self.cfg))
        account = accounts.ensure_user(self.user())
        accounts.own_tree(self.home, account, mode=0o700)

    def command(self) -> list[str]:
        return [
            shutil.which("prometheus") or "/usr/bin/prometheus",
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={self.home / 'data'}",
            "--storage.tsdb.retention.time=2d",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def is_ready(self) -> bool:
        return _http_ok(f"{url(self.cfg, 'prometheus')}/-/ready")
