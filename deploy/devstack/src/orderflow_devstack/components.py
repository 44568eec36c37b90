"""One small class per process of the stack: start / stop / kill / is_ready."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import importlib.util
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any, ClassVar

from orderflow_devstack import accounts, install
from orderflow_devstack.config import (
    KAFKA_PRINCIPALS,
    KAFKA_SASL_MECHANISM,
    SFTP_USER,
    StackConfig,
)
from orderflow_devstack.procs import (
    StackError,
    child_options,
    descendants,
    group_alive,
    kill_group,
    kill_pids,
    port_open,
    read_pid,
    run,
    spawn,
    ssh_fingerprint,
    stop_group,
    tail,
    wait_until,
)


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine to completion in a thread of its own (safe inside a running loop)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # handed back to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")


def http_status(url: str, timeout: float = 2.0) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except (OSError, ValueError):
        return None


def link_or_mkdir(link: Path, target: Path) -> None:
    """Make `link` reach `target`: the same path, or a symlink to it."""
    target.mkdir(parents=True, exist_ok=True)
    if link == target:
        return
    if link.is_symlink():
        if Path(os.readlink(link)) == target:
            return
        link.unlink()
    elif link.exists():
        shutil.rmtree(link)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a password); the owner is the
    owner of its directory (the component's OS user when it has one)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)
    parent = path.parent.stat()
    os.chown(path, parent.st_uid, parent.st_gid)


class Component:
    name: str
    stop_signal: ClassVar[int] = signal.SIGTERM
    #: the process opens its own log by path (nginx's access_log /dev/stdout): its user
    #: must own the file the devstack hands it as stdout
    owns_log: ClassVar[bool] = False
    ready_timeout: ClassVar[float] = 60.0
    stop_timeout: ClassVar[float] = 20.0

    def __init__(self, cfg: StackConfig) -> None:
        self.cfg = cfg

    # --- to override ---------------------------------------------------------------
    def prepare(self) -> None:
        """One-time set-up before the process starts (configs, keys, data dirs)."""

    def command(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str] | None:
        return None

    def user(self) -> str | None:
        """The OS user the process runs as (None: the devstack's own, root)."""
        return None

    def owned_dirs(self) -> list[tuple[Path, int]]:
        """(directory, mode) the process writes: made over to its user before each start,
        so state left by root (a state dir from before the stack dropped root) still works."""
        return []

    def is_ready(self) -> bool:
        raise NotImplementedError

    @property
    def port(self) -> int:
        return self.cfg.ports[self.name]

    # --- shared behaviour ----------------------------------------------------------
    @property
    def home(self) -> Path:
        """The component's own dir in the state dir (its config, keys and data)."""
        return self.cfg.state_dir / self.name

    @property
    def log_file(self) -> Path:
        return self.cfg.log_file(self.name)

    @property
    def pid_file(self) -> Path:
        return self.cfg.pid_file(self.name)

    def pid(self) -> int | None:
        pid = read_pid(self.pid_file)
        if pid is not None and group_alive(pid):
            return pid
        return None

    def is_running(self) -> bool:
        return self.pid() is not None

    def start(self, *, wait: bool = True) -> None:
        """Start unless running (then leave it alone); optionally wait until ready."""
        if not self.is_running():
            if not self._port_released():
                raise StackError(
                    f"{self.name}: port {self.port} is already in use by another process "
                    f"(see `ss -ltnp 'sport = :{self.port}'`)"
                )
            self.prepare()
            env = self.env()
            user = self.user()
            if user is not None:
                account = accounts.ensure_user(user)
                accounts.require_reachable(
                    [self.cfg.repo_root / "x", *(d / "x" for d, _ in self.owned_dirs())],
                    account,
                    who=self.name,
                    fix="Keep the repository and ORDERFLOW_STATE_DIR under directories "
                    "every user may traverse (e.g. /srv, /opt or /tmp).",
                )
                for directory, mode in self.owned_dirs():
                    accounts.own_tree(directory, account, mode=mode)
                if self.owns_log:
                    accounts.own_file(self.log_file, account)
                env = {**(env or {}), **accounts.user_env(account)}
            spawn(
                self.command(),
                log_file=self.log_file,
                pid_file=self.pid_file,
                env=env,
                cwd=self.cfg.repo_root,
                user=user,
            )
        if wait:
            self.wait_ready()

    def _port_released(self, timeout: float = 10.0) -> bool:
        """True once nothing listens on the port (a process just killed may still be
        closing it)."""
        deadline = time.monotonic() + timeout
        while port_open(self.port):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True

    def wait_ready(self) -> None:
        wait_until(
            self.is_ready,
            timeout=self.ready_timeout,
            what=f"{self.name} (log {self.log_file})",
            interval=0.2,
            failed=self._died,
        )

    def _died(self) -> str | None:
        if self.is_running():
            return None
        return f"process exited; last lines of {self.log_file}:\n{tail(self.log_file)}"

    def stop(self) -> None:
        pid = read_pid(self.pid_file)
        if pid is not None:
            stop_group(pid, sig=self.stop_signal, timeout=self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)

    def kill(self) -> None:
        """SIGKILL the whole process group (fault injection)."""
        pid = read_pid(self.pid_file)
        if pid is not None:
            kill_group(pid)
        self.pid_file.unlink(missing_ok=True)

    def restart(self) -> None:
        self.stop()
        self.start(wait=True)

    def status(self) -> str:
        pid = self.pid()
        if pid is None:
            return "stopped"
        return f"ready (pid {pid})" if self.is_ready() else f"starting (pid {pid})"


class Postgres(Component):
    name = "postgres"
    stop_signal = signal.SIGINT  # fast shutdown
    ready_timeout = 60.0

    @property
    def base(self) -> Path:
        return self.cfg.system_dir / "postgres"

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        return self.base / "run"

    def user(self) -> str:
        return "postgres"

    def _bin(self, tool: str) -> str:
        found = install.postgres_bin(tool)
        if found is None:
            raise StackError(f"postgres: `{tool}` not found; run `make install`")
        return found

    def prepare(self) -> None:
        try:
            account = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise StackError("postgres: OS user `postgres` missing; run `make install`") from exc
        link_or_mkdir(self.cfg.state_dir / "postgres", self.base)
        for directory in (self.base, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, account.pw_uid, account.pw_gid)
        self.base.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        if self.data_dir.exists():
            shutil.rmtree(self.data_dir)
        pwfile = self.base / "pwfile"
        pwfile.write_text(self.cfg.role_password("postgres") + "\n")
        os.chown(pwfile, account.pw_uid, account.pw_gid)
        pwfile.chmod(0o600)
        try:
            run(
                [
                    self._bin("initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-locale",
                ],
                user="postgres",
                cwd=self.base,
                log_file=self.log_file,
                what="postgres: initdb",
            )
        finally:
            pwfile.unlink(missing_ok=True)

    def command(self) -> list[str]:
        argv = [
            self._bin("postgres"),
            "-D",
            str(self.data_dir),
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=128MB",
        ]
        if self.cfg.environment == "test":
            # the test stack is thrown away: no need to survive an OS crash
            argv += ["-c", "fsync=off"]
            if os.environ.get("ORDERFLOW_PG_DURABLE_COMMIT") != "1":
                # a commit may then vanish when Postgres is SIGKILLed (WAL not yet
                # written); `make test-nemesis` kills Postgres, so it asks for durable ones
                argv += ["-c", "synchronous_commit=off"]
        return argv

    def is_ready(self) -> bool:
        import psycopg

        try:
            with psycopg.connect(
                self.cfg.superuser_dsn().rsplit("/", 1)[0] + "/postgres", connect_timeout=2
            ) as conn:
                conn.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True


class Redis(Component):
    name = "redis"

    def prepare(self) -> None:
        (self.cfg.state_dir / "redis").mkdir(parents=True, exist_ok=True)

    def user(self) -> str:
        return accounts.RUNTIME_USERS[self.name]

    def owned_dirs(self) -> list[tuple[Path, int]]:
        return [(self.cfg.state_dir / "redis", 0o700)]

    def command(self) -> list[str]:
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        return [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.cfg.state_dir / "redis"),
            "--daemonize",
            "no",
            "--logfile",
            "",
        ]

    def is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False


class Kafka(Component):
    name = "kafka"
    #: KRaft node id; nodes 2.. of a cluster: orderflow_devstack.kafka_cluster.KafkaNode
    node_id = 1
    ready_timeout = 120.0
    stop_timeout = 30.0

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    def user(self) -> str:
        return accounts.RUNTIME_USERS[self.name]

    def owned_dirs(self) -> list[tuple[Path, int]]:
        return [(self.home, 0o700)]

    def _classpath(self) -> str:
        libs = install.kafka_libs_dir()
        if not install.kafka_libs_present():
            raise StackError(f"kafka: jars missing in {libs}; run `make install`")
        return f"{libs}/*"

    def _java(self) -> str:
        java = shutil.which("java")
        if java is None:
            raise StackError("kafka: `java` not found (Java 17 is needed); run `make install`")
        return java

    def _jvm_flags(self) -> list[str]:
        # C1 only starts the broker faster, which the throwaway test stacks want; a stack
        # that keeps running wants C2's code: about a third less broker CPU per request
        quick_start = ["-XX:TieredStopAtLevel=1"] if self.cfg.environment == "test" else []
        return [
            "-Xms128m",
            "-Xmx512m",
            "-XX:+UseG1GC",
            *quick_start,
            "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.home / 'log4j.properties'}",
            "-cp",
            self._classpath(),
        ]

    @property
    def users_file(self) -> Path:
        """The SCRAM users this data dir has (written once they exist in its metadata)."""
        return self.home / "scram-users"

    def prepare(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        props = self.home / "server.properties"
        formatted = (self.data_dir / "meta.properties").exists()
        # a data dir formatted without SCRAM users starts once with PLAIN for admin on
        # the client listener too, so that wait_ready() can add them (see add_users)
        write_private(props, self.server_properties(admin_plain=formatted and self._lacks_users()))
        write_private(self.admin_plain_properties, self.admin_plain_config())
        (self.home / "log4j.properties").write_text(LOG4J_PROPERTIES)
        from orderflow_devstack import kafka_cluster

        if formatted:
            kafka_cluster.check_recorded(self.cfg)
            return
        cluster_id = self._cluster_id()
        scram: list[str] = []
        for principal in KAFKA_PRINCIPALS:
            password = self.cfg.kafka_password(principal)
            user = f"{KAFKA_SASL_MECHANISM}=[name={principal},password={password}]"
            scram += ["--add-scram", user]
        run(
            [
                self._java(),
                *self._jvm_flags(),
                "kafka.tools.StorageTool",
                "format",
                *kafka_cluster.format_args(self.cfg),
                f"--cluster-id={cluster_id}",  # an id may start with "-"
                "-c",
                str(props),
                *scram,
            ],
            log_file=self.log_file,
            what="kafka: storage format",
            timeout=120,
            secrets=self._passwords(),
        )
        self._record_users(KAFKA_PRINCIPALS)
        kafka_cluster.record_brokers(self.cfg)

    def _passwords(self) -> list[str]:
        return [self.cfg.kafka_password(p) for p in KAFKA_PRINCIPALS]

    def missing_users(self) -> list[str]:
        """Principals the data dir has no SCRAM credentials for: a state dir formatted
        before the broker authenticated, or a principal added since."""
        known = set(self.users_file.read_text().split()) if self.users_file.exists() else set()
        return [p for p in KAFKA_PRINCIPALS if p not in known]

    def _lacks_users(self) -> bool:
        return bool(self.missing_users())

    def _record_users(self, principals: Iterable[str]) -> None:
        known = set(self.users_file.read_text().split()) if self.users_file.exists() else set()
        self.users_file.write_text("".join(f"{p}\n" for p in sorted(known | set(principals))))

    def add_users(self, principals: list[str]) -> None:
        """Create SCRAM credentials on the running node, logged in as `admin` with PLAIN
        (a static JAAS user, so it works before any SCRAM user exists). The controller
        listener cannot do it: Kafka 4.0 answers "not yet supported when communicating
        directly with the controller quorum"."""
        for principal in principals:
            password = self.cfg.kafka_password(principal)
            run(
                [
                    self._java(),
                    *self._jvm_flags(),
                    "kafka.admin.ConfigCommand",
                    "--bootstrap-server",
                    self.cfg.kafka_bootstrap,
                    "--command-config",
                    str(self.admin_plain_properties),
                    "--alter",
                    "--entity-type",
                    "users",
                    "--entity-name",
                    principal,
                    "--add-config",
                    f"{KAFKA_SASL_MECHANISM}=[iterations=4096,password={password}]",
                ],
                log_file=self.log_file,
                what=f"kafka: SCRAM credentials of {principal}",
                timeout=120,
                secrets=[password],
            )
        self._record_users(principals)

    def wait_ready(self) -> None:
        missing = self.missing_users()
        if missing and self.is_running():
            wait_until(
                lambda: port_open(self.port),
                timeout=self.ready_timeout,
                what=f"{self.name} listener (log {self.log_file})",
                interval=0.2,
                failed=self._died,
            )
            self.add_users(missing)
            # back to SCRAM only on the client listener
            self.stop()
            self.start(wait=False)
        super().wait_ready()

    @property
    def admin_plain_properties(self) -> Path:
        return self.home / "admin-plain.properties"

    def admin_plain_config(self) -> str:
        password = self.cfg.kafka_password("admin")
        return (
            "security.protocol=SASL_PLAINTEXT\n"
            "sasl.mechanism=PLAIN\n"
            "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
            f'username="admin" password="{password}";\n'
        )

    def _cluster_id(self) -> str:
        id_file = self.home / "cluster.id"
        if not id_file.exists():
            raw = uuid.uuid4().bytes
            id_file.write_text(base64.urlsafe_b64encode(raw).decode().rstrip("="))
        return id_file.read_text().strip()

    def server_properties(self, *, admin_plain: bool = False) -> str:
        values = {
            "broker": self.cfg.ports["kafka"],
            "controller": self.cfg.ports["kafka-controller"],
            "data": self.data_dir,
            "admin_password": self.cfg.kafka_password("admin"),
            "mechanism": KAFKA_SASL_MECHANISM,
        }
        text = KAFKA_PROPERTIES.format(**values)
        if admin_plain:
            text += KAFKA_ADMIN_PLAIN_PROPERTIES.format(**values)
        from orderflow_devstack import kafka_cluster

        return kafka_cluster.cluster_properties(text, self.cfg, self.node_id, self.data_dir)

    def command(self) -> list[str]:
        return [
            self._java(),
            *self._jvm_flags(),
            "kafka.Kafka",
            str(self.home / "server.properties"),
        ]

    def is_ready(self) -> bool:
        if not port_open(self.port):
            return False
        return bool(run_coroutine(kafka_metadata_ok(self.cfg.kafka_options("admin"))))

    @property
    def port(self) -> int:
        return self.cfg.ports["kafka"]


async def kafka_metadata_ok(options: dict[str, Any]) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(**options, request_timeout_ms=3000)
    try:
        await admin.start()
        await admin.list_topics()
    except Exception:
        return False
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
    return True


KAFKA_PROPERTIES = """\
# written by orderflow_devstack: single node, KRaft combined mode
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{controller}
# every client logs in: SCRAM on the client listener (users in the cluster metadata,
# made at format time), PLAIN with a static admin on the controller listener
listeners=SASL://127.0.0.1:{broker},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=SASL://127.0.0.1:{broker}
controller.listener.names=CONTROLLER
inter.broker.listener.name=SASL
listener.security.protocol.map=SASL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT
sasl.mechanism.inter.broker.protocol={mechanism}
sasl.mechanism.controller.protocol=PLAIN
listener.name.sasl.sasl.enabled.mechanisms={mechanism}
listener.name.sasl.scram-sha-512.sasl.jaas.config=\
  org.apache.kafka.common.security.scram.ScramLoginModule required \
  username="admin" password="{admin_password}";
listener.name.controller.sasl.enabled.mechanisms=PLAIN
listener.name.controller.plain.sasl.jaas.config=\
  org.apache.kafka.common.security.plain.PlainLoginModule required \
  username="admin" password="{admin_password}" user_admin="{admin_password}";
# Kafka's own authorizer; nothing is allowed that no ACL allows (orderflow_shared.messaging.acls)
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin
log.dirs={data}
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
# a restarted node must not wait long for its previous registration to expire
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
log.retention.hours=168
log.segment.bytes=67108864
num.network.threads=2
num.io.threads=2
"""

#: appended while SCRAM users are added to a data dir formatted without them
KAFKA_ADMIN_PLAIN_PROPERTIES = """\
# until the SCRAM users exist: admin may also log in with PLAIN on the client listener
listener.name.sasl.sasl.enabled.mechanisms={mechanism},PLAIN
listener.name.sasl.plain.sasl.jaas.config=\\
  org.apache.kafka.common.security.plain.PlainLoginModule required \\
  username="admin" password="{admin_password}" user_admin="{admin_password}";
"""

LOG4J_PROPERTIES = """\
# written by orderflow_devstack: everything to stdout, which is the component's log file
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.controller=INFO
log4j.logger.org.apache.kafka.controller=INFO
"""


class Sftp(Component):
    name = "sftp"

    @property
    def chroot(self) -> Path:
        return self.cfg.system_dir / "dropzone"

    @property
    def authorized_keys(self) -> Path:
        return self.cfg.system_dir / "sftp-auth" / "authorized_keys"

    @property
    def host_key(self) -> Path:
        return self.home / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        return self.home / "client_ed25519"

    def prepare(self) -> None:
        install.ensure_sftp_user()
        account = pwd.getpwnam(SFTP_USER)
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        # chroot root: root-owned 0755 all the way up; inbox/ writable by the user
        link_or_mkdir(self.cfg.dropzone_dir, self.chroot)
        os.chown(self.chroot, 0, 0)
        self.chroot.chmod(0o755)
        inbox = self.chroot / "inbox"
        inbox.mkdir(exist_ok=True)
        os.chown(inbox, account.pw_uid, account.pw_gid)
        inbox.chmod(0o755)
        for key in (self.host_key, self.client_key):
            if not key.exists():
                run(
                    [
                        "ssh-keygen",
                        "-q",
                        "-t",
                        "ed25519",
                        "-N",
                        "",
                        "-C",
                        "orderflow-devstack",
                        "-f",
                        str(key),
                    ],
                    what=f"sftp: ssh-keygen {key.name}",
                )
        self.authorized_keys.parent.mkdir(parents=True, exist_ok=True)
        self.authorized_keys.parent.chmod(0o755)
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text().strip() + "\n")
        self.authorized_keys.chmod(0o644)
        (self.home / "sshd_config").write_text(self.sshd_config())

    def stop(self) -> None:
        """sshd's per-connection processes leave its process group (setsid): an outage
        must end the open sessions too, or clients keep uploading over them."""
        sessions = self._sessions()
        super().stop()
        kill_pids(sessions)

    def kill(self) -> None:
        sessions = self._sessions()
        super().kill()
        kill_pids(sessions)

    def _sessions(self) -> list[int]:
        pid = read_pid(self.pid_file)
        return descendants(pid) if pid is not None else []

    def sshd_config(self) -> str:
        return SSHD_CONFIG.format(
            port=self.port,
            host_key=self.host_key,
            authorized_keys=self.authorized_keys,
            user=SFTP_USER,
            chroot=self.chroot,
        )

    def command(self) -> list[str]:
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        return [sshd, "-D", "-e", "-f", str(self.home / "sshd_config")]

    def is_ready(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                return sock.recv(8).startswith(b"SSH-")
        except OSError:
            return False

    def host_key_fingerprint(self) -> str:
        return ssh_fingerprint(Path(f"{self.host_key}.pub").read_text(), "sftp")

    def describe(self) -> dict[str, Any]:
        if not self.host_key.exists():
            return {}
        host_pub = Path(f"{self.host_key}.pub").read_text().split()
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "username": SFTP_USER,
            "remote_directory": "/inbox",
            "private_key_path": str(self.client_key),
            "public_key_path": f"{self.client_key}.pub",
            "host_key_fingerprint": self.host_key_fingerprint(),
            "known_hosts_line": f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}",
            "chroot_dir": str(self.chroot),
        }


