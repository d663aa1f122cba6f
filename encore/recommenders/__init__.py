"""Recommender algorithms, one module per kind, each fitted on ``user_items`` (n_users, n_items).

Each module holds the recommender class and, beside it, its settings model (``config_class``)
and the side data it fits on: the one declaration of a generator kind (:mod:`.generator_config`).
``RECOMMENDERS`` maps the kind used in configs to the class (:mod:`.kinds`).

The classes are imported on first use (``from encore.recommenders import ALSRecommender``
works as usual), so importing this package does not make every model's code part of the
reuse key of whatever imports it.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Recommender, mask_seen, topk
from .generator_config import GeneratorConfig, ModelOutputError, SettingUnfit, SideDataMissing, StageView
from .kinds import BUILTIN, KINDS, KindError, recommender_class

RECOMMENDERS = KINDS
_CLASSES = {cls.__name__: cls for cls in KINDS.values()}
_MODULES = {path.partition(":")[0].rpartition(".")[2] for path in BUILTIN} | {"weighting"}
"""Submodules reachable as attributes: every built-in kind's (from ``BUILTIN``) and weighting."""


def __getattr__(name: str) -> Any:
    if name in _CLASSES:
        return _CLASSES[name]
    if name in _MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "KINDS",
    "RECOMMENDERS",
    "GeneratorConfig",
    "KindError",
    "ModelOutputError",
    "Recommender",
    "SettingUnfit",
    "SideDataMissing",
    "StageView",
    "mask_seen",
    "recommender_class",
    "topk",
    *_CLASSES,
]
