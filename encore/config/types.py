"""The constrained number types and the strict base model every settings section uses.

Declared once, here, at the bottom of the import graph (pydantic only), so the experiment
config, the generator kinds' ``config_class`` and the data sources' settings share one meaning
of "positive", "fraction" and "strict" without importing one another.
"""

from __future__ import annotations

import types
import typing
from functools import cache
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
"""A share strictly between 0 and 1 (a split fraction, a confidence level)."""
UnitInterval = Annotated[float, Field(ge=0, le=1)]
"""A weight from 0 to 1, both included (BM25's ``B``, a mixing share)."""
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]
"""A random seed: what NumPy, CatBoost and implicit all take (0 to 2**32 - 1)."""

BOOLEAN_NOT_A_NUMBER = "a boolean is not a number (write the number itself)"


def _number_kinds(annotation: Any) -> tuple[bool, bool, Any]:
    """Whether ``annotation`` admits a number, whether it admits a boolean, and the element type
    of a list/tuple/set/dict of numbers (None otherwise)."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _number_kinds(typing.get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        number = boolean = False
        element = None
        for arg in typing.get_args(annotation):
            n, b, e = _number_kinds(arg)
            number, boolean, element = number or n, boolean or b, element or e
        return number, boolean, element
    if origin in (list, tuple, set, frozenset):
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        return False, False, (args[0] if len(args) == 1 else None)
    if origin is dict:
        args = typing.get_args(annotation)
        return False, False, (args[1] if len(args) == 2 else None)
    if annotation is bool or annotation is Any:
        return False, True, None
    if isinstance(annotation, type) and issubclass(annotation, int | float):
        return True, False, None
    return False, False, None


@cache
def _rejects_booleans(annotation: Any) -> tuple[bool, Any]:
    """(a boolean given for this annotation is an error, the element annotation to check inside a container)."""
    number, boolean, element = _number_kinds(annotation)
    return number and not boolean, element


def _boolean_paths(annotation: Any, value: Any, loc: tuple[int | str, ...]) -> list[tuple[tuple[int | str, ...], bool]]:
    """Where ``value`` holds a boolean that ``annotation`` wants as a number (itself or inside a container)."""
    rejects, element = _rejects_booleans(annotation)
    if isinstance(value, bool):
        return [(loc, value)] if rejects else []
    if element is None:
        return []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list | tuple) else ()
    return [path for key, item in items for path in _boolean_paths(element, item, (*loc, key))]


class Strict(BaseModel):
    """A settings section: unknown keys are errors (a typo fails before any work starts, naming
    the key) and values are frozen (a resolved config is hashed into output fingerprints, so it
    must not change after validation). A boolean is never taken for a number (``factors: true``
    would otherwise be 1, ``l2: yes`` 1.0), in every section and every kind's settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_boolean_numbers(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        paths = [path for name, field in cls.model_fields.items() if name in data
                 for path in _boolean_paths(field.annotation, data[name], (name,))]
        if paths:
            raise ValidationError.from_exception_data(cls.__name__, [
                InitErrorDetails(type=PydanticCustomError("boolean_not_a_number", BOOLEAN_NOT_A_NUMBER),
                                 loc=path, input=value) for path, value in paths])
        return data
