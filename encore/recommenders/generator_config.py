"""What a generator kind declares: its settings model and the side data it fits on.

A generator *kind* is a :class:`~encore.recommenders.base.Recommender` subclass. The
class itself is the declaration (as RecTools keeps ``EASEModelConfig`` beside ``EASEModel``):

* ``name``: the kind, used in ``components.<instance>.kind`` and written into saved models;
* ``config_class``: a :class:`GeneratorConfig` subclass next to the class, holding the
  hyper-parameters (same names as the constructor's) with their defaults and ranges;
* ``side_data`` / ``required_side_data``: which parts of a :class:`StageView` beside the
  interaction matrix ``fit`` takes (``item_features``, ``social``, ``timestamps``).

Everything else is derived from these declarations: the config union, the component list,
the registry and which side data the pipeline hands to ``fit``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import scipy.sparse as sp
from pydantic import BaseModel, ConfigDict, Field

SideData = Literal["item_features", "social", "timestamps"]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class GeneratorConfig(BaseModel):
    """Settings every generator instance shares; a kind's ``config_class`` adds its hyper-parameters.

    Fields other than these shared ones are passed to the recommender's constructor by name.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str
    enabled: bool = True
    propose: bool = True
    """False: the instance proposes no candidates; its scores are ranker features only."""
    n_candidates: PositiveInt = 100
    n_similar: Annotated[int, Field(ge=0)] = 20
    batch_size: PositiveInt = 1024

    def params(self) -> dict:
        """The hyper-parameters: every field a kind adds to the shared ones."""
        return self.model_dump(exclude=set(GeneratorConfig.model_fields))


@dataclass(frozen=True)
class StageView:
    """What a model fit on one stage may see: the one input of every ``fit``.

    ``user_items`` (n_users, n_items) play weights; ``item_features`` (n_items, n_tags) leak-free
    tag counts; ``social`` (n_users, n_users) friend links or None; ``timestamps`` (n_users,
    n_items) last-play unix seconds or None.
    """

    user_items: sp.csr_matrix
    item_features: sp.csr_matrix | None = None
    social: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None


class SideDataMissing(ValueError):
    """A kind needs side data (e.g. social links) that the dataset does not have."""
