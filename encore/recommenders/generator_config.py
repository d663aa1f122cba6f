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
from pathlib import Path
from typing import Literal

import scipy.sparse as sp
from pydantic import Field

from encore.config.types import NonNegativeInt, PositiveInt, Strict
from encore.retrieval.config import AnnConfig, Retrieval

SideData = Literal["item_features", "social", "timestamps"]


class GeneratorConfig(Strict):
    """Settings every generator instance shares; a kind's ``config_class`` adds its hyper-parameters.

    Fields other than these shared ones are passed to the recommender's constructor by name.
    Their defaults are the kind's defaults, the one place they are written: the constructor
    repeats them (``encore.testing.check_recommender`` asserts they are equal) and
    ``config/components.yaml`` does not.
    """

    kind: str
    enabled: bool = True
    propose: bool = True
    """False: the instance proposes no candidates; its scores are ranker features only."""
    n_candidates: PositiveInt = 100
    n_similar: NonNegativeInt = 20
    batch_size: PositiveInt = 1024

    @classmethod
    def setting_fields(cls) -> set[str]:
        """The fields that set up the instance rather than its model (not constructor arguments)."""
        return set(GeneratorConfig.model_fields)

    def params(self) -> dict:
        """The hyper-parameters: every field a kind adds to the shared ones."""
        return self.model_dump(exclude=self.setting_fields())

    def computing_settings(self) -> dict:
        """The settings the instance's output depends on (its reuse key's share of its section):
        all of them, less those a kind declares unused by the way it is set up."""
        return self.model_dump(mode="json")


class FactorGeneratorConfig(GeneratorConfig):
    """Settings of a kind whose scores are inner products of user and item vectors (ALS, BPR,
    item2item, a :class:`~encore.recommenders.factorization.FactorRecommender` of one's own):
    how its top-N lists and similar items are retrieved (docs/retrieval.md)."""

    retrieval: Retrieval = "exact"
    """``exact``: every item scored; ``ann``: an approximate index over the item vectors."""
    ann: AnnConfig = Field(default_factory=AnnConfig)
    """The index of ``retrieval: ann`` (unused with ``exact``)."""

    @classmethod
    def setting_fields(cls) -> set[str]:
        """The shared fields and the retrieval settings."""
        return set(FactorGeneratorConfig.model_fields)

    def computing_settings(self) -> dict:
        """Without ``ann`` under ``retrieval: exact``: the index is never built, so a change of its
        settings (or of their defaults) must not recompute an exact instance."""
        dumped = super().computing_settings()
        if self.retrieval == "exact":
            dumped.pop("ann")
        return dumped


@dataclass(frozen=True)
class StageView:
    """What a model fit on one stage may see: the one input of every ``fit``.

    ``user_items`` (n_users, n_items) play weights; ``item_features`` (n_items, n_tags) leak-free
    tag counts; ``social`` (n_users, n_users) friend links or None; ``timestamps`` (n_users,
    n_items) last-play unix seconds or None. ``parts``: the Parquet files (user, item, weight rows) whose
    per-pair sums are ``user_items``, for a kind whose engine reads them itself (``als_spark``); empty
    when the view was built from matrices only.
    """

    user_items: sp.csr_matrix
    item_features: sp.csr_matrix | None = None
    social: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    parts: tuple[Path, ...] = ()


class SideDataMissing(ValueError):
    """A kind needs side data (e.g. social links) that the dataset does not have."""


class SettingUnfit(ValueError):
    """A hyper-parameter leaves the model nothing to fit on this data (e.g. no item reaches
    EASE's ``min_item_users``). ``key`` names the setting; the pipeline prefixes the instance."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class ModelOutputError(ValueError):
    """A model's ``score``/``recommend``/``similar_items`` returned arrays of the wrong shape,
    dtype or values (NaN); the message names the class and the method."""
