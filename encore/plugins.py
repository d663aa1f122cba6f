"""A user's own code named in an experiment file as ``package.module:QualifiedName``.

Generator kinds, data sources, ranker feature groups and ranking metrics all take this form; this
module is the one place that parses and imports it, so every extension point reports the same
problems in the same words (each caller prefixes what it was importing: ``kind 'x:Y': …``).
"""

from __future__ import annotations

import importlib
import re
from typing import TypeVar

T = TypeVar("T")

IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
"""``package.module:Name`` or ``package.module:Outer.Inner``."""


def is_import_path(text: str) -> bool:
    return bool(IMPORT_PATH.match(text))


def import_object(path: str) -> object:
    """The object ``path`` (``package.module:QualifiedName``) names. Raises ``ValueError`` saying
    what is wrong — not that form, a module that does not import, a missing attribute — and
    nothing else: a module that fails while importing is reported, not propagated."""
    if not is_import_path(path):
        raise ValueError(f"'{path}' is not 'package.module:Name'")
    module_name, _, qualname = path.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:
        detail = str(exc) if isinstance(exc, ImportError) else f"{type(exc).__name__}: {exc}"
        raise ValueError(f"cannot import module '{module_name}' ({detail})") from None
    for part in qualname.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"module '{module_name}' has no attribute '{qualname}'")
        obj = getattr(obj, part)
    return obj


def import_subclass(path: str, base: type[T], base_name: str) -> type[T]:
    """The class ``path`` names, which must subclass ``base`` (named ``base_name`` in the message,
    the public path a user knows). Raises ``ValueError`` as :func:`import_object` does, or
    ``"<Qualname> is not a subclass of <base_name>"``; the caller prefixes what it was importing."""
    obj = import_object(path)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise ValueError(f"{path.partition(':')[2]} is not a subclass of {base_name}")
    return obj
