"""docs/DEVELOPING.md stays true to the tree: every file its "Life of a push" names
exists in a service (or the repository), every function it names is defined there, and
it points at nothing outside the repository."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "DEVELOPING.md").read_text()
PACKAGES = [p for p in (ROOT / "services").glob("*/src/*") if (p / "__init__.py").is_file()]


def walkthrough() -> str:
    return DOC.split("## Life of a push, file by file", 1)[1]


def test_every_file_the_walkthrough_names_exists() -> None:
    named = set(re.findall(r"`([\w./-]+\.(?:py|template))`", walkthrough()))
    assert named, "the walk-through names no file"
    missing = [
        name
        for name in sorted(named)
        if not (ROOT / name).exists() and not any((p / name).exists() for p in PACKAGES)
    ]
    assert not missing, missing


def test_every_function_and_class_the_walkthrough_names_is_defined() -> None:
    text = walkthrough()
    sources = "\n".join(
        path.read_text()
        for base in [*PACKAGES, ROOT / "shared" / "src"]
        for path in base.rglob("*.py")
    )
    roles = {"serve", "relay", "consume", "worker", "ingest"}
    functions = set(re.findall(r"`([a-z_][a-z0-9_]+)`", text)) - roles - {"posix_rename"}
    classes = set(re.findall(r"`([A-Z][a-z]+[A-Z][A-Za-z]+)`", text))
    assert len(functions) >= 6 and len(classes) >= 3
    missing = [f for f in functions if not re.search(rf"^\s*(async )?def {f}\(", sources, re.M)]
    missing += [c for c in classes if not re.search(rf"^class {c}\b", sources, re.M)]
    assert not missing, missing


def test_nothing_outside_the_repository_is_referenced() -> None:
    assert "../shared" not in DOC
    assert "alembic/" not in DOC.replace("alembic.ini", "")
