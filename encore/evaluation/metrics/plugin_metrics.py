"""A user's own ranking metrics, named in ``evaluation.metrics`` as ``package.module:function``.

A ranking metric is a function ``(hits, n_relevant, k) -> per-user values``: ``hits`` the
``(n_users, K)`` 0/1 matrix of the lists against the relevant items (best first), ``n_relevant``
each user's number of relevant items, ``k`` the cutoff (docs/extending.md, "A metric").
Registering it adds it to :data:`~encore.evaluation.metrics.accuracy.RANKING_METRICS`, the one
table every evaluation reads: it is then reported at every k of every list (``<name>@<k>``),
per segment, and usable as ``evaluation.primary_metric``, ``tuning.metric`` or ``promote.metric``.

Its name is the function's ``metric_name`` attribute, or else the function's name. The table
is the process's: a config naming the metric registers it, for every evaluation after that.
"""

from __future__ import annotations

import inspect
import re

from encore.plugins import import_object, is_import_path

from .accuracy import RANKING_METRICS, MetricFn

METRIC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
"""Metric names become result keys (``name@k``) and MLflow metric names: lower-case, digits, _."""
BUILTIN = frozenset(RANKING_METRICS)


def import_ranking_metric(path: str) -> tuple[str, MetricFn]:
    """The metric ``package.module:function`` and its name (ValueError saying what is wrong)."""
    if not is_import_path(path):
        raise ValueError(f"'{path}' is not 'package.module:function'")
    try:
        obj = import_object(path)
    except ValueError as exc:
        raise ValueError(f"'{path}': {exc}") from None
    qualname = path.partition(":")[2]
    if not callable(obj):
        raise ValueError(f"'{path}': {qualname} is not a function")
    try:
        inspect.signature(obj).bind(None, None, 1)
    except (TypeError, ValueError):
        raise ValueError(f"'{path}': {qualname} must take (hits, n_relevant, k)") from None
    name = str(getattr(obj, "metric_name", getattr(obj, "__name__", "")))
    if not METRIC_NAME.match(name):
        raise ValueError(f"'{path}': metric name '{name}' must be lower-case letters, digits and _")
    if name in BUILTIN:
        raise ValueError(f"'{path}': '{name}' is a built-in metric; give yours another name (metric_name)")
    return name, obj  # type: ignore[return-value]


def register_ranking_metric(path: str) -> str:
    """Import the metric at ``path`` into :data:`RANKING_METRICS` (again: a no-op); returns ``path``."""
    name, fn = import_ranking_metric(path)
    known = RANKING_METRICS.get(name)
    same = known is not None and (known.__module__, known.__qualname__) == (fn.__module__, fn.__qualname__)
    if known is not None and not same:
        raise ValueError(f"'{path}': another metric is already registered as '{name}'")
    RANKING_METRICS[name] = fn
    return path
