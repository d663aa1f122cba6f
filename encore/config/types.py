"""The constrained number types and the strict base model every settings section uses.

Declared once, here, at the bottom of the import graph (pydantic only), so the experiment
config, the generator kinds' ``config_class`` and the data sources' settings share one meaning
of "positive", "fraction" and "strict" without importing one another.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
Fraction = Annotated[float, Field(gt=0, lt=1)]
"""A share strictly between 0 and 1 (a split fraction, a confidence level)."""
UnitInterval = Annotated[float, Field(ge=0, le=1)]
"""A weight from 0 to 1, both included (BM25's ``B``, a mixing share)."""


class Strict(BaseModel):
    """A settings section: unknown keys are errors (a typo fails before any work starts, naming
    the key) and values are frozen (a resolved config is hashed into output fingerprints, so it
    must not change after validation)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
