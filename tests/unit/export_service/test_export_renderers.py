import csv
import io
import json
import uuid
from xml.etree import ElementTree as ET

from export_service.domain.renderers import CSV_COLUMNS, FileFormat, checksum, render

EXPORT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")


def test_csv_has_a_header_and_one_row_per_line(snapshot):
    rows = list(csv.reader(io.StringIO(render(snapshot, FileFormat.CSV, EXPORT_ID).decode())))
    assert rows[0] == list(CSV_COLUMNS)
    assert len(rows) == 1 + len(snapshot.lines)
    row = dict(zip(rows[0], rows[1], strict=True))
    assert row["sku"] == "SKU-1"
    assert row["quantity"] == "3"
    assert row["unit_price"] == "9.50"
    assert row["export_id"] == str(EXPORT_ID)


def test_csv_quotes_commas_quotes_and_newlines_in_text(make_snapshot):
    snap = make_snapshot(description='Bolt, "M6"\nzinc')
    rows = list(csv.reader(io.StringIO(render(snap, FileFormat.CSV, EXPORT_ID).decode())))
    assert rows[1][CSV_COLUMNS.index("description")] == 'Bolt, "M6"\nzinc'


def test_json_carries_the_order_with_decimals_as_strings(snapshot):
    document = json.loads(render(snapshot, FileFormat.JSON, EXPORT_ID))
    assert document["export_id"] == str(EXPORT_ID)
    assert document["draft_id"] == str(snapshot.draft_id)
    assert document["total"] == "28.50"
    assert document["lines"][0]["unit"] == "EA"


def test_xml_parses_and_has_the_lines(snapshot):
    root = ET.fromstring(render(snapshot, FileFormat.XML, EXPORT_ID))  # noqa: S314 (our own output)
    assert root.tag == "SalesOrder"
    assert root.findtext("external_ref") == "PO-4711"
    lines = root.findall("lines/line")
    assert [line.get("line_no") for line in lines] == ["1"]
    assert lines[0].findtext("unit_price") == "9.50"


def test_xml_stays_well_formed_with_control_characters_and_markup(make_snapshot):
    snap = make_snapshot(description="bad\x00\x07 <tag> & ]]>")
    root = ET.fromstring(render(snap, FileFormat.XML, EXPORT_ID))  # noqa: S314 (our own output)
    assert root.findtext("lines/line/description") == "bad\ufffd\ufffd <tag> & ]]>"


def test_rendering_is_deterministic_so_a_redelivery_has_the_same_checksum(snapshot):
    for file_format in FileFormat:
        first = render(snapshot, file_format, EXPORT_ID)
        assert checksum(first) == checksum(render(snapshot, file_format, EXPORT_ID))
    assert len(checksum(b"x")) == 64