SSHD_CONFIG = """\
# written by orderflow_devstack: the SFTP dropzone (key auth only, chrooted)
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile none
UsePAM no
StrictModes no
PermitRootLogin no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitEmptyPasswords no
AuthenticationMethods publickey
AuthorizedKeysFile {authorized_keys}
AllowUsers {user}
MaxStartups 50:30:200
LogLevel INFO
Subsystem sftp internal-sftp

Match User {user}
    ChrootDirectory {chroot}
    ForceCommand internal-sftp
    AllowTcpForwarding no
    AllowAgentForwarding no
    X11Forwarding no
    PermitTTY no
"""


class Gateway(Component):
    name = "gateway"
    stop_signal = signal.SIGQUIT  # graceful
    owns_log = True  # access_log /dev/stdout reopens the log file as the gateway user

    def prepare(self) -> None:
        for sub in ("", "tmp"):
            (self.home / sub).mkdir(parents=True, exist_ok=True)
        routes = render_template(
            (self.cfg.repo_root / "deploy" / "nginx" / "orderflow.conf.template").read_text(),
            {
                "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
                "DRAFT_API_ADDR": f"127.0.0.1:{self.cfg.ports['draft-api']}",
                "EXPORT_SERVICE_ADDR": f"127.0.0.1:{self.cfg.ports['export-service']}",
                "AUDIT_SERVICE_ADDR": f"127.0.0.1:{self.cfg.ports['audit-service']}",
            },
        )
        (self.home / "orderflow.conf").write_text(routes)
        main = render_template(
            (self.cfg.repo_root / "deploy" / "nginx" / "nginx.local.conf.template").read_text(),
            {"STATE": str(self.home), "MIME_TYPES": "/etc/nginx/mime.types"},
        )
        (self.home / "nginx.conf").write_text(main)
        # nginx runs unprivileged as a whole (master too): test the config as that user,
        # who must own its temp dirs; stdout (its access log) is a file it may reopen
        accounts.own_tree(self.home, accounts.ensure_user(self.user()), mode=0o755)
        check = subprocess.run(
            [*self.command()[:1], "-t", "-q", *self.command()[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
            **child_options(None, self.home, self.user()),
        )
        if check.returncode != 0:
            raise StackError(f"gateway: nginx -t failed (exit {check.returncode}):\n{check.stderr}")

    def user(self) -> str:
        return accounts.RUNTIME_USERS[self.name]

    def owned_dirs(self) -> list[tuple[Path, int]]:
        return [(self.home, 0o755)]

    def _nginx(self) -> str:
        return shutil.which("nginx") or "/usr/sbin/nginx"

    def command(self) -> list[str]:
        return [
            self._nginx(),
            "-e",
            "stderr",
            "-p",
            str(self.home),
            "-c",
            str(self.home / "nginx.conf"),
        ]

    def is_ready(self) -> bool:
        return http_status(f"http://127.0.0.1:{self.port}/_gateway/healthz") == 200


_PLACEHOLDER = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)\}")


