"""The JSON Schema files under shared/schemas follow the event contracts."""

from __future__ import annotations

import json
from pathlib import Path

from orderflow_shared.__main__ import main
from orderflow_shared.contracts.events import EVENT_SPECS
from orderflow_shared.contracts.schemas import (
    default_schema_dir,
    render_schemas,
    stale_schemas,
    write_schemas,
)


def test_the_committed_schema_files_match_the_event_models() -> None:
    stale = stale_schemas()
    assert stale == [], (
        f"event contracts changed without their schema files: {stale}; "
        "run `python -m orderflow_shared schemas write` and commit shared/schemas/"
    )


def test_there_is_one_schema_file_per_event_type() -> None:
    names = {p.name for p in default_schema_dir().glob("*.json")}
    assert names == {f"{spec.ce_type}.json" for spec in EVENT_SPECS}


def test_a_schema_names_its_topic_and_required_fields() -> None:
    schema = json.loads((default_schema_dir() / "orderflow.draft.approved.v1.json").read_text())
    assert schema["x-topic"] == "draft.approved"
    assert set(schema["required"]) == {"draft_id", "approved_by_user_id", "approved_at"}


def test_check_fails_on_a_changed_contract_and_passes_after_write(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    assert main(["schemas", "check", "--dir", str(tmp_path)]) == 0
    target = tmp_path / "orderflow.export.sent.v1.json"
    schema = json.loads(target.read_text())
    del schema["properties"]["checksum_sha256"]
    target.write_text(json.dumps(schema))
    assert stale_schemas(tmp_path) == ["orderflow.export.sent.v1.json"]
    assert main(["schemas", "check", "--dir", str(tmp_path)]) == 1
    assert main(["schemas", "write", "--dir", str(tmp_path)]) == 0
    assert main(["schemas", "check", "--dir", str(tmp_path)]) == 0


def test_check_fails_on_missing_and_left_over_files(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    (tmp_path / "orderflow.draft.created.v1.json").unlink()
    (tmp_path / "orderflow.draft.deleted.v1.json").write_text("{}")
    assert stale_schemas(tmp_path) == [
        "orderflow.draft.created.v1.json",
        "orderflow.draft.deleted.v1.json",
    ]


def test_rendering_is_deterministic() -> None:
    assert render_schemas() == render_schemas()
