"""Do a service's migrations build the tables its code declares? Alembic's
`compare_metadata` between a migrated database and the service's table metadata."""

from __future__ import annotations

import re
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from orderflow_shared.db import sync_url
from sqlalchemy import CheckConstraint, Column, MetaData, Text, create_engine, pool


def drift(url: str, schema: str, metadata: MetaData) -> list[Any]:
    """What Alembic would change to make schema `schema` of the database at `url` match
    `metadata`: tables, columns, types, nullability, server defaults, indexes, unique
    and foreign keys (empty: migrations and metadata agree)."""

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name == schema
        if type_ == "table":
            return name != "alembic_version"
        return True

    # a role whose search_path starts at `schema` would make Alembic see the tables as
    # the default schema's, apart from the metadata's `schema.table`
    engine = create_engine(
        sync_url(url),
        poolclass=pool.NullPool,
        connect_args={"options": "-c search_path=public"},
    )
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                opts={
                    "include_schemas": True,
                    "include_name": include_name,
                    "compare_type": True,
                    "compare_server_default": True,
                },
            )
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def check_constraints(url: str, schema: str) -> dict[str, str]:
    """name -> definition of every CHECK constraint in `schema` (Alembic does not
    compare them, so the tests compare these with the metadata's)."""
    engine = create_engine(sync_url(url), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.exec_driver_sql(
                "SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                "JOIN pg_namespace n ON n.oid = c.connamespace "
                "WHERE c.contype = 'c' AND n.nspname = %(schema)s",
                {"schema": schema},
            ).all()
        return {name: definition for name, definition in rows}
    finally:
        engine.dispose()


def enum_checks(metadata: MetaData) -> dict[str, tuple[str, ...]]:
    """name -> allowed values of each check constraint built from an enum
    (`orderflow_shared.enum_check`)."""
    return {
        str(constraint.name): tuple(constraint.info["values"])
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, CheckConstraint) and "values" in constraint.info
    }


def allowed_values(definition: str) -> set[str]:
    """The quoted values of a `CHECK (x = ANY (ARRAY['a'::text, ...]))` definition."""
    return set(re.findall(r"'((?:[^']|'')*)'", definition))


def mismatches(url: str, schema: str, metadata: MetaData) -> list[str]:
    """Everything in which the migrated schema and the metadata disagree: Alembic's
    drift, then each enum check whose values in the database differ from the enum's."""
    found = [repr(d) for d in drift(url, schema, metadata)]
    in_database = check_constraints(url, schema)
    for name, values in enum_checks(metadata).items():
        if name not in in_database:
            found.append(f"check {name} missing in the database")
        elif allowed_values(in_database[name]) != set(values):
            found.append(f"check {name}: database {in_database[name]} != enum {sorted(values)}")
    return found


def assert_detects_drift(url: str, schema: str, metadata: MetaData, table: str) -> None:
    """The comparison is not blind: a column the migrations lack, and an enum value
    the database refuses, are both reported."""
    drifted = MetaData(schema=schema)
    for original in metadata.tables.values():
        copy = original.to_metadata(drifted)
        if original.name == table:
            copy.append_column(Column("not_migrated", Text))
            copy.append_constraint(
                CheckConstraint("true", name=f"ck_{table}_drifted", info={"values": ("X",)})
            )
    found = mismatches(url, schema, drifted)
    assert any("not_migrated" in f for f in found), found
    assert any(f"ck_{table}_drifted" in f for f in found), found