def render_template(text: str, values: dict[str, str]) -> str:
    """Replace ${NAME} placeholders (the nginx image's envsubst syntax); nginx's own
    `$variables` have no braces and stay as they are."""

    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in values:
            raise StackError(f"template placeholder ${{{key}}} has no value")
        return values[key]

    return _PLACEHOLDER.sub(replace, text)


class Service(Component):
    """One process of a service: its HTTP API (`serve`), or a background role given as
    `process` (the component's name) and `role` (its command)."""

    package: ClassVar[str]
    service: ClassVar[str]
    ready_timeout = 90.0

    def __init__(self, cfg: StackConfig, process: str | None = None, role: str = "serve") -> None:
        super().__init__(cfg)
        self.name = process or self.service
        self.role = role

    def available(self) -> bool:
        return importlib.util.find_spec(f"{self.package}.__main__") is not None

    def _check_available(self) -> None:
        if not self.available():
            raise StackError(
                f"{self.name}: `python -m {self.package}` does not exist yet "
                f"(no {self.package}/__main__.py); the service cannot be migrated or served"
            )

    def env(self) -> dict[str, str]:
        return self.cfg.service_env(self.service, self.name)

    def user(self) -> str:
        return accounts.RUNTIME_USERS[self.service]

    def python(self) -> str:
        """The interpreter the service's user can run (see accounts.service_python)."""
        account = accounts.ensure_user(self.user())
        return accounts.service_python(self.cfg.repo_root, self.cfg.state_dir, account)

    def migrate(self) -> None:
        self._check_available()
        account = accounts.ensure_user(self.user())
        run(
            [self.python(), "-m", self.package, "migrate"],
            env={**self.env(), **accounts.user_env(account)},
            cwd=self.cfg.repo_root,
            user=self.user(),
            log_file=self.log_file,
            what=f"{self.service}: migrate (log {self.log_file})",
            timeout=180,
        )

    def prepare(self) -> None:
        self._check_available()

    def command(self) -> list[str]:
        return [self.python(), "-m", self.package, self.role]

    def is_ready(self) -> bool:
        return http_status(f"http://127.0.0.1:{self.port}/readyz") == 200


