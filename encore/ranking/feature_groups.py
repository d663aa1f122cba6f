"""Ranker feature groups: the protocol, the stage data they read, and the registry.

A feature group is a class that, once per stage, builds whatever it looks up (its
``__init__`` gets the stage's :class:`StageData`), then computes named float columns for
batches of candidate (user, item) pairs (:meth:`FeatureGroup.compute`). The ranker's
``components.ranker.features`` lists the groups it uses: a built-in name (``generator``,
``user``, ``item``, ``user_item``, ``social``) or a user's class as ``package.module:Class``
(docs/extending.md, "A ranker feature group").

This module imports no model code: config validation checks built-in names against
:data:`BUILTIN` and imports only a user's own class, so a config load does not pull in
scikit-learn through the built-in groups.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.plugins import import_subclass, is_import_path

if TYPE_CHECKING:
    from encore.recommenders.base import Recommender

SECONDS_PER_DAY = 86_400.0

_PACKAGE = __name__.rpartition(".")[0]
BUILTIN: dict[str, str] = {name: f"{_PACKAGE}.features:{cls}" for name, cls in (
    ("generator", "GeneratorFeatures"), ("user", "UserFeatures"), ("item", "ItemFeatures"),
    ("user_item", "UserItemFeatures"), ("social", "SocialFeatures"),
)}
"""The built-in groups by config name, in the order their columns come (the model's column order)."""



@dataclass
class StageData:
    """What one stage may see. Matrices: ``user_items`` (n_users, n_items) play counts,
    ``item_features`` (n_items, n_tags), ``social`` (n_users, n_users), ``timestamps``
    (n_users, n_items) last-play unix seconds; ``models`` the stage's fitted generator and
    feature models by instance name, ``candidates`` each proposing instance's (user, item,
    rank) lists for the batch at hand; ``now`` the stage's latest timestamp (0 without
    timestamps) and ``recent_days`` the window of recency features; ``item_release``
    (n_items,) release unix seconds, NaN where unknown (catalogue metadata, None without)."""

    user_items: sp.csr_matrix
    item_features: sp.csr_matrix
    models: Mapping[str, Recommender]
    candidates: Mapping[str, pd.DataFrame]
    social: sp.csr_matrix | None = None
    timestamps: sp.csr_matrix | None = None
    now: float = 0.0
    recent_days: float = 30.0
    item_release: np.ndarray | None = None

    @property
    def n_items(self) -> int:
        return self.user_items.shape[1]

    @property
    def recent_seconds(self) -> float:
        return self.recent_days * SECONDS_PER_DAY


def latest_timestamp(timestamps: sp.csr_matrix | None) -> float:
    """The stage's "now": its latest timestamp, 0 without timestamps."""
    return float(timestamps.data.max()) if timestamps is not None and timestamps.nnz else 0.0


class FeatureGroup:
    """One group of ranker features. Subclass it, set ``name`` (the column prefix you report in
    errors), list in ``needs`` the optional :class:`StageData` fields it cannot do without
    (``"social"``, ``"timestamps"``: without them the group adds no column), and implement
    :meth:`compute`. ``__init__`` runs once per stage: build stage-wide tables there, never
    anything of size users x items (the ranker calls :meth:`compute` batch by batch)."""

    name: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()

    def __init__(self, data: StageData) -> None:
        self.data = data

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> Mapping[str, np.ndarray]:
        """Named float columns for the pairs ``(users[j], items[j])``, sorted by user (int64 ids).
        ``data`` is the stage's data with this batch's ``candidates``. Every value may depend
        only on the pair, its user's rows and the stage: then batching changes nothing."""
        raise NotImplementedError


class FeatureGroupError(ValueError):
    """A feature group name that names no usable class; the message says why."""


def feature_group_class(name: str) -> type[FeatureGroup]:
    """The class of group ``name``: a built-in name, or ``package.module:Class`` imported on demand."""
    if name in BUILTIN:
        return _import(BUILTIN[name], name)
    if not is_import_path(name):
        raise FeatureGroupError(f"unknown feature group '{name}'; built-in: {', '.join(BUILTIN)}; or your own "
                                "class as 'package.module:ClassName'")
    return _import(name, name)


def check_feature_group(name: str) -> str:
    """``name`` if it names a usable group (built-in names are not imported), FeatureGroupError otherwise."""
    if name not in BUILTIN:
        feature_group_class(name)
    return name


def distinct(names: list[str]) -> list[str]:
    """``names`` if none is listed twice (a group's columns come once), ValueError otherwise."""
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(f"listed more than once: {twice}")
    return names


def ordered_groups(names: list[str]) -> list[str]:
    """``names`` in column order: built-in groups in their fixed order, then a user's, as listed."""
    return [*(name for name in BUILTIN if name in names), *(name for name in names if name not in BUILTIN)]


def _import(path: str, name: str) -> type[FeatureGroup]:
    try:
        return import_subclass(path, FeatureGroup, "encore.ranking.FeatureGroup")
    except ValueError as exc:
        raise FeatureGroupError(f"feature group '{name}': {exc}") from None
