"""JSON Schema files of the event contracts (`shared/schemas/<ce_type>.json`).

`render_schemas()` builds them from the pydantic models; `write_schemas()` stores them;
`stale_schemas()` names the files that differ from the models (drift).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from orderflow_shared.contracts.events import EVENT_SPECS, EventSpec

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def default_schema_dir() -> Path:
    """`shared/schemas/` of the source tree this package was imported from."""
    return Path(__file__).resolve().parents[3] / "schemas"


def schema_for(spec: EventSpec) -> dict[str, Any]:
    schema = spec.model.model_json_schema(mode="serialization")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"urn:orderflow:event:{spec.ce_type}",
        "x-ce-type": spec.ce_type,
        "x-topic": str(spec.topic),
        "x-audit-action": spec.audit_action,
        **schema,
    }


def render_schemas() -> dict[str, str]:
    """File name → file text for every event type."""
    return {
        f"{spec.ce_type}.json": json.dumps(schema_for(spec), indent=2, sort_keys=True) + "\n"
        for spec in EVENT_SPECS
    }


def write_schemas(directory: Path | None = None) -> list[Path]:
    directory = directory or default_schema_dir()
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def stale_schemas(directory: Path | None = None) -> list[str]:
    """Names of schema files missing, different from the models, or left over."""
    directory = directory or default_schema_dir()
    expected = render_schemas()
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).exists() or (directory / name).read_text() != text
    ]
    if directory.exists():
        stale += sorted(p.name for p in directory.glob("*.json") if p.name not in expected)
    return stale
