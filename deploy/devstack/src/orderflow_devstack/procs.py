"""Background processes in their own session, with pid files, logs and deadlines."""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any


class StackError(RuntimeError):
    """A component failed to start or become ready; the message says which and why."""


def wait_until(
    condition: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    failed: Callable[[], str | None] | None = None,
) -> None:
    """Poll `condition` until it holds or the deadline passes.

    `failed` may return a reason to give up early (e.g. the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return
        if failed is not None:
            reason = failed()
            if reason:
                raise StackError(f"{what}: {reason}")
        if time.monotonic() > deadline:
            raise StackError(f"{what}: not ready after {timeout:.0f}s")
        time.sleep(interval)


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def tail(path: Path, lines: int = 25) -> str:
    if not path.exists():
        return f"(no log at {path})"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status if the process is our own child (a zombie else)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def group_alive(pgid: int) -> bool:
    _reap(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _has_live_member(pgid)


def _has_live_member(pgid: int) -> bool:
    """killpg(0) succeeds on zombies; look for a member that is not one."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        state, member_pgid = fields[0], int(fields[2])
        if member_pgid != pgid:
            continue
        if state != "Z" or _threads_left(entry):
            # a dead thread-group leader shows "Z" while its other threads still
            # exit (and still hold its sockets)
            return True
    return False


def descendants(pid: int) -> list[int]:
    """Every live process below `pid` (children that left its process group too)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def kill_pids(pids: Sequence[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _threads_left(proc_entry: Path) -> bool:
    try:
        return len(list((proc_entry / "task").iterdir())) > 1
    except OSError:
        return False


def child_options(
    env: Mapping[str, str] | None, cwd: Path | None, user: str | None
) -> dict[str, Any]:
    """Popen's options for a child with the devstack's environment plus `env`, in `cwd`,
    as `user` (its primary group, none of root's groups; None: as the devstack itself)."""
    options: dict[str, Any] = {
        "env": {**os.environ, **(env or {})},
        "cwd": str(cwd) if cwd else None,
    }
    if user is not None:
        account = pwd.getpwnam(user)
        options.update(user=account.pw_uid, group=account.pw_gid, extra_groups=[])
    return options


def spawn(
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
) -> int:
    """Start `argv` in a new session (its own process group) with output to `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%dT%H:%M:%S')} start: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **child_options(env, cwd, user),
        )
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def stop_group(pgid: int, *, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
    """Ask the process group to stop; SIGKILL it when the deadline passes."""
    if not group_alive(pgid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    kill_group(pgid)


def kill_group(pgid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    user: str | None = None,
    input_text: str | None = None,
    log_file: Path | None = None,
    what: str | None = None,
    timeout: float = 300,
    secrets: Sequence[str] = (),
) -> str:
    """Run a command to completion; raise StackError with its output when it fails.
    `secrets` (passwords on the command line) are masked in the log and the error."""
    result: subprocess.CompletedProcess[str] = subprocess.run(
        list(argv),
        **child_options(env, cwd, user),
        input=input_text,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = _mask((result.stdout or "") + (result.stderr or ""), secrets)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        line = _mask(" ".join(argv), secrets)
        with log_file.open("a") as log:
            log.write(f"\n=== run: {line} (exit {result.returncode})\n{output}")
    if result.returncode != 0:
        label = what or _mask(" ".join(argv), secrets)
        last = "\n".join(output.strip().splitlines()[-25:])
        raise StackError(f"{label} failed (exit {result.returncode}):\n{last}")
    return result.stdout


def ssh_fingerprint(public_keys: str, what: str) -> str:
    """The `SHA256:...` fingerprint (ssh-keygen's) of the first OpenSSH public key line
    of `public_keys`; `what` names the key's owner in the error."""
    listed = run(["ssh-keygen", "-l", "-E", "sha256", "-f", "-"], input_text=public_keys, what=what)
    match = re.search(r"SHA256:\S+", listed)
    if match is None:
        raise StackError(f"{what}: cannot read the host key fingerprint from {listed!r}")
    return match.group(0)


def _mask(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "[REDACTED]")
    return text
