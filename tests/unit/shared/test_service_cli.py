"""The pieces every service's command line and OpenAPI share."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from orderflow_shared.service_cli import Migrations, alembic_config
from orderflow_shared.web import ErrorOut, RequestErrorOut, error_responses


def test_alembic_config_points_at_the_service_migrations_and_url(tmp_path: Path) -> None:
    (tmp_path / "alembic.ini").write_text("[alembic]\n")
    config = alembic_config(tmp_path, "postgresql+psycopg://x@h/db", runtime_role="r")
    assert config.get_main_option("script_location") == str(tmp_path)
    assert config.attributes["url"] == "postgresql+psycopg://x@h/db"
    assert config.attributes["runtime_role"] == "r"


def test_a_services_migrations_run_with_its_migration_url_and_its_attributes(
    tmp_path: Path,
) -> None:
    (tmp_path / "alembic.ini").write_text("[alembic]\n")
    settings = SimpleNamespace(migrations_url="postgresql+psycopg://owner@h/db", role="svc")
    plain = Migrations(tmp_path).config(settings)  # type: ignore[arg-type]
    assert plain.get_main_option("script_location") == str(tmp_path)
    assert plain.attributes == {"url": "postgresql+psycopg://owner@h/db"}
    granting = Migrations(tmp_path, lambda s: {"runtime_role": s.role})
    config = granting.config(settings)  # type: ignore[arg-type]
    assert config.attributes["runtime_role"] == "svc"


def test_error_responses_declare_422_as_a_request_error_and_the_rest_as_detail() -> None:
    responses = error_responses(404, 422, descriptions={404: "No such draft"})
    assert responses[404]["model"] is ErrorOut
    assert responses[404]["description"] == "No such draft"
    assert "application/problem+json" in responses[404]["content"]
    assert responses[422]["model"] is RequestErrorOut
    assert set(responses) == {404, 422}
