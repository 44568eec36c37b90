import uuid
from datetime import date

import pytest
from export_service.domain.errors import InvalidFileNameTemplate
from export_service.domain.filenames import (
    is_safe_file_name,
    render_file_name,
    sanitize_part,
    validate_template,
)

EXPORT_ID = uuid.UUID("22222222-2222-4222-8222-222222222222")
DRAFT_ID = uuid.UUID("11111111-1111-4111-8111-111111111111")


def name(template: str = "{external_ref}_{export_id}", ref: str | None = "PO-1") -> str:
    return render_file_name(
        template,
        external_ref=ref,
        draft_id=DRAFT_ID,
        export_id=EXPORT_ID,
        on_date=date(2026, 3, 1),
        extension="csv",
    )


def test_a_plain_template_renders_every_placeholder():
    rendered = name("{date}_{external_ref}_{draft_id}_{export_id}")
    assert rendered == f"2026-03-01_PO-1_{DRAFT_ID}_{EXPORT_ID}.csv"


@pytest.mark.parametrize(
    "hostile",
    [
        "../../etc/passwd",
        "..",
        "/etc/shadow",
        "a\x00b",
        "..\\..\\win.ini",
        "\n\r\t",
        ".hidden",
        "x" * 5000,
        "PO/../../x",
        "ﬁ/\u202e/名前",
    ],
)
def test_hostile_references_never_escape_the_directory(hostile):
    rendered = name(ref=hostile)
    assert is_safe_file_name(rendered)
    assert "/" not in rendered and "\x00" not in rendered and ".." not in rendered
    assert len(rendered) <= 200
    assert str(EXPORT_ID) in rendered


def test_a_very_long_reference_is_cut_but_the_export_id_is_kept():
    rendered = name("{external_ref}{external_ref}{external_ref}_{export_id}", ref="y" * 64)
    assert rendered.endswith(f"{EXPORT_ID}.csv")
    assert len(rendered) <= 190


def test_missing_reference_gets_a_placeholder():
    assert name(ref=None) == f"noref_{EXPORT_ID}.csv"


def test_sanitize_part_keeps_safe_characters_only():
    assert sanitize_part("../../etc/passwd") == "etc_passwd"
    assert sanitize_part("Müller & Söhne") == "Muller_Sohne"
    assert sanitize_part("...") == ""


@pytest.mark.parametrize(
    "template",
    [
        "",
        "{external_ref}",
        "{export_id}{secret}",
        "{export_id!r}",
        "{export_id:>10}",
        "{export_id.hex}",
        "{export_id[0]}",
        "{export_id",
        "x" * 300,
    ],
)
def test_unsafe_or_useless_templates_are_refused(template):
    with pytest.raises(InvalidFileNameTemplate):
        validate_template(template)


def test_literal_path_characters_in_a_template_are_neutralised():
    rendered = name("../{export_id}/x")
    assert is_safe_file_name(rendered)
    assert rendered == f"{EXPORT_ID}_x.csv"
