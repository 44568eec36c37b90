"""Nothing of the running stack is root but sshd, and export-service writes only its
own storage: checked on the live processes (/proc) and with the services' own uids
(`test -w` run as that uid: the kernel's answer, without writing anything).

With ORDERFLOW_TEST_INFRA=containers, Postgres, Redis and Kafka are containers instead
of host processes: the same facts hold for them, checked on the container's processes
as the host's kernel sees them (/proc of the container's main process and its
children), against the user the container is configured to run as (never root), and on
the files inside the container (/proc/<pid>/root)."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path
from typing import Any

import pytest
from orderflow_devstack import container_infra
from orderflow_devstack.accounts import RUNTIME_USERS
from orderflow_devstack.procs import descendants, read_pid
from orderflow_devstack.pytest_plugin import StackHandle

SERVICES = ("draft-api", "export-service", "audit-service")
# where the images keep their data (deploy/docker/kafka.Dockerfile's VOLUME, redis's WORKDIR)
KAFKA_DATA_IN_CONTAINER = "/var/lib/kafka/data"
REDIS_DIR_IN_CONTAINER = "/data"


def status_fields(pid: int) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def container(stack: StackHandle, component: str) -> Any | None:
    """The component's container (ORDERFLOW_TEST_INFRA=containers), None for a process."""
    return container_infra.container_of(stack._stack.cfg, component)


def main_pid(stack: StackHandle, component: str) -> int:
    pid = stack.pid(component)
    assert pid is not None, f"{component}: not running"
    return pid


def family(stack: StackHandle, component: str) -> list[int]:
    """Every process of a component: for a service, each of its role processes (HTTP
    API, relay, consumer, workers, ingest) with their children; for a container, its
    main process and every process under it."""
    if container(stack, component) is not None:
        pid = main_pid(stack, component)
        return [pid, *descendants(pid)]
    names = stack.processes_of(component) if component in SERVICES else [component]
    pids: list[int] = []
    for name in names:
        pid = read_pid(stack.state_dir / "pids" / f"{name}.pid")
        assert pid is not None, f"{name}: no pid file"
        pids += [pid, *descendants(pid)]
    return pids


def in_container(box: Any, *argv: str) -> str:
    """Run `argv` in the container as its configured user; its output."""
    code, output = box.exec_run(list(argv))
    text = output.decode(errors="replace").strip()
    assert code == 0, (box.name, argv, text)
    return str(text)


def host_id(pid: int, kind: str, inner: int) -> int:
    """A uid or gid (kind) inside the namespace of `pid` as the host sees it (the
    identity where the engine maps no user namespace)."""
    for line in Path(f"/proc/{pid}/{kind}_map").read_text().splitlines():
        inside, outside, count = (int(value) for value in line.split())
        if inside <= inner < inside + count:
            return outside + inner - inside
    raise AssertionError(f"{kind} {inner} is not mapped in the namespace of pid {pid}")


def account(stack: StackHandle, component: str, user: str | None = None) -> tuple[int, int]:
    """(uid, gid) that every process of the component must have, as the host sees them:
    its host account (`user`, else its RUNTIME_USERS entry), or for a container the
    user the container is configured to run as, which must name someone but root."""
    box = container(stack, component)
    if box is None:
        entry = pwd.getpwnam(user or RUNTIME_USERS[component])
        return entry.pw_uid, entry.pw_gid
    configured = str(box.attrs["Config"]["User"] or "")
    assert configured.split(":")[0] not in ("", "root", "0"), (component, configured)
    if user is not None:
        assert in_container(box, "id", "-un") == user, (component, configured)
    pid = main_pid(stack, component)
    uid = host_id(pid, "uid", int(in_container(box, "id", "-u")))
    gid = host_id(pid, "gid", int(in_container(box, "id", "-g")))
    return uid, gid


def data_dir(stack: StackHandle, component: str, on_host: Path, in_the_container: str) -> Path:
    """Where a component writes: its directory of the state dir, or for a container
    that directory inside it (through the main process's root)."""
    if container(stack, component) is None:
        return on_host
    return Path(f"/proc/{main_pid(stack, component)}/root") / in_the_container.lstrip("/")


def as_uid(uid: int, *argv: str) -> bool:
    """Run a harmless probe (`test -w PATH`, `test -r PATH`) as `uid`; True if it holds."""
    account = pwd.getpwuid(uid)
    probe = subprocess.run(
        list(argv), user=account.pw_uid, group=account.pw_gid, extra_groups=[], check=False
    )
    return probe.returncode == 0


