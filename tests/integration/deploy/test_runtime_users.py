"""Nothing of the running stack is root but sshd, and export-service writes only its
own storage: checked on the live processes (/proc) and with the services' own uids
(`test -w` run as that uid: the kernel's answer, without writing anything)."""

from __future__ import annotations

import pwd
import subprocess
from pathlib import Path

import pytest
from orderflow_devstack.accounts import RUNTIME_USERS
from orderflow_devstack.procs import descendants, read_pid
from orderflow_devstack.pytest_plugin import StackHandle

SERVICES = ("draft-api", "export-service", "audit-service")


def status_fields(pid: int) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.split()
    return fields


def family(stack: StackHandle, component: str) -> list[int]:
    """Every process of a component: for a service, each of its role processes (HTTP
    API, relay, consumer, workers, ingest) with their children."""
    names = stack.processes_of(component) if component in SERVICES else [component]
    pids: list[int] = []
    for name in names:
        pid = read_pid(stack.state_dir / "pids" / f"{name}.pid")
        assert pid is not None, f"{name}: no pid file"
        pids += [pid, *descendants(pid)]
    return pids


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
    expected = pwd.getpwnam(RUNTIME_USERS[component])
    assert expected.pw_uid != 0
    pids = family(stack, component)
    if component in SERVICES:
        assert len(pids) >= len(stack.processes_of(component)) >= 2, "a process per role"
    if component == "gateway":
        assert len(pids) >= 2, "nginx master and worker"
    for pid in pids:
        fields = status_fields(pid)
        # real, effective, saved and filesystem ids: none of them root
        assert fields["Uid"] == [str(expected.pw_uid)] * 4, (component, pid, fields["Uid"])
        assert fields["Gid"] == [str(expected.pw_gid)] * 4, (component, pid, fields["Gid"])
        assert fields["Groups"] == [] or fields["Groups"] == [str(expected.pw_gid)]
        assert int(fields["CapEff"][0], 16) == 0, (component, pid, "has capabilities")


def test_postgres_runs_as_postgres_and_each_service_has_a_uid_of_its_own(
    stack: StackHandle,
) -> None:
    postgres = pwd.getpwnam("postgres").pw_uid
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
        stack.state_dir / "kafka",
        stack.state_dir / "redis",
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
    kafka = pwd.getpwnam(RUNTIME_USERS["kafka"]).pw_uid
    assert {p.stat().st_uid for p in (stack.state_dir / "kafka").rglob("*")} == {kafka}
    redis = pwd.getpwnam(RUNTIME_USERS["redis"]).pw_uid
    assert (stack.state_dir / "redis").stat().st_uid == redis
    assert (stack.state_dir / "secrets.json").stat().st_uid == 0
    assert (stack.state_dir / "secrets.json").stat().st_mode & 0o077 == 0
