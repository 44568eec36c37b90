"""The test stack's infrastructure in containers: `ORDERFLOW_TEST_INFRA=containers`.

Postgres, Redis, Kafka and the SFTP dropzone then run as containers that testcontainers
(PyPI `testcontainers`) starts from the images `make images` built
(localhost/orderflow/<name>:dev, IMAGE_PREFIX/IMAGE_TAG), through any Docker-compatible
API: Docker, or `podman system service` (DOCKER_HOST=unix:///run/podman/podman.sock,
TESTCONTAINERS_RYUK_DISABLED=true: no registry for the reaper image). Each listens on
the port the devstack's process would (the test offset's ports) with the stack's
generated secrets, so everything else (database bootstrap, topics, ACLs, services,
fixtures, kill/restart in fault tests) works unchanged: the components below replace
the process-based ones and map start/stop/kill to the container.

The containers are named orderflow-test-<offset>-<component>; `remove_all` deletes
them (a fresh session, the session's end).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from orderflow_devstack import components as c
from orderflow_devstack.config import KAFKA_PRINCIPALS, StackConfig, find_repo_root
from orderflow_devstack.procs import StackError

MODE_ENV = "ORDERFLOW_TEST_INFRA"
NAMES = ("postgres", "redis", "kafka", "sftp")


def enabled() -> bool:
    return os.environ.get(MODE_ENV, "").strip() == "containers"


def image(name: str) -> str:
    prefix = os.environ.get("IMAGE_PREFIX", "localhost/orderflow")
    return f"{prefix}/{name}:{os.environ.get('IMAGE_TAG', 'dev')}"


def container_name(cfg: StackConfig, name: str) -> str:
    return f"orderflow-test-{cfg.port_offset}-{name}"


def _client() -> Any:
    import docker

    return docker.from_env()


class _InContainer:
    """Start/stop/kill/is_running of a component as one container (kept across a
    stop or kill, so data survives a restart as it does for the processes)."""

    cfg: StackConfig
    name: str
    stop_timeout: float

    def container_spec(self) -> Any:
        raise NotImplementedError

    def prepare_host(self) -> None:
        """What the host must have before the container starts (keys, directories)."""

    def _container(self) -> Any | None:
        import docker.errors

        try:
            return _client().containers.get(container_name(self.cfg, self.name))
        except docker.errors.NotFound:
            return None

    def is_running(self) -> bool:
        container = self._container()
        if container is None:
            return False
        return bool(container.status == "running")

    def pid(self) -> int | None:
        container = self._container()
        if container is None or container.status != "running":
            return None
        return int(container.attrs["State"]["Pid"]) or None

    def start(self, *, wait: bool = True) -> None:
        container = self._container()
        if container is None:
            self.prepare_host()
            spec = self.container_spec().with_name(container_name(self.cfg, self.name))
            spec.start()
        elif container.status != "running":
            container.start()
        if wait:
            self.wait_ready()  # type: ignore[attr-defined]

    def _died(self) -> str | None:
        container = self._container()
        if container is not None and container.status == "running":
            return None
        logs = container.logs(tail=30).decode(errors="replace") if container else ""
        return f"container {container_name(self.cfg, self.name)} is not running:\n{logs}"

    def stop(self) -> None:
        container = self._container()
        if container is not None and container.status == "running":
            container.stop(timeout=int(self.stop_timeout))

    def kill(self) -> None:
        container = self._container()
        if container is not None and container.status == "running":
            container.kill(signal="SIGKILL")
            deadline = time.monotonic() + 20
            while container.status == "running" and time.monotonic() < deadline:
                time.sleep(0.1)
                container.reload()

    def status(self) -> str:
        if not self.is_running():
            return "stopped"
        state = "ready" if self.is_ready() else "starting"  # type: ignore[attr-defined]
        return f"{state} (container {container_name(self.cfg, self.name)})"


def _spec(name: str, port: int, container_port: int) -> Any:
    from testcontainers.core.container import DockerContainer

    spec = DockerContainer(image(name))
    # published on the loopback only, where the devstack's own processes listen
    # (with_bind_ports publishes on every interface; docker-py's ports also take a
    # (host ip, port) pair, which testcontainers' annotation does not name)
    ports: dict[str, Any] = spec.ports
    ports[f"{container_port}/tcp"] = ("127.0.0.1", port)
    return spec


class ContainerPostgres(_InContainer, c.Postgres):
    def container_spec(self) -> Any:
        return _spec("postgres", self.port, 5432).with_env(
            "POSTGRES_PASSWORD", self.cfg.role_password("postgres")
        )


class ContainerRedis(_InContainer, c.Redis):
    def container_spec(self) -> Any:
        return _spec("redis", self.port, 6379)


class ContainerKafka(_InContainer, c.Kafka):
    """The compose broker (deploy/kafka/compose-entrypoint.sh: SCRAM users, ACL
    authorizer) with its host listener on the stack's Kafka port."""

    def container_spec(self) -> Any:
        script = find_repo_root() / "deploy" / "kafka" / "compose-entrypoint.sh"
        spec = (
            _spec("kafka", self.port, 19092)
            .with_volume_mapping(str(script), "/opt/orderflow/compose-entrypoint.sh", "ro")
            .with_env("KAFKA_EXTERNAL_ADVERTISED", f"127.0.0.1:{self.port}")
            .with_kwargs(
                hostname="kafka",
                entrypoint=["/bin/bash", "/opt/orderflow/compose-entrypoint.sh"],
            )
        )
        for principal in KAFKA_PRINCIPALS:
            var = f"KAFKA_{principal.upper().replace('-', '_')}_PASSWORD"
            spec = spec.with_env(var, self.cfg.kafka_password(principal))
        return spec

    def wait_ready(self) -> None:
        # the users exist from the container's format: no PLAIN bootstrap step
        c.Component.wait_ready(self)


