"""JsonInteger: what JSON Schema calls an integer, no more and no less."""

from __future__ import annotations

from typing import Annotated

import pytest
from orderflow_shared.web import JsonInteger
from pydantic import BaseModel, ConfigDict, ValidationError


class Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")
    days: Annotated[int, JsonInteger(1, 36500)]


@pytest.mark.parametrize("value", [1, 714, 714.0, 36500])
def test_numbers_without_a_fraction_in_range_are_integers(value: float) -> None:
    assert Strict(days=value).days == int(value)


@pytest.mark.parametrize("value", ["714", True, 22.5, 0, 36501, None])
def test_strings_booleans_fractions_and_out_of_range_are_not(value: object) -> None:
    with pytest.raises(ValidationError):
        Strict(days=value)


def test_the_schema_says_integer_with_its_bounds() -> None:
    schema = Strict.model_json_schema()["properties"]["days"]
    assert schema["type"] == "integer" and schema["minimum"] == 1 and schema["maximum"] == 36500