class DraftApi(Service):
    service = "draft-api"
    package = "draft_api"


class ExportService(Service):
    service = "export-service"
    package = "export_service"

    def owned_dirs(self) -> list[tuple[Path, int]]:
        """Its artifact store, and the local dropzone roots the stack itself keeps (its
        only writable places; the SFTP inbox belongs to the sftp user)."""
        owned = [(self.cfg.storage_dir, 0o750)]
        roots = self.env().get("EXPORT_LOCAL_DROPZONE_ROOTS", "")
        for root in (Path(item.strip()) for item in roots.split(",") if item.strip()):
            inside = root.is_relative_to(self.cfg.state_dir) or root.is_relative_to(
                self.cfg.system_dir
            )
            sftp_side = root.is_relative_to(self.cfg.dropzone_dir) or root.is_relative_to(
                self.cfg.system_dir / "dropzone"
            )
            if inside and not sftp_side and root not in (self.cfg.state_dir, self.cfg.system_dir):
                owned.append((root, 0o755))
        return owned


class AuditService(Service):
    service = "audit-service"
    package = "audit_service"

    def owned_dirs(self) -> list[tuple[Path, int]]:
        """Its retention archive (AUDIT_ARCHIVE_DIR), the only place it writes."""
        return [(self.cfg.audit_archive_dir, 0o700)]


SERVICE_COMPONENTS: dict[str, type[Service]] = {
    cls.service: cls for cls in (DraftApi, ExportService, AuditService)
}
