"""Rolling-origin evaluation pooled over folds.

Each fold's ``evaluate`` writes per-user values of the primary metric (one row per test user,
a column per model, the user's ``segment``). Pooling stacks them with a ``fold`` column: the
pooled mean of a model is over every (fold, user) row, and the ranker's uplift over the best
single generator gets a paired *cluster* bootstrap over users (a user tested in several folds
is one unit of evidence, not several), per segment.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from encore.config.component_names import RANKING_STAGES
from encore.evaluation import metrics
from encore.evaluation.headline import headline_metrics, headline_tags
from encore.evaluation.segments import POOLED_SEGMENTS  # the per-user tables' segments

KEY_COLUMNS = ("fold", "user_id", "segment")


def pool_per_user(per_fold: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """Each fold's per-user table stacked, with the fold number first.

    Every fold must have evaluated the same models: a pooled mean over folds that saw
    different models would compare different things.
    """
    frames, models = [], None
    for fold, frame in sorted(per_fold.items()):
        these = [c for c in frame.columns if c not in KEY_COLUMNS]
        if models is None:
            models = these
        elif these != models:
            raise ValueError(f"fold {fold} evaluated models {these}, the first fold {models}: "
                             "pooling needs the same models in every fold")
        frames.append(frame.assign(fold=fold)[[*KEY_COLUMNS, *these]])
    if not frames:
        raise ValueError("no folds to pool")
    return pd.concat(frames, ignore_index=True)


def model_columns(pool: pd.DataFrame) -> list[str]:
    return [c for c in pool.columns if c not in KEY_COLUMNS]


def segment_rows(pool: pd.DataFrame, segment: str) -> pd.DataFrame:
    return pool if segment == "all" else pool[pool["segment"].to_numpy() == segment]


def fold_means(pool: pd.DataFrame) -> pd.DataFrame:
    """Long table ``segment, model, fold, n_users, value``: each fold's mean and the pooled
    mean (``fold`` = ``"pooled"``) of every model in every non-empty segment."""
    models = model_columns(pool)
    rows = []
    for segment in POOLED_SEGMENTS:
        part = segment_rows(pool, segment)
        if part.empty:
            continue
        grouped = part.groupby("fold")[models]
        means, sizes = grouped.mean(), grouped.size()
        for model in models:
            rows += [{"segment": segment, "model": model, "fold": str(fold), "n_users": int(sizes[fold]),
                      "value": float(means.at[fold, model])} for fold in means.index]
            rows.append({"segment": segment, "model": model, "fold": "pooled", "n_users": len(part),
                         "value": float(part[model].mean())})
    return pd.DataFrame(rows, columns=["segment", "model", "fold", "n_users", "value"])


@dataclass
class PooledSummary:
    """What pooling found: per segment the pooled means, the best generator and the ranker's
    paired comparison with it (``None`` without a ranker or with fewer than two users)."""

    primary_metric: str
    folds: list[int]
    segments: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"primary_metric": self.primary_metric, "folds": self.folds, "segments": self.segments}

    def parent_metrics(self) -> dict[str, float]:
        """MLflow metrics of the parent run: the headline (:func:`~encore.evaluation.headline.headline_metrics`)
        of the pool, ``pooled.``-prefixed, ``n_folds``, and the unprefixed ``<primary>`` /
        ``uplift_vs_best_generator`` keys the runs table and ``compare`` sort by."""
        return {"n_folds": float(len(self.folds))} | headline_metrics(self.primary_metric, self.segments, "pooled.")

    def parent_tags(self) -> dict[str, str]:
        """Which generator each ``pooled.best_generator.*`` metric is of."""
        return headline_tags(self.segments)


def pooled_summary(pool: pd.DataFrame, primary: str, *, n_resamples: int, confidence: float,
                   seed: int) -> PooledSummary:
    """Pooled means per segment, and the ranker against the segment's best generator (chosen on
    the pooled mean) by a paired cluster bootstrap over users."""
    models = model_columns(pool)
    baselines = [m for m in models if m not in RANKING_STAGES]
    summary = PooledSummary(primary, sorted(int(f) for f in pool["fold"].unique()))
    for segment in POOLED_SEGMENTS:
        part = segment_rows(pool, segment)
        if part.empty:
            continue
        means = {m: float(part[m].mean()) for m in models}
        best = max(baselines, key=means.__getitem__)
        entry: dict[str, Any] = {"n_users": len(part), "n_distinct_users": int(part["user_id"].nunique()),
                                 "best_generator": best, primary: means}
        if "ranker" in models and part["user_id"].nunique() >= 2:
            comparison = metrics.paired_comparison(
                part[best].to_numpy(), part["ranker"].to_numpy(), metric=primary, n_resamples=n_resamples,
                confidence=confidence, random_state=seed, groups=part["user_id"].to_numpy())
            entry["vs_best_generator"] = comparison.to_dict()
        if {"ranker", "rerank"} <= set(models) and part["user_id"].nunique() >= 2:
            # What re-ranking costs (or gains) against the ranker's own lists, the same users paired.
            entry["rerank_vs_ranker"] = metrics.paired_comparison(
                part["ranker"].to_numpy(), part["rerank"].to_numpy(), metric=primary, n_resamples=n_resamples,
                confidence=confidence, random_state=seed, groups=part["user_id"].to_numpy()).to_dict()
        summary.segments[segment] = entry
    return summary


def markdown(table: pd.DataFrame, summary: PooledSummary) -> str:
    """Per segment a model x (fold 1 .. K, pooled) table of the primary metric, best first, and
    the ranker's pooled uplift over the best generator with its interval."""
    blocks = []
    for segment, entry in summary.segments.items():
        part = table[table["segment"] == segment]
        wide = part.pivot(index="model", columns="fold", values="value")
        columns = [str(f) for f in summary.folds] + ["pooled"]
        wide = wide[columns].sort_values("pooled", ascending=False)
        sizes = part.drop_duplicates("fold").set_index("fold")["n_users"]
        header = ["model", *(f"fold {c} ({sizes[c]})" if c != "pooled" else f"pooled ({sizes[c]})"
                             for c in columns)]
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
        lines += ["| " + " | ".join([str(m), *(f"{v:.4f}" for v in row)]) + " |"
                  for m, row in zip(wide.index, wide.to_numpy(), strict=True)]
        title = f"### {segment}: {entry['n_users']} (fold, user) rows, {entry['n_distinct_users']} users"
        vs = entry.get("vs_best_generator")
        verdict = ""
        if vs is not None and np.isfinite(vs["rel_uplift"]):
            verdict = (f"\n\nranker vs {entry['best_generator']}: {100 * vs['rel_uplift']:+.1f}% "
                       f"({100 * vs['confidence']:.0f}% CI {100 * vs['rel_ci_low']:+.1f}% .. "
                       f"{100 * vs['rel_ci_high']:+.1f}%, cluster bootstrap over {vs['n_groups']} users)")
        blocks.append(title + "\n\n" + "\n".join(lines) + verdict + "\n")
    return "\n".join(blocks)
