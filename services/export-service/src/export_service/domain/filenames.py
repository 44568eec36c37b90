"""Remote file names: a template with safe placeholders, every part sanitized.

A name never contains a path separator, a control character, `..` or a leading dot,
so it cannot leave the remote directory or hide itself.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections.abc import Mapping
from datetime import date
from uuid import UUID

from export_service.domain.errors import InvalidFileNameTemplate

PLACEHOLDERS = frozenset({"external_ref", "draft_id", "export_id", "date"})
REQUIRED_PLACEHOLDER = "export_id"
DEFAULT_TEMPLATE = "{external_ref}_{export_id}"
MAX_PART_LENGTH = 64
MAX_STEM_LENGTH = 180
MAX_TEMPLATE_LENGTH = 200

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_DOTS = re.compile(r"\.{2,}")


def sanitize_part(value: str, max_length: int = MAX_PART_LENGTH) -> str:
    """Keep letters, digits, `.`, `_`, `-`; everything else becomes `_`."""
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    text = _UNSAFE.sub("_", text)
    text = _DOTS.sub(".", text)
    text = text.strip("._-")
    return text[:max_length].rstrip(".")


def validate_template(template: str) -> str:
    """The template when it is usable; InvalidFileNameTemplate explains what is wrong."""
    if not template or len(template) > MAX_TEMPLATE_LENGTH:
        raise InvalidFileNameTemplate(
            f"file_name_template must be 1-{MAX_TEMPLATE_LENGTH} characters"
        )
    fields: set[str] = set()
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InvalidFileNameTemplate(f"file_name_template is malformed: {exc}") from exc
    for _literal, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in PLACEHOLDERS or spec or conversion:
            allowed = ", ".join("{" + p + "}" for p in sorted(PLACEHOLDERS))
            raise InvalidFileNameTemplate(
                f"file_name_template may only use the placeholders {allowed}"
            )
        fields.add(field)
    if REQUIRED_PLACEHOLDER not in fields:
        raise InvalidFileNameTemplate(
            "file_name_template must contain {export_id} so every export has its own file"
        )
    return template


def render_file_name(
    template: str,
    *,
    external_ref: str | None,
    draft_id: UUID,
    export_id: UUID,
    on_date: date,
    extension: str,
) -> str:
    """Deterministic, sanitized file name for one export (same inputs, same name)."""
    validate_template(template)
    values: Mapping[str, str] = {
        "external_ref": sanitize_part(external_ref or "") or "noref",
        "draft_id": str(draft_id),
        "export_id": str(export_id),
        "date": on_date.isoformat(),
    }
    stem = sanitize_part(template.format_map(values), MAX_STEM_LENGTH)
    if str(export_id) not in stem:
        # Truncation cut the unique part: keep the export id whatever happens.
        stem = sanitize_part(f"{stem[: MAX_STEM_LENGTH - 37]}_{export_id}", MAX_STEM_LENGTH)
    return f"{stem}.{sanitize_part(extension, 8) or 'dat'}"


def is_safe_file_name(name: str) -> bool:
    return (
        bool(name)
        and "/" not in name
        and "\\" not in name
        and not name.startswith(".")
        and ".." not in name
        and all(ch.isprintable() for ch in name)
    )
