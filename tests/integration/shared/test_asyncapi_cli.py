"""shared/asyncapi.yaml passes the AsyncAPI project's own validator, `@asyncapi/cli
validate`, installed from npm into a cache outside the repository (once per version)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from orderflow_shared.contracts.asyncapi import default_asyncapi_path

CLI_VERSION = "6.2.0"


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "orderflow" / f"asyncapi-cli-{CLI_VERSION}"


def _env() -> dict[str, str]:
    # no anonymous metrics (there is no network for them) and no node-config chatter
    return {**os.environ, "ASYNCAPI_METRICS": "false", "SUPPRESS_NO_CONFIG_WARNING": "1"}


@pytest.fixture(scope="module")
def asyncapi_cli() -> Iterator[Path]:
    """The `asyncapi` executable; npm installs it the first time (about a minute)."""
    npm = shutil.which("npm")
    assert npm, "npm is needed to install @asyncapi/cli (the devstack's install brings it)"
    directory = _cache_dir()
    directory.mkdir(parents=True, exist_ok=True)
    binary = directory / "node_modules" / ".bin" / "asyncapi"
    stamp = directory / ".installed"
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs install once
        if not (stamp.exists() and binary.exists()):
            result = subprocess.run(
                [
                    npm,
                    "install",
                    "--prefix",
                    str(directory),
                    "--no-audit",
                    "--no-fund",
                    "--loglevel=error",
                    f"@asyncapi/cli@{CLI_VERSION}",
                ],
                capture_output=True,
                text=True,
                timeout=600,
                env=_env(),
            )
            assert result.returncode == 0, f"npm install failed:\n{result.stderr[-4000:]}"
            stamp.write_text(CLI_VERSION)
    yield binary


def _validate(cli: Path, document: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(cli), "validate", "--fail-severity=warn", str(document)],
        capture_output=True,
        text=True,
        timeout=300,
        env=_env(),
        cwd=document.parent,
    )


def test_the_asyncapi_document_is_valid(asyncapi_cli: Path) -> None:
    result = _validate(asyncapi_cli, default_asyncapi_path())
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"asyncapi validate failed:\n{output[-6000:]}"
    assert "is valid" in output
    assert "0 errors, 0 warnings" in output


#: one breakage per copy: the validator may stop at the first error of a kind
BROKEN_COPIES = {
    "operation": ("action: receive", "action: consume", '"action" property must be equal'),
    "binding": ("partitions: 6", "partitions: six", '"partitions" property type must be integer'),
    "reference": (
        "$ref: '#/components/schemas/DraftCreatedV1'",
        "$ref: '#/components/schemas/NoSuchSchema'",
        "'#/components/schemas/NoSuchSchema' does not exist",
    ),
}


@pytest.mark.parametrize("kind", sorted(BROKEN_COPIES))
def test_the_validator_refuses_a_broken_copy(asyncapi_cli: Path, tmp_path: Path, kind: str) -> None:
    """The check above could fail: the validator sees bad operations, bindings, refs."""
    text = default_asyncapi_path().read_text()
    old, new, complaint = BROKEN_COPIES[kind]
    assert old in text
    text = text.replace(old, new, 1)
    broken = tmp_path / "asyncapi.yaml"
    broken.write_text(text)
    result = _validate(asyncapi_cli, broken)
    assert result.returncode != 0
    assert complaint in result.stdout + result.stderr
