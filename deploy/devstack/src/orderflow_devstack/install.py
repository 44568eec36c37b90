"""The install step: Debian packages, the Python environment, Kafka jars via Maven.

Everything is skipped when already present, so `make up` and `make test` can run it
every time.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from orderflow_devstack import accounts
from orderflow_devstack.config import SFTP_USER, SYSTEM_BASE, find_repo_root
from orderflow_devstack.procs import StackError, run

#: Keep in sync with deploy/kafka/pom.xml (kafka.version).
KAFKA_VERSION = "4.0.0"

#: executable -> Debian package that provides it
APT_REQUIREMENTS: dict[str, str] = {
    "initdb": "postgresql",
    "psql": "postgresql-client",
    "redis-server": "redis-server",
    "redis-cli": "redis-tools",
    "sshd": "openssh-server",
    "ssh-keygen": "openssh-client",
    "sftp": "openssh-client",
    "nginx": "nginx-light",
    "java": "openjdk-17-jre-headless",
    "mvn": "maven",
    "ss": "iproute2",
    "uuidgen": "uuid-runtime",  # the quickstart makes idempotency keys with it
    "curl": "curl",
    # the docs pages' browser test (Playwright drives Debian's build, never a download)
    "chromium": "chromium",
    # `promtool check`/`test rules` of deploy/prometheus (tests/unit/deploy)
    "promtool": "prometheus",
}


def log(message: str) -> None:
    print(f"[install] {message}", flush=True)


def postgres_bin(tool: str) -> str | None:
    """A Postgres server binary: the newest /usr/lib/postgresql/<v>/bin, else PATH."""
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True, key=_pg_key):
        candidate = Path(directory) / tool
        if candidate.exists():
            return str(candidate)
    return shutil.which(tool)


def _pg_key(path: str) -> int:
    version = Path(path).parent.name
    return int(version) if version.isdigit() else 0


def _have(executable: str) -> bool:
    if executable in ("initdb", "postgres"):
        return postgres_bin(executable) is not None
    return shutil.which(executable) is not None or Path("/usr/sbin", executable).exists()


def missing_apt_packages() -> list[str]:
    missing: list[str] = []
    for executable, package in APT_REQUIREMENTS.items():
        if not _have(executable) and package not in missing:
            missing.append(package)
    return missing


def install_apt_packages() -> None:
    missing = missing_apt_packages()
    if not missing:
        log("Debian packages: all present")
        return
    if shutil.which("apt-get") is None:
        raise StackError(
            f"missing tools ({', '.join(missing)}) and no apt-get: this host is not "
            "Debian/Ubuntu; use `docker compose up` instead (see README)"
        )
    log(f"Debian packages: installing {' '.join(missing)}")
    env = {"DEBIAN_FRONTEND": "noninteractive"}
    policy = Path("/usr/sbin/policy-rc.d")
    placed_policy = False
    if not policy.exists():
        # keep the packages' init scripts from starting system-wide servers on our ports
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        placed_policy = True
    try:
        run(["apt-get", "update", "-q"], env=env, what="apt-get update", timeout=600)
        packages = list(missing)
        try:
            run(
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                env=env,
                what="apt-get install",
                timeout=1200,
            )
        except StackError:
            if "nginx-light" not in packages:
                raise
            packages = ["nginx" if p == "nginx-light" else p for p in packages]
            run(
                ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages],
                env=env,
                what="apt-get install",
                timeout=1200,
            )
    finally:
        if placed_policy:
            policy.unlink(missing_ok=True)


def ensure_sftp_user() -> None:
    accounts.ensure_user(SFTP_USER)
    # a locked password ('!') makes sshd refuse even key auth with UsePAM no
    shadow = subprocess.run(["getent", "shadow", SFTP_USER], capture_output=True, text=True)
    fields = shadow.stdout.split(":")
    if len(fields) > 1 and fields[1] != "*":
        run(["usermod", "-p", "*", SFTP_USER], what=f"usermod {SFTP_USER}")


def _uv_command() -> list[str] | None:
    found = shutil.which("uv")
    if found:
        return [found]
    probe = subprocess.run(["python3", "-m", "uv", "--version"], capture_output=True)
    return ["python3", "-m", "uv"] if probe.returncode == 0 else None


def sync_python(repo_root: Path) -> None:
    uv = _uv_command()
    if uv is None:
        log("uv: not found, installing it with pip")
        base = ["python3", "-m", "pip", "install", "--quiet", "uv"]
        try:
            run(base, what="pip install uv")
        except StackError:
            run([*base, "--break-system-packages"], what="pip install uv")
        uv = _uv_command() or ["python3", "-m", "uv"]
    log("Python environment: uv sync")
    run([*uv, "sync", "--all-packages", "--quiet"], cwd=repo_root, what="uv sync", timeout=900)


def kafka_cache_dir() -> Path:
    """Where Maven puts the jars (in root's home, often closed to other users)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "orderflow" / f"kafka-{KAFKA_VERSION}"


def kafka_runtime_dir() -> Path:
    """A root-owned copy of the jars every user can read: the broker does not run as root."""
    return SYSTEM_BASE / f"kafka-{KAFKA_VERSION}"


def kafka_libs_dir() -> Path:
    return kafka_runtime_dir() / "libs"


def kafka_libs_present() -> bool:
    return (kafka_runtime_dir() / ".complete").exists()


def publish_kafka_libs() -> None:
    """Hard-link (or copy) the cached jars to kafka_runtime_dir(), readable by all."""
    cache, runtime = kafka_cache_dir(), kafka_runtime_dir()
    SYSTEM_BASE.mkdir(parents=True, exist_ok=True)
    SYSTEM_BASE.chmod(0o755)
    with tempfile.TemporaryDirectory(
        dir=SYSTEM_BASE, prefix=".kafka-", ignore_cleanup_errors=True
    ) as tmp:
        staged = Path(tmp) / "libs"
        staged.mkdir()
        for jar in sorted((cache / "libs").iterdir()):
            try:
                os.link(jar, staged / jar.name)
            except OSError:  # another filesystem
                shutil.copy2(jar, staged / jar.name)
            (staged / jar.name).chmod(0o644)
        staged.chmod(0o755)
        Path(tmp).chmod(0o755)
        (Path(tmp) / ".complete").write_text(KAFKA_VERSION + "\n")
        if kafka_libs_present():  # published meanwhile by a stack started side by side
            return
        if runtime.exists():
            shutil.rmtree(runtime)
        Path(tmp).rename(runtime)


def fetch_kafka(repo_root: Path) -> None:
    if kafka_libs_present():
        log(f"Kafka {KAFKA_VERSION}: jars in {kafka_libs_dir()}")
        return
    if (kafka_cache_dir() / ".complete").exists():
        publish_kafka_libs()
        log(f"Kafka {KAFKA_VERSION}: cached jars published to {kafka_libs_dir()}")
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError("Maven (`mvn`) is missing; run `make install`")
    cache = kafka_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    log(f"Kafka {KAFKA_VERSION}: fetching jars with Maven into {cache}")
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        target = Path(tmp) / "libs"
        run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(repo_root / "deploy" / "kafka" / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={target}",
                "-DincludeScope=runtime",
            ],
            what="mvn dependency:copy-dependencies (Kafka jars)",
            timeout=1200,
        )
        if not any(target.glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
            raise StackError(f"Maven ran but no kafka_2.13-{KAFKA_VERSION}.jar in {target}")
        libs = cache / "libs"
        if libs.exists():
            shutil.rmtree(libs)
        target.rename(libs)
    (cache / ".complete").write_text(KAFKA_VERSION + "\n")
    publish_kafka_libs()


def install_all(*, python: bool = True) -> None:
    repo_root = find_repo_root()
    if os.geteuid() != 0:
        raise StackError("the local stack runs system daemons as other users: run it as root")
    install_apt_packages()
    ensure_sftp_user()
    accounts.ensure_runtime_users()
    if python:
        sync_python(repo_root)
    fetch_kafka(repo_root)
    from orderflow_devstack import monitoring  # (imports the components, which import this)

    monitoring.fetch_zipkin()  # `make up MONITORING=1` and the test stack run it
