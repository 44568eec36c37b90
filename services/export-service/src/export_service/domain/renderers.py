"""Render an order snapshot as the bytes of an export file (CSV, JSON or XML).

Rendering is deterministic: the same export renders to the same bytes, so a
re-delivery after a crash can be recognised by its checksum.
"""

from __future__ import annotations

import hashlib
import json
import re
from enum import StrEnum
from uuid import UUID
from xml.etree import ElementTree as ET

from orderflow_shared.contracts import OrderLineSnapshot, OrderSnapshot


class FileFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    XML = "xml"

    @property
    def extension(self) -> str:
        return self.value


#: The fields of an order line every format writes after its `line_no`, in this order
#: (each a string or a decimal, written as its `str`).
LINE_FIELDS = ("sku", "description", "quantity", "unit", "unit_price", "currency", "line_total")
CSV_COLUMNS = ("export_id", "draft_id", "external_ref", "customer_id", "line_no", *LINE_FIELDS)

# Characters XML 1.0 cannot carry at all (control characters other than tab/CR/LF).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def checksum(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


#: What makes a spreadsheet read a cell as a formula (OWASP "CSV Injection").
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NEEDS_QUOTES = re.compile('[",\r\n]')


def render(
    snapshot: OrderSnapshot,
    file_format: FileFormat,
    export_id: UUID,
    *,
    csv_formula_guard: bool = True,
) -> bytes:
    """The file's bytes; `csv_formula_guard=False` writes CSV cells raw (ERPs that need it)."""
    if file_format is FileFormat.CSV:
        return _csv(snapshot, export_id, csv_formula_guard)
    renderer = {FileFormat.JSON: _json, FileFormat.XML: _xml}
    return renderer[file_format](snapshot, export_id)


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs as a formula (OWASP).

    A cell that starts with `=`, `+`, `-`, `@`, TAB or CR gets a leading single quote
    and is always quoted (embedded quotes doubled). Every cell is treated alike, numbers
    included: the numbers rendered here never start with those characters (quantities
    are > 0 and prices >= 0), so they come out unchanged.
    """
    if value.startswith(FORMULA_TRIGGERS):
        return '"' + ("'" + value).replace('"', '""') + '"'
    return _csv_cell(value)


def _csv_cell(value: str) -> str:
    """RFC 4180 quoting, exactly as `csv.writer` with QUOTE_MINIMAL writes it."""
    if _NEEDS_QUOTES.search(value):
        return '"' + value.replace('"', '""') + '"'
    return value


def _csv(snapshot: OrderSnapshot, export_id: UUID, formula_guard: bool = True) -> bytes:
    cell = neutralise_cell if formula_guard else _csv_cell
    rows = [",".join(CSV_COLUMNS)]
    for line in snapshot.lines:
        values = (
            str(export_id),
            str(snapshot.draft_id),
            snapshot.external_ref or "",
            snapshot.customer_id,
            str(line.line_no),
            *_line_values(line).values(),
        )
        rows.append(",".join(cell(v) for v in values))
    return ("\r\n".join(rows) + "\r\n").encode("utf-8")


def _document(snapshot: OrderSnapshot, export_id: UUID) -> dict[str, object]:
    return {
        "export_id": str(export_id),
        "draft_id": str(snapshot.draft_id),
        "org_id": snapshot.org_id,
        "customer_id": snapshot.customer_id,
        "external_ref": snapshot.external_ref,
        "currency": snapshot.currency,
        "total": str(snapshot.total),
        "approved_by_user_id": snapshot.approved_by_user_id,
        "approved_at": snapshot.approved_at.isoformat() if snapshot.approved_at else None,
        "created_at": snapshot.created_at.isoformat(),
        "lines": [{"line_no": line.line_no, **_line_values(line)} for line in snapshot.lines],
    }


def _line_values(line: OrderLineSnapshot) -> dict[str, str]:
    return {name: str(getattr(line, name)) for name in LINE_FIELDS}


def _json(snapshot: OrderSnapshot, export_id: UUID) -> bytes:
    document = _document(snapshot, export_id)
    return (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def _xml_text(value: object) -> str:
    return _XML_ILLEGAL.sub("\ufffd", "" if value is None else str(value))


def _xml(snapshot: OrderSnapshot, export_id: UUID) -> bytes:
    document = _document(snapshot, export_id)
    root = ET.Element("SalesOrder")
    for name, value in document.items():
        if name == "lines":
            continue
        ET.SubElement(root, name).text = _xml_text(value)
    lines = ET.SubElement(root, "lines")
    for line in snapshot.lines:
        element = ET.SubElement(lines, "line", {"line_no": str(line.line_no)})
        for name, value in _line_values(line).items():
            ET.SubElement(element, name).text = _xml_text(value)
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body + "\n").encode("utf-8")
