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

import importlib
import re

from .base import Recommender
from .generator_config import GeneratorConfig

_PACKAGE = __name__.rpartition(".")[0]
BUILTIN: tuple[str, ...] = tuple(f"{_PACKAGE}.{path}" for path in (
    "popular:PopularRecommender", "als:ALSRecommender", "bpr:BPRRecommender", "item2item:Item2ItemRecommender",
    "itemknn:ItemKNNRecommender", "ease:EASERecommender", "friends:FriendsRecommender",
    "userknn:UserKNNRecommender",
))
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
"""``package.module:Class``: a user's own generator kind."""


class KindError(ValueError):
    """A kind that names no usable recommender class; the message says why."""


def is_import_path(kind: str) -> bool:
    return bool(IMPORT_PATH.match(kind))


def recommender_class(kind: str) -> type[Recommender]:
    """The class of ``kind``: a built-in name, or ``module:Class`` imported on demand."""
    if kind in KINDS:
        return KINDS[kind]
    return _import_class(kind)


def _import_class(kind: str) -> type[Recommender]:
    if not is_import_path(kind):
        raise KindError(f"unknown kind '{kind}'; built-in kinds: {', '.join(KINDS)}; or your own class as "
                        "'package.module:ClassName'")
    module_name, _, qualname = kind.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise KindError(f"kind '{kind}': cannot import module '{module_name}' ({exc})") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise KindError(f"kind '{kind}': module '{module_name}' has no attribute '{qualname}'")
        obj = getattr(obj, part)
    if not (isinstance(obj, type) and issubclass(obj, Recommender)):
        raise KindError(f"kind '{kind}': {qualname} is not a subclass of "
                        "encore.recommenders.base.Recommender")
    if not (isinstance(obj.config_class, type) and issubclass(obj.config_class, GeneratorConfig)):
        raise KindError(f"kind '{kind}': {qualname}.config_class must be a subclass of "
                        "encore.recommenders.generator_config.GeneratorConfig")
    return obj


KINDS: dict[str, type[Recommender]] = {cls.name: cls for cls in map(_import_class, BUILTIN)}
