"""The headline a pipeline's parent run carries: a few dozen metrics a person compares runs by.

The runs table and the compare view of MLflow list every metric of a run; a parent run with every
model x segment x metric x k (~1,900 values) buries what matters. The headline is, for the primary
metric only: every model on all test users (the ranker beside every generator), the ranker and the
best generator per segment, the ranker's uplift over the best generator with its interval and
p-value per segment, and the test users per segment; ``<primary>`` and ``uplift_vs_best_generator``
stay the keys runs are sorted and promoted by. The full cross-product is a table artifact
(``comparison_segments.csv``), and on the parent run too with ``tracking.log_all_metrics: true``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

UPLIFT = "uplift_vs_best_generator"
UPLIFT_KEYS = {"": "rel_uplift", "_ci_low": "rel_ci_low", "_ci_high": "rel_ci_high", "_p_value": "p_value"}
"""Metric-key suffix -> the paired comparison's field (:class:`~encore.evaluation.metrics.PairedComparison`)."""


def headline_metrics(primary: str, segments: Mapping[str, Mapping[str, Any]], prefix: str = "") -> dict[str, float]:
    """The headline of per-segment summaries (``significance.json``'s or the fold pool's ``segments``:
    ``n_users``, ``best_generator``, ``{primary: {model: value}}``, ``vs_best_generator``), keys
    prefixed with ``prefix`` (``pooled.`` for a pool of folds), plus the unprefixed ``<primary>`` of
    the headline model (the ranker, else the best generator) and the all-user uplift."""
    out: dict[str, float] = {}
    for segment, entry in segments.items():
        suffix = "" if segment == "all" else f".{segment}"
        out[f"{prefix}n_test_users.{segment}"] = float(entry["n_users"])
        scores = entry.get(primary)
        if not scores:  # an empty segment: nothing evaluated
            continue
        if segment == "all":
            out |= {f"{prefix}{model}.{primary}": float(value) for model, value in scores.items()}
        elif "ranker" in scores:
            out[f"{prefix}ranker{suffix}.{primary}"] = float(scores["ranker"])
        out[f"{prefix}best_generator{suffix}.{primary}"] = float(scores[entry["best_generator"]])
        vs_best = entry.get("vs_best_generator")
        if vs_best is not None and np.isfinite(vs_best["rel_uplift"]):
            out |= {f"{prefix}{UPLIFT}{suffix}{key}": float(vs_best[field]) for key, field in UPLIFT_KEYS.items()}
    headline = segments["all"]
    model = "ranker" if "ranker" in headline[primary] else headline["best_generator"]
    out[primary] = float(headline[primary][model])
    out |= {f"{UPLIFT}{key}": out[f"{prefix}{UPLIFT}{key}"] for key in UPLIFT_KEYS if f"{prefix}{UPLIFT}{key}" in out}
    return out


def headline_tags(segments: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """``encore.best_generator[.<segment>]``: which model the ``best_generator.*`` metrics are of."""
    return {f"encore.best_generator{'' if segment == 'all' else '.' + segment}": str(entry["best_generator"])
            for segment, entry in segments.items() if entry.get("best_generator")}
