"""Process groups: a component's children live and die with it."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import pytest
from orderflow_devstack.procs import (
    StackError,
    group_alive,
    kill_group,
    read_pid,
    run,
    spawn,
    ssh_fingerprint,
    stop_group,
    wait_until,
)


def _spawn_family(tmp_path: Path, script: str) -> int:
    return spawn(
        ["sh", "-c", script],
        log_file=tmp_path / "logs" / "x.log",
        pid_file=tmp_path / "pids" / "x.pid",
    )


def test_spawn_writes_the_pid_file_and_logs(tmp_path: Path) -> None:
    pid = _spawn_family(tmp_path, "echo hello; sleep 30")
    try:
        assert read_pid(tmp_path / "pids" / "x.pid") == pid
        wait_until(
            lambda: "hello" in (tmp_path / "logs" / "x.log").read_text(),
            timeout=10,
            what="log line",
        )
    finally:
        kill_group(pid)


def test_kill_takes_the_children_with_it(tmp_path: Path) -> None:
    pid = _spawn_family(tmp_path, "sleep 30 & sleep 30 & wait")
    assert group_alive(pid)
    kill_group(pid)
    assert not group_alive(pid)


def test_stop_escalates_to_sigkill_when_a_process_ignores_the_signal(tmp_path: Path) -> None:
    pid = _spawn_family(tmp_path, "trap '' TERM; sleep 30 & wait")
    wait_until(lambda: group_alive(pid), timeout=5, what="started")
    stop_group(pid, sig=signal.SIGTERM, timeout=0.5)
    assert not group_alive(pid)


def test_wait_until_gives_up_early_with_the_reason() -> None:
    with pytest.raises(StackError, match="draft-api: process exited"):
        wait_until(lambda: False, timeout=30, what="draft-api", failed=lambda: "process exited")
    with pytest.raises(StackError, match="not ready after 0s"):
        wait_until(lambda: False, timeout=0.2, what="redis", interval=0.05)


def test_run_gives_the_child_the_devstack_environment_plus_its_own(tmp_path: Path) -> None:
    out = run(["sh", "-c", 'echo "$EXTRA:$PWD"'], env={"EXTRA": "given"}, cwd=tmp_path)
    assert out.strip() == f"given:{tmp_path}"
    with pytest.raises(StackError, match="failing step failed"):
        run(["sh", "-c", "exit 3"], what="failing step")


def test_ssh_fingerprint_is_ssh_keygens_sha256_of_the_key(tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    listed = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", f"{key}.pub"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    fingerprint = ssh_fingerprint(Path(f"{key}.pub").read_text(), "test")
    assert fingerprint.startswith("SHA256:") and fingerprint in listed
    with pytest.raises(StackError, match="test"):
        ssh_fingerprint("not a key\n", "test")