class ContainerSftp(_InContainer, c.Sftp):
    """The compose dropzone image with the devstack's keys (so sftp_info() and the
    fixtures hold) and its inbox bind-mounted onto the stack's dropzone directory."""

    def prepare_host(self) -> None:
        self.prepare()

    def container_spec(self) -> Any:
        public = Path(f"{self.client_key}.pub").read_text().strip()
        return (
            _spec("sftp", self.port, 2222)
            .with_volume_mapping(str(self.home), "/etc/ssh/orderflow/keys", "rw")
            .with_volume_mapping(str(self.chroot / "inbox"), "/dropzone/inbox", "rw")
            .with_env("SFTP_AUTHORIZED_KEY", public)
        )


def components(cfg: StackConfig) -> dict[str, c.Component]:
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        raise StackError(
            f"{MODE_ENV}=containers needs a Docker-compatible API: Docker, or "
            "`podman system service --time=0 unix:///run/podman/podman.sock` with "
            "DOCKER_HOST=unix:///run/podman/podman.sock (see README)"
        )
    brokers = os.environ.get("KAFKA_BROKERS", "").strip()
    if brokers not in ("", "1"):
        raise StackError(f"{MODE_ENV}=containers runs one Kafka broker (KAFKA_BROKERS={brokers})")
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")  # no registry for it
    return {
        "postgres": ContainerPostgres(cfg),
        "redis": ContainerRedis(cfg),
        "kafka": ContainerKafka(cfg),
        "sftp": ContainerSftp(cfg),
    }


def container_of(cfg: StackConfig, name: str) -> Any | None:
    """The container (a docker-API Container) that component `name` runs as in this
    mode; None when it runs as a process of the host here."""
    if not enabled() or name not in NAMES:
        return None
    import docker.errors

    try:
        return _client().containers.get(container_name(cfg, name))
    except docker.errors.NotFound:
        raise StackError(f"{name}: container {container_name(cfg, name)} not found") from None


def remove_all(cfg: StackConfig) -> None:
    import docker.errors

    client = _client()
    for name in NAMES:
        try:
            client.containers.get(container_name(cfg, name)).remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