def uid_of(stack: StackHandle, component: str) -> int:
    uids = {int(status_fields(pid)["Uid"][0]) for pid in family(stack, component)}
    assert len(uids) == 1, f"{component}: processes of several users {uids}"
    return uids.pop()


@pytest.mark.parametrize("component", list(RUNTIME_USERS))
def test_every_process_of_a_component_runs_as_its_own_unprivileged_user(
    stack: StackHandle, component: str
) -> None:
    uid, gid = account(stack, component)
    assert uid != 0
    pids = family(stack, component)
    if component in SERVICES:
        assert len(pids) >= len(stack.processes_of(component)) >= 2, "a process per role"
    if component == "gateway":
        assert len(pids) >= 2, "nginx master and worker"
    for pid in pids:
        fields = status_fields(pid)
        # real, effective, saved and filesystem ids: none of them root
        assert fields["Uid"] == [str(uid)] * 4, (component, pid, fields["Uid"])
        assert fields["Gid"] == [str(gid)] * 4, (component, pid, fields["Gid"])
        assert fields["Groups"] == [] or fields["Groups"] == [str(gid)]
        assert int(fields["CapEff"][0], 16) == 0, (component, pid, "has capabilities")


def test_postgres_runs_as_postgres_and_each_service_has_a_uid_of_its_own(
    stack: StackHandle,
) -> None:
    postgres, _ = account(stack, "postgres", user="postgres")
    assert postgres != 0
    assert {int(status_fields(pid)["Uid"][0]) for pid in family(stack, "postgres")} == {postgres}
    uids = {service: uid_of(stack, service) for service in SERVICES}
    assert len(set(uids.values())) == len(SERVICES), uids
    assert 0 not in uids.values()


def test_a_service_cannot_read_another_services_environment(stack: StackHandle) -> None:
    """The environment holds a service's secrets (database password, Kafka credentials,
    the export encryption key): other service users cannot read it."""
    export_pid = family(stack, "export-service")[0]
    for other in ("draft-api", "audit-service", "gateway"):
        assert not as_uid(uid_of(stack, other), "test", "-r", f"/proc/{export_pid}/environ")
    assert as_uid(uid_of(stack, "export-service"), "test", "-r", f"/proc/{export_pid}/environ")


def test_export_service_may_write_its_storage_and_nothing_of_the_host_or_the_stack(
    stack: StackHandle,
) -> None:
    uid = uid_of(stack, "export-service")
    storage = Path(stack.storage_dir)
    assert storage.stat().st_uid == uid
    assert as_uid(uid, "test", "-w", str(storage))
    forbidden = [
        Path("/"),
        Path("/etc"),
        Path("/etc/passwd"),
        Path("/usr/bin"),
        Path("/var/lib"),
        Path("/root"),
        stack.state_dir,
        stack.state_dir / "logs",
        stack.state_dir / "pids",
        data_dir(stack, "kafka", stack.state_dir / "kafka", KAFKA_DATA_IN_CONTAINER),
        data_dir(stack, "redis", stack.state_dir / "redis", REDIS_DIR_IN_CONTAINER),
        stack.state_dir / "gateway",
        stack.inbox_dir,  # the sftp user's: files arrive there only through sshd
        stack.dropzone_dir,
        Path(__file__).resolve().parents[3],  # the repository
    ]
    for path in forbidden:
        assert path.exists(), path
        assert not as_uid(uid, "test", "-w", str(path)), f"export-service may write {path}"
    # the stack's secrets stay root's
    assert not as_uid(uid, "test", "-r", str(stack.state_dir / "secrets.json"))
    assert not as_uid(uid, "test", "-r", str(stack.state_dir / "stack.json"))
    assert not as_uid(uid, "test", "-r", str(stack.sftp_private_key_path))


def test_files_the_stack_writes_belong_to_the_writer(stack: StackHandle) -> None:
    kafka, _ = account(stack, "kafka")
    kafka_dir = data_dir(stack, "kafka", stack.state_dir / "kafka", KAFKA_DATA_IN_CONTAINER)
    assert {p.stat().st_uid for p in kafka_dir.rglob("*")} == {kafka}
    redis, _ = account(stack, "redis")
    redis_dir = data_dir(stack, "redis", stack.state_dir / "redis", REDIS_DIR_IN_CONTAINER)
    assert redis_dir.stat().st_uid == redis
    assert (stack.state_dir / "secrets.json").stat().st_uid == 0
    assert (stack.state_dir / "secrets.json").stat().st_mode & 0o077 == 0
