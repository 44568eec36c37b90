"""One record from another whose fields have the same names (no field-by-field copies)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Record = TypeVar("Record", bound="DataclassInstance")


def build(cls: type[Record], source: object, **values: Any) -> Record:
    """A `cls` (a dataclass) of `values` and, for each other field, the value of the same
    name in `source`: a mapping's key (a database row) or an object's attribute. A field
    that `source` lacks keeps its default (none: `cls` raises TypeError)."""
    if isinstance(source, Mapping):
        found = source
    else:
        found = {name: getattr(source, name) for name in _names(cls) if hasattr(source, name)}
    for name in _names(cls):
        if name not in values and name in found:
            values[name] = found[name]
    return cls(**values)


def _names(cls: type[DataclassInstance]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]
