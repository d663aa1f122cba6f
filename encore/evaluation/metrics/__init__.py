"""Offline evaluation of top-K recommendations: ranking metrics, beyond-accuracy
metrics, candidate recall and paired significance tests.

Conventions shared with the rest of Encore
------------------------------------------
``recommendations``
    ``np.ndarray`` of integer item indices, shape ``(n_users, K)``, best first,
    padded with ``-1`` when a user has fewer than ``K`` items. ``-1`` is never an
    item, wherever it appears in a row.
``relevant``
    ``scipy.sparse.csr_matrix`` of shape ``(n_users, n_items)``; a stored nonzero
    means "held-out relevant item" (binary relevance, the value is ignored).
    Row ``u`` belongs to row ``u`` of ``recommendations``. Users without relevant
    items must be dropped by the caller: the per-user metrics raise ``ValueError``.

Everything is vectorised over users; the only Python loops are over cutoffs,
bootstrap batches and fixed-size user chunks that bound memory.
Exact definitions are in ``docs/evaluation.md`` ("Metrics").

One module per job: :mod:`.ranking` (per-user ranking metrics), :mod:`.beyond` (coverage,
novelty, popularity, diversity), :mod:`.significance` (paired tests), :mod:`.reporting`
(table, plot); this package holds the entry points that combine them and re-exports all.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import scipy.sparse as sp

from encore.evaluation.significance import PairedComparison, paired_comparison, paired_comparisons

from .accuracy import (
    RANKING_METRICS,
    _check_k,
    _check_recommendations,
    _check_relevant,
    _n_relevant,
    average_precision_at_k,
    hit_rate_at_k,
    hits_matrix,
    ndcg_at_k,
    precision_at_k,
    recall_at_k,
    reciprocal_rank_at_k,
)
from .beyond_accuracy import (
    average_popularity,
    catalog_coverage,
    intra_list_diversity,
    new_item_exposure,
    novelty,
    user_coverage,
)
from .reporting import metrics_table, plot_importance, plot_metric_vs_k, plot_segments

__all__ = [
    "RANKING_METRICS",
    "PairedComparison",
    "average_popularity",
    "average_precision_at_k",
    "candidate_recall",
    "catalog_coverage",
    "evaluate",
    "hit_rate_at_k",
    "hits_matrix",
    "intra_list_diversity",
    "metrics_table",
    "ndcg_at_k",
    "new_item_exposure",
    "novelty",
    "paired_comparison",
    "paired_comparisons",
    "per_user_metric",
    "plot_importance",
    "plot_metric_vs_k",
    "plot_segments",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "user_coverage",
]

# ----------------------------------------------------------------------------- evaluation entry points


def evaluate(
    recommendations: np.ndarray,
    relevant: sp.spmatrix | sp.sparray,
    ks: Iterable[int] = (5, 10, 20, 50),
    *,
    item_user_counts: np.ndarray | None = None,
    n_train_users: int | None = None,
    train_items: np.ndarray | None = None,
    item_features: sp.spmatrix | sp.sparray | None = None,
) -> dict[str, float]:
    """All metrics at every cutoff, as ``{"ndcg@10": 0.12, ...}``.

    Ranking metrics (``precision recall ndcg map hit_rate mrr``) are means over users
    and ``user_coverage`` is always reported. Beyond-accuracy metrics appear only when
    their inputs are given: ``catalog_coverage`` needs ``train_items``; ``novelty``
    needs ``item_user_counts`` and ``n_train_users``; ``avg_popularity`` needs
    ``item_user_counts``, as does ``new_item_exposure`` (share of slots on items without
    training listeners); ``diversity`` needs ``item_features``.
    """
    recs = _check_recommendations(recommendations)
    rel = _check_relevant(relevant, recs.shape[0])
    if recs.shape[0] == 0:
        raise ValueError("no users to evaluate")
    hits = hits_matrix(recs, rel)  # computed once, sliced per k
    n_rel = _n_relevant(rel)
    out: dict[str, float] = {}
    for k in ks:
        k = _check_k(k)
        for name, fn in RANKING_METRICS.items():
            out[f"{name}@{k}"] = float(fn(hits, n_rel, k).mean())
        out[f"user_coverage@{k}"] = user_coverage(recs, k)
        if train_items is not None:
            out[f"catalog_coverage@{k}"] = catalog_coverage(recs, k, train_items)
        if item_user_counts is not None and n_train_users is not None:
            out[f"novelty@{k}"] = novelty(recs, k, item_user_counts, n_train_users)
        if item_features is not None:
            out[f"diversity@{k}"] = intra_list_diversity(recs, k, item_features)
        if item_user_counts is not None:
            out[f"avg_popularity@{k}"] = average_popularity(recs, k, item_user_counts)
            out[f"new_item_exposure@{k}"] = new_item_exposure(recs, k, item_user_counts)
    return out


def per_user_metric(
    recommendations: np.ndarray, relevant: sp.spmatrix | sp.sparray, metric: str, k: int
) -> np.ndarray:
    """One ranking metric per user, shape ``(n_users,)``, for paired significance tests.

    ``metric`` is one of ``precision recall ndcg map hit_rate mrr`` (a ``"@k"`` suffix
    is not accepted; pass ``k`` separately).
    """
    if metric not in RANKING_METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {sorted(RANKING_METRICS)}")
    recs = _check_recommendations(recommendations)
    rel = _check_relevant(relevant, recs.shape[0])
    return RANKING_METRICS[metric](hits_matrix(recs, rel), _n_relevant(rel), k)


def candidate_recall(
    candidates: np.ndarray | sp.spmatrix | sp.sparray, relevant: sp.spmatrix | sp.sparray
) -> float:
    """Share of all relevant (user, item) pairs found anywhere in the candidate set.

    Micro average: ``|candidates ∩ relevant| / |relevant|`` over all pairs, so users
    with more relevant items weigh more. ``candidates`` is either sparse
    ``(n_users, n_items)`` (nonzero = candidate) or a ``-1``-padded int array
    ``(n_users, K)``. This is the ceiling any re-ranker of these candidates can reach
    on recall.
    """
    if sp.issparse(candidates):
        cand = sp.csr_matrix(candidates, copy=True)
        rel = _check_relevant(relevant, cand.shape[0])
        if cand.shape != rel.shape:
            raise ValueError(f"candidates shape {cand.shape} != relevant shape {rel.shape}")
        cand.eliminate_zeros()
        cand.sum_duplicates()
        cand.data = np.ones_like(cand.data, dtype=np.int8)
        n_found = cand.multiply(rel).nnz
    else:
        recs = _check_recommendations(candidates)
        rel = _check_relevant(relevant, recs.shape[0])
        n_found = int(hits_matrix(recs, rel).sum())
    if rel.nnz == 0:
        raise ValueError("relevant has no nonzero entries")
    return n_found / rel.nnz
