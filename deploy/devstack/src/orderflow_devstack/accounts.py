"""Who runs what: the OS users of the local stack, what they own, what they can reach.

Nothing of the stack runs as root except sshd (it must chroot and switch to the
dropzone user). Postgres runs as the distribution's `postgres`; every other
component has a system user of its own (no login shell, no home), so one service
cannot read another's environment (its secrets) or write another's files.
"""

from __future__ import annotations

import grp
import os
import pwd
import re
import stat
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from orderflow_devstack.procs import StackError

#: component -> the OS user its processes (and its one-off commands) run as
RUNTIME_USERS: dict[str, str] = {
    "redis": "orderflow-redis",
    "kafka": "orderflow-kafka",
    "gateway": "orderflow-gateway",
    "draft-api": "orderflow-draft-api",
    "export-service": "orderflow-export-service",
    "audit-service": "orderflow-audit-service",
}


def ensure_user(name: str) -> pwd.struct_passwd:
    """The system user `name` (made with useradd when missing; safe to run side by side)."""
    for _attempt in range(10):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode == 0:
            continue
        # 9: made meanwhile by another process; 10: /etc/passwd locked by one
        if result.returncode not in (9, 10):
            raise StackError(f"useradd {name} failed (exit {result.returncode}): {result.stderr}")
        time.sleep(0.2)
    raise StackError(f"useradd {name}: the user still does not exist")


def ensure_runtime_users() -> None:
    for name in RUNTIME_USERS.values():
        ensure_user(name)


def account_of(component: str) -> pwd.struct_passwd:
    return ensure_user(RUNTIME_USERS[component])


def user_env(account: pwd.struct_passwd) -> dict[str, str]:
    """What a process started as `account` must not inherit from root's environment."""
    return {"HOME": account.pw_dir, "USER": account.pw_name, "LOGNAME": account.pw_name}


