"""The generator kinds: Encore's own, and a user's class named by its import path.

``KINDS`` is derived from the classes named in ``BUILTIN``, once; the config union, the
component list and the ranker's accepted kinds all come from it. Adding a kind = one new
module with a :class:`~encore.recommenders.base.Recommender` subclass (and its
``config_class``), named in ``BUILTIN``.

Built-in kinds are named by import path, exactly like a user's own (``module:Class``), and
imported by name: a module that validates configs does not thereby import every model's
code, so editing one model's module changes the reuse key of the outputs it computes (its
instances, and what consumes them) and of nothing else (see :mod:`encore.lineage`).
"""

from __future__ import annotations

from encore.plugins import import_subclass, is_import_path

from .base import Recommender
from .generator_config import GeneratorConfig

_PACKAGE = __name__.rpartition(".")[0]
BUILTIN: tuple[str, ...] = tuple(f"{_PACKAGE}.{path}" for path in (
    "popular:PopularRecommender", "als:ALSRecommender", "bpr:BPRRecommender", "item2item:Item2ItemRecommender",
    "itemknn:ItemKNNRecommender", "ease:EASERecommender", "friends:FriendsRecommender",
    "userknn:UserKNNRecommender", "twotower:TwoTowerRecommender", "sasrec:SASRecRecommender",
    "als_spark:ALSSparkRecommender",
))


class KindError(ValueError):
    """A kind that names no usable recommender class; the message says why."""


def recommender_class(kind: str) -> type[Recommender]:
    """The class of ``kind``: a built-in name, or ``module:Class`` imported on demand."""
    if kind in KINDS:
        return KINDS[kind]
    return _import_class(kind)


def _import_class(kind: str) -> type[Recommender]:
    if not is_import_path(kind):
        raise KindError(f"unknown kind '{kind}'; built-in kinds: {', '.join(KINDS)}; or your own class as "
                        "'package.module:ClassName'")
    try:
        obj = import_subclass(kind, Recommender, "encore.recommenders.base.Recommender")
    except ValueError as exc:
        raise KindError(f"kind '{kind}': {exc}") from None
    qualname = kind.partition(":")[2]
    if not (isinstance(obj.config_class, type) and issubclass(obj.config_class, GeneratorConfig)):
        raise KindError(f"kind '{kind}': {qualname}.config_class must be a subclass of "
                        "encore.recommenders.generator_config.GeneratorConfig")
    return obj


KINDS: dict[str, type[Recommender]] = {cls.name: cls for cls in map(_import_class, BUILTIN)}
