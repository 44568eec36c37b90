"""The devstack's OS users: what they own and reach, and the Python they run."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from orderflow_devstack import accounts
from orderflow_devstack.procs import StackError

NOBODY = pwd.getpwnam("nobody")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp_path sits under a 0700 dir)."""
    path = Path(tempfile.mkdtemp(prefix="orderflow-accounts-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path)


def stat_with(mode: int, uid: int, gid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))


def test_permission_bits_are_read_for_owner_group_or_others() -> None:
    other_uid = NOBODY.pw_uid + 1
    assert accounts.allows(stat_with(0o700, NOBODY.pw_uid, 0), NOBODY, 1)
    assert not accounts.allows(stat_with(0o077, NOBODY.pw_uid, 0), NOBODY, 1)
    assert accounts.allows(stat_with(0o070, other_uid, NOBODY.pw_gid), NOBODY, 5)
    assert not accounts.allows(stat_with(0o750, other_uid, 0), NOBODY, 1)
    assert accounts.allows(stat_with(0o751, other_uid, 0), NOBODY, 1)
    assert not accounts.allows(stat_with(0o755, other_uid, 0), NOBODY, 2)


def test_the_first_closed_directory_on_the_way_is_named(open_dir: Path) -> None:
    closed = open_dir / "closed"
    (closed / "inner").mkdir(parents=True)
    closed.chmod(0o700)
    assert accounts.blocked_at(closed / "inner" / "file", NOBODY) == closed
    # a symlink through an open place to a closed one is still closed
    (open_dir / "link").symlink_to(closed / "inner")
    assert accounts.blocked_at(open_dir / "link" / "file", NOBODY) == closed
    closed.chmod(0o711)
    assert accounts.blocked_at(closed / "inner" / "file", NOBODY) is None
    # what does not exist yet is made later by the devstack: not a blocker
    assert accounts.blocked_at(open_dir / "missing" / "deeper" / "file", NOBODY) is None
    # a closed directory of another user is not ours to open: a clear error
    os.chown(closed, NOBODY.pw_uid + 1, 0)
    closed.chmod(0o700)
    with pytest.raises(StackError, match=f"cannot reach .*{closed.name}"):
        accounts.require_reachable([closed / "x" / "y"], NOBODY, who="t", fix="fix it")


def test_a_closed_root_directory_on_the_way_is_opened_for_traverse_only(
    open_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = open_dir / "root-home"
    (home / "clone").mkdir(parents=True)
    home.chmod(0o700)
    accounts.require_reachable([home / "clone" / "x"], NOBODY, who="t", fix="fix it")
    assert home.stat().st_mode & 0o777 == 0o701
    assert accounts.blocked_at(home / "clone" / "x", NOBODY) is None
    assert f"{home} was closed to other users" in capsys.readouterr().out


def test_own_tree_takes_over_what_root_made_without_following_symlinks(open_dir: Path) -> None:
    outside = open_dir / "outside.txt"
    outside.write_text("root's")
    tree = open_dir / "tree"
    (tree / "a" / "b").mkdir(parents=True)
    (tree / "a" / "b" / "artifact.csv").write_text("x")
    (tree / "escape").symlink_to(outside)
    accounts.own_tree(tree, NOBODY, mode=0o750)
    for path in [tree, *tree.rglob("*")]:
        assert path.lstat().st_uid == NOBODY.pw_uid, path
    assert outside.stat().st_uid == 0
    assert tree.stat().st_mode & 0o777 == 0o750
    accounts.own_tree(tree, NOBODY, mode=0o750)  # idempotent
    assert (tree / "a" / "b" / "artifact.csv").stat().st_uid == NOBODY.pw_uid


def _system_minor() -> str:
    for minor in (f"{sys.version_info.major}.{sys.version_info.minor}", "3.11", "3.12", "3.13"):
        if Path(f"/usr/bin/python{minor}").exists():
            return minor
    pytest.fail("no /usr/bin/python3.X on this machine (the devstack needs one)")


def _fake_repo(base: Path, home: Path, minor: str) -> Path:
    repo = base / "repo"
    venv = repo / ".venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "lib" / f"python{minor}" / "site-packages").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text(f"home = {home}\nversion_info = {minor}.7\n")
    (venv / "bin" / "python").symlink_to(home / f"python{minor}")
    return repo


def test_an_interpreter_the_user_can_run_is_used_as_it_is(open_dir: Path) -> None:
    minor = _system_minor()
    repo = _fake_repo(open_dir, Path("/usr/bin"), minor)
    chosen = accounts.service_python(repo, open_dir / "state", NOBODY)
    assert chosen == str(repo / ".venv" / "bin" / "python")
    assert not (open_dir / "state" / "python").exists()


def test_an_interpreter_under_a_closed_home_is_replaced_by_the_distributions(
    open_dir: Path,
) -> None:
    minor = _system_minor()
    closed_home = open_dir / "root-home"
    (closed_home / "bin").mkdir(parents=True)
    (closed_home / "bin" / f"python{minor}").symlink_to(f"/usr/bin/python{minor}")
    closed_home.chmod(0o700)
    repo = _fake_repo(open_dir, closed_home / "bin", minor)
    state = open_dir / "state"
    chosen = Path(accounts.service_python(repo, state, NOBODY))
    runtime = state / "python"
    assert chosen == runtime / "bin" / "python"
    assert os.readlink(chosen) == f"/usr/bin/python{minor}"
    site = runtime / "lib" / f"python{minor}" / "site-packages"
    assert Path(os.readlink(site)) == repo / ".venv" / "lib" / f"python{minor}" / "site-packages"
    assert "home = /usr/bin\n" in (runtime / "pyvenv.cfg").read_text()
    assert accounts.blocked_at(chosen, NOBODY) is None
    # the same call again changes nothing
    before = (runtime / "pyvenv.cfg").stat().st_mtime_ns
    assert Path(accounts.service_python(repo, state, NOBODY)) == chosen
    assert (runtime / "pyvenv.cfg").stat().st_mtime_ns == before


def test_a_repository_the_user_cannot_reach_fails_early_and_says_where(open_dir: Path) -> None:
    minor = _system_minor()
    closed = open_dir / "home-alice"
    closed.mkdir()
    repo = _fake_repo(closed, Path("/usr/bin"), minor)
    os.chown(closed, NOBODY.pw_uid + 1, 0)  # another user's home: not opened for us
    closed.chmod(0o700)
    with pytest.raises(StackError, match=f"nobody cannot reach .*{closed} is drwx------"):
        accounts.service_python(repo, open_dir / "state", NOBODY)


def test_every_runtime_user_is_a_distinct_unprivileged_name() -> None:
    names = list(accounts.RUNTIME_USERS.values())
    assert len(set(names)) == len(names)
    assert all(name.startswith("orderflow-") and len(name) <= 32 for name in names)
    assert {"draft-api", "export-service", "audit-service", "kafka", "redis", "gateway"} == set(
        accounts.RUNTIME_USERS
    )


def test_a_file_that_goes_while_the_tree_is_owned_is_passed_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process of the service removes its temporary file between the walk's
    listing and the chown: starting one process must not fail on it."""
    import orderflow_devstack.accounts as accounts_module

    (tmp_path / "tree").mkdir()
    gone = tmp_path / "tree" / ".upload.part"
    gone.write_text("x")
    real_lstat = Path.lstat

    def vanishing(self: Path) -> os.stat_result:
        if self == gone:
            gone.unlink(missing_ok=True)
        return real_lstat(self)

    monkeypatch.setattr(Path, "lstat", vanishing)
    me = pwd.getpwuid(os.getuid())
    accounts_module.own_tree(tmp_path / "tree", me, mode=0o750)
    assert not gone.exists()