# --- ownership -----------------------------------------------------------------------
def own_tree(path: Path, account: pwd.struct_passwd, *, mode: int | None = None) -> None:
    """Make `path` (a directory, created when missing) and everything below it belong to
    `account`; state made by root before the stack dropped root is taken over. Symlinks
    are not followed. `mode` is applied to `path` itself."""
    path.mkdir(parents=True, exist_ok=True)
    uid, gid = account.pw_uid, account.pw_gid
    _own(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            _own(Path(root) / name, uid, gid)
    if mode is not None:
        path.chmod(mode)


def own_file(path: Path, account: pwd.struct_passwd) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(exist_ok=True)
    _own(path, account.pw_uid, account.pw_gid)


def _own(path: Path, uid: int, gid: int) -> None:
    """Give `path` to uid:gid. A file that goes while the tree is walked (another
    process of the same service renames or removes its temporary files) needs no owner."""
    try:
        info = path.lstat()
        if (info.st_uid, info.st_gid) != (uid, gid):
            os.lchown(path, uid, gid)
    except FileNotFoundError:
        return


# --- reachability --------------------------------------------------------------------
def _groups(account: pwd.struct_passwd) -> set[int]:
    return {account.pw_gid} | {g.gr_gid for g in grp.getgrall() if account.pw_name in g.gr_mem}


def allows(info: os.stat_result, account: pwd.struct_passwd, want: int) -> bool:
    """Whether the mode bits grant `want` (a mask of 4 = read, 2 = write, 1 = execute)
    to `account` (owner, else group, else others; as the kernel checks, without ACLs)."""
    if account.pw_uid == 0:
        return True
    if info.st_uid == account.pw_uid:
        bits = (info.st_mode >> 6) & 7
    elif info.st_gid in _groups(account):
        bits = (info.st_mode >> 3) & 7
    else:
        bits = info.st_mode & 7
    return bits & want == want


def blocked_at(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to `path` (as written and with symlinks resolved)
    that `account` may not traverse; None when every existing one is open to it (the
    missing rest is made by the devstack, with modes it chooses)."""
    for route in (Path(os.path.abspath(path)), Path(os.path.realpath(path))):
        current = Path("/")
        for part in route.parts[1:-1]:
            current = current / part
            try:
                info = current.stat()
            except FileNotFoundError:
                break
            except OSError:
                return current
            if not stat.S_ISDIR(info.st_mode) or not allows(info, account, 1):
                return current
    return None


def require_reachable(
    paths: Iterable[Path], account: pwd.struct_passwd, *, who: str, fix: str
) -> None:
    for path in paths:
        blocked = blocked_at(path, account)
        while blocked is not None and _grant_traverse(blocked):
            blocked = blocked_at(path, account)
        if blocked is not None:
            mode = stat.filemode(blocked.stat().st_mode) if blocked.exists() else "missing"
            raise StackError(
                f"{who}: OS user {account.pw_name} cannot reach {path}: {blocked} is "
                f"{mode} (owner {_owner_name(blocked)}). {fix}"
            )


def _grant_traverse(directory: Path) -> bool:
    """Let every user pass through (not list) a root-owned directory on the way to the
    repo or the state dir, e.g. a clone under /root (0700): o+x only, said aloud.
    False when that is not possible or would not help (not root's, already o+x)."""
    try:
        info = directory.stat()
    except OSError:
        return False
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != 0 or info.st_mode & stat.S_IXOTH:
        return False
    os.chmod(directory, stat.S_IMODE(info.st_mode) | stat.S_IXOTH)
    print(
        f"[devstack] {directory} was closed to other users: granted traverse (o+x, no "
        "listing) so the services' OS users reach the repository and state dir",
        flush=True,
    )
    return True


def _owner_name(path: Path) -> str:
    try:
        uid = path.stat().st_uid
    except OSError:
        return "?"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


# --- the Python the services run with ------------------------------------------------
_VERSION = re.compile(r"^\s*version(?:_info)?\s*=\s*(\d+)\.(\d+)", re.MULTILINE)
_HOME = re.compile(r"^\s*home\s*=\s*(.+?)\s*$", re.MULTILINE)


def service_python(repo_root: Path, state_dir: Path, account: pwd.struct_passwd) -> str:
    """An interpreter `account` can run that sees the repo's .venv packages.

    The .venv's own interpreter when `account` can reach it. uv and pyenv often keep
    interpreters under /root (mode 0700): then a small venv in the state dir pairs the
    distribution's Python of the same minor version with the .venv's site-packages
    (binary wheels are built per minor version, so they load the same)."""
    venv = repo_root / ".venv"
    python = venv / "bin" / "python"
    config = venv / "pyvenv.cfg"
    if not python.exists() or not config.exists():
        return str(python) if python.exists() else "python3"
    text = config.read_text()
    version, home = _VERSION.search(text), _HOME.search(text)
    if version is None or home is None:
        raise StackError(f"{config}: no `home` or `version_info` line; run `make install`")
    minor = f"{version.group(1)}.{version.group(2)}"
    site_packages = venv / "lib" / f"python{minor}" / "site-packages"
    require_reachable(
        [site_packages / "x", repo_root / "x"],
        account,
        who="python",
        fix="Clone the repository under a directory every user may traverse (e.g. /srv or /opt).",
    )
    stdlib = Path(home.group(1)).parent / "lib" / f"python{minor}" / "os.py"
    if blocked_at(python, account) is None and blocked_at(stdlib, account) is None:
        return str(python)
    for candidate in (Path(f"/usr/bin/python{minor}"), Path(f"/usr/local/bin/python{minor}")):
        if candidate.exists() and blocked_at(candidate, account) is None:
            return str(_runtime_venv(state_dir / "python", candidate, site_packages, minor))
    raise StackError(
        f"python: OS user {account.pw_name} cannot run {os.path.realpath(python)} "
        f"(blocked at {blocked_at(python, account)}) and there is no /usr/bin/python{minor}: "
        f"install python{minor} (apt-get install python{minor}) or rebuild .venv with an "
        f"interpreter every user can run (`UV_PYTHON=/usr/bin/python3 uv sync --all-packages`)"
    )


def _runtime_venv(target: Path, interpreter: Path, site_packages: Path, minor: str) -> Path:
    """<target>/bin/python (-> interpreter) with <target>/lib/pythonX.Y/site-packages
    (-> the .venv's); root-owned, readable by everyone, rewritten only when it differs."""
    (target / "bin").mkdir(parents=True, exist_ok=True)
    (target / "lib" / f"python{minor}").mkdir(parents=True, exist_ok=True)
    _symlink(target / "bin" / "python", interpreter)
    _symlink(target / "lib" / f"python{minor}" / "site-packages", site_packages)
    config = (
        "# written by orderflow_devstack: the distribution's Python with the repo's .venv\n"
        f"home = {interpreter.parent}\n"
        "include-system-site-packages = false\n"
        f"version = {minor}\n"
    )
    cfg_file = target / "pyvenv.cfg"
    if not cfg_file.exists() or cfg_file.read_text() != config:
        tmp = cfg_file.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(config)
        tmp.chmod(0o644)
        tmp.replace(cfg_file)
    for directory in (target, target / "bin", target / "lib", target / "lib" / f"python{minor}"):
        directory.chmod(0o755)
    return target / "bin" / "python"


def _symlink(link: Path, target: Path) -> None:
    if link.is_symlink() and Path(os.readlink(link)) == target:
        return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
