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
Exact definitions are in ``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from os import PathLike

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy import stats

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
    "novelty",
    "paired_comparison",
    "per_user_metric",
    "plot_metric_vs_k",
    "precision_at_k",
    "recall_at_k",
    "reciprocal_rank_at_k",
    "user_coverage",
]

PADDING = -1
"""Value that fills a recommendation row past its last item."""

# Target number of stored values per user chunk in intra_list_diversity (~100 MB of
# float64 + int32 index), so 50k users with rich tag features never blow up memory.
_ILD_CHUNK_NNZ = 8_000_000
# Target number of int64 indices per bootstrap batch (~64 MB).
_BOOTSTRAP_BATCH_ELEMENTS = 8_000_000


# ----------------------------------------------------------------------------- validation


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_recommendations(recommendations: np.ndarray, n_items: int | None = None) -> np.ndarray:
    """Return ``recommendations`` as a 2-D int64 array after range checks."""
    recs = np.asarray(recommendations)
    if recs.ndim != 2:
        raise ValueError(f"recommendations must be 2-D (n_users, K), got shape {recs.shape}")
    if recs.size and not np.issubdtype(recs.dtype, np.integer):
        raise ValueError(f"recommendations must hold integer item indices, got dtype {recs.dtype}")
    recs = recs.astype(np.int64, copy=False)
    if recs.size:
        if recs.min() < PADDING:
            raise ValueError(f"recommendations contain negative indices other than the padding {PADDING}")
        if n_items is not None and recs.max() >= n_items:
            raise ValueError(f"recommendations contain item index {recs.max()} >= n_items={n_items}")
    return recs


def _check_no_duplicates(recs: np.ndarray) -> None:
    # A duplicated item would be counted as two hits (precision > 1), so refuse it.
    if recs.shape[1] < 2:
        return
    s = np.sort(recs, axis=1)
    dup = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] != PADDING)
    if dup.any():
        row = int(np.flatnonzero(dup.any(axis=1))[0])
        raise ValueError(f"recommendations row {row} contains a duplicated item")


def _check_relevant(relevant: sp.spmatrix | sp.sparray, n_users: int) -> sp.csr_matrix:
    """Return a canonical binary CSR copy of ``relevant`` (sorted, no duplicates, no explicit zeros)."""
    if not sp.issparse(relevant):
        raise ValueError("relevant must be a scipy.sparse matrix (n_users, n_items)")
    rel = sp.csr_matrix(relevant, copy=True)
    if rel.shape[0] != n_users:
        raise ValueError(f"relevant has {rel.shape[0]} rows but recommendations have {n_users}")
    rel.eliminate_zeros()
    rel.sum_duplicates()  # also sorts the column indices of every row
    rel.data = np.ones_like(rel.data, dtype=np.int8)
    return rel


def _n_relevant(relevant: sp.csr_matrix) -> np.ndarray:
    """Number of relevant items per user, shape ``(n_users,)``; raises if any is 0."""
    n_rel = np.diff(relevant.indptr).astype(np.int64)
    if n_rel.size and n_rel.min() == 0:
        row = int(np.flatnonzero(n_rel == 0)[0])
        raise ValueError(f"relevant row {row} is empty; drop users without held-out items before evaluating")
    return n_rel


def _check_hits(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, int]:
    k = _check_k(k)
    hits = np.asarray(hits)
    if hits.ndim != 2:
        raise ValueError(f"hits must be 2-D (n_users, K), got shape {hits.shape}")
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (hits.shape[0],):
        raise ValueError(f"n_relevant must have shape ({hits.shape[0]},), got {n_rel.shape}")
    if n_rel.size and n_rel.min() <= 0:
        raise ValueError("every user needs at least one relevant item (n_relevant > 0)")
    # k > K: the missing positions are misses, so only the first min(k, K) columns matter.
    return hits[:, :k].astype(bool, copy=False), n_rel.astype(np.float64), k


def _top_k(recommendations: np.ndarray, k: int, n_items: int | None = None) -> np.ndarray:
    return _check_recommendations(recommendations, n_items)[:, : _check_k(k)]


# ----------------------------------------------------------------------------- hits


def hits_matrix(recommendations: np.ndarray, relevant: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Which recommended items are relevant.

    Parameters
    ----------
    recommendations:
        int array ``(n_users, K)``, ``-1``-padded; no item may repeat within a row.
    relevant:
        sparse ``(n_users, n_items)``; any stored nonzero is a relevant item.

    Returns
    -------
    bool array ``(n_users, K)``: ``hit[u, j]`` iff ``recommendations[u, j]`` is relevant
    for ``u``. Padding is never a hit.
    """
    recs = _check_recommendations(recommendations)
    rel = _check_relevant(relevant, recs.shape[0])
    n_users, n_items = rel.shape
    if recs.size and recs.max() >= n_items:
        raise ValueError(f"recommendations contain item index {recs.max()} >= n_items={n_items}")
    _check_no_duplicates(recs)
    # Encode (user, item) as one int64 key u * n_items + i. CSR in canonical form
    # lists its keys in ascending order, so a single searchsorted finds every hit.
    rel_rows = np.repeat(np.arange(n_users, dtype=np.int64), np.diff(rel.indptr))
    rel_keys = rel_rows * n_items + rel.indices.astype(np.int64)
    rec_keys = np.arange(n_users, dtype=np.int64)[:, None] * n_items + recs
    if rel_keys.size == 0:
        return np.zeros(recs.shape, dtype=bool)
    pos = np.searchsorted(rel_keys, rec_keys)
    pos = np.minimum(pos, rel_keys.size - 1)
    return (rel_keys[pos] == rec_keys) & (recs != PADDING)


# ----------------------------------------------------------------------------- per-user ranking metrics


def precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top ``k`` divided by ``k``, shape ``(n_users,)``.

    ``hits`` is ``(n_users, K)`` bool from :func:`hits_matrix`; ``n_relevant`` is
    ``(n_users,)``. The denominator is ``k`` even when ``K < k`` or the list is
    padded: an empty slot is a wasted slot.
    """
    h, _, k = _check_hits(hits, n_relevant, k)
    return h.sum(axis=1) / k


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top ``k`` divided by ``|relevant|``, shape ``(n_users,)``.

    Not capped at ``min(|relevant|, k)``, so it is below 1 whenever ``|relevant| > k``.
    """
    h, n_rel, _ = _check_hits(hits, n_relevant, k)
    return h.sum(axis=1) / n_rel


def _discounts(k: int) -> np.ndarray:
    """``1 / log2(rank + 1)`` for ranks ``1..k``, shape ``(k,)``."""
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Normalised DCG with binary gains, shape ``(n_users,)``.

    ``DCG = sum_{rank<=k} hit(rank) / log2(rank + 1)``; the ideal DCG places
    ``min(|relevant|, k)`` hits at the top.
    """
    h, n_rel, k = _check_hits(hits, n_relevant, k)
    disc = _discounts(k)
    dcg = h @ disc[: h.shape[1]]
    idcg = np.cumsum(disc)[np.minimum(n_rel, k).astype(np.int64) - 1]
    return dcg / idcg


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision (the per-user term of MAP), shape ``(n_users,)``.

    ``AP = sum_{rank<=k} hit(rank) * precision@rank / min(|relevant|, k)``.
    """
    h, n_rel, k = _check_hits(hits, n_relevant, k)
    ranks = np.arange(1, h.shape[1] + 1, dtype=np.float64)
    prec_at_rank = np.cumsum(h, axis=1) / ranks
    return (prec_at_rank * h).sum(axis=1) / np.minimum(n_rel, k)


def hit_rate_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """1.0 if at least one hit in the top ``k`` else 0.0, shape ``(n_users,)``."""
    h, _, _ = _check_hits(hits, n_relevant, k)
    return h.any(axis=1).astype(np.float64)


def reciprocal_rank_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """``1 / rank`` of the first hit in the top ``k`` (rank from 1), 0.0 if none; shape ``(n_users,)``."""
    h, _, _ = _check_hits(hits, n_relevant, k)
    if h.shape[1] == 0:
        return np.zeros(h.shape[0])
    first = h.argmax(axis=1)  # index of the first True; 0 for rows without hits
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


MetricFn = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

RANKING_METRICS: dict[str, MetricFn] = {
    "precision": precision_at_k,
    "recall": recall_at_k,
    "ndcg": ndcg_at_k,
    "map": average_precision_at_k,
    "hit_rate": hit_rate_at_k,
    "mrr": reciprocal_rank_at_k,
}
"""Per-user metric functions by the name used in result keys (``"ndcg@10"``)."""


# ----------------------------------------------------------------------------- beyond accuracy


def user_coverage(recommendations: np.ndarray, k: int) -> float:
    """Share of users whose first ``k`` slots all hold items (no ``-1``).

    ``recommendations`` is ``(n_users, K)``. If ``K < k`` no list can be full, so 0.0.
    """
    top = _top_k(recommendations, k)
    if top.shape[0] == 0:
        return float("nan")
    if top.shape[1] < k:
        return 0.0
    return float((top != PADDING).all(axis=1).mean())


def catalog_coverage(recommendations: np.ndarray, k: int, train_items: np.ndarray) -> float:
    """Share of the training catalogue that appears in at least one user's top ``k``.

    ``recommendations`` is ``(n_users, K)``; ``train_items`` holds the item indices
    seen in training (any shape, duplicates ignored). Recommended items outside
    ``train_items`` do not count.
    """
    top = _top_k(recommendations, k)
    catalogue = np.unique(np.asarray(train_items, dtype=np.int64))
    if catalogue.size == 0:
        raise ValueError("train_items is empty")
    shown = np.unique(top[top != PADDING])
    return float(np.isin(catalogue, shown, assume_unique=True).mean())


def _mean_of_user_means(top: np.ndarray, item_values: np.ndarray) -> float:
    """Mean over users of the mean of ``item_values`` over their valid items.

    Users with no item in the list are left out (they have nothing to average);
    nan if no user has an item.
    """
    valid = top != PADDING
    n = valid.sum(axis=1)
    has = n > 0
    if not has.any():
        return float("nan")
    vals = np.where(valid, item_values[np.where(valid, top, 0)], 0.0)
    return float((vals.sum(axis=1)[has] / n[has]).mean())


def novelty(recommendations: np.ndarray, k: int, item_user_counts: np.ndarray, n_train_users: int) -> float:
    """Mean self-information of recommended items, in bits.

    ``novelty = mean_u mean_{i in top_k(u)} -log2(max(c_i, 1) / n_train_users)`` where
    ``c_i = item_user_counts[i]`` (shape ``(n_items,)``) is the number of training
    users of item ``i``. Items never seen in training are treated as seen by one user
    (the rarest possible) so the value stays finite. Users with an empty list are
    left out of the mean.
    """
    counts = np.asarray(item_user_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"item_user_counts must be 1-D (n_items,), got shape {counts.shape}")
    if n_train_users < 1:
        raise ValueError(f"n_train_users must be >= 1, got {n_train_users}")
    if counts.size and (counts.min() < 0 or counts.max() > n_train_users):
        raise ValueError("item_user_counts must be user counts in [0, n_train_users]")
    top = _top_k(recommendations, k, counts.size)
    self_info = -np.log2(np.maximum(counts, 1.0) / n_train_users)
    return _mean_of_user_means(top, self_info)


def average_popularity(recommendations: np.ndarray, k: int, item_user_counts: np.ndarray) -> float:
    """Mean over users of the mean training popularity (user count) of their top-``k`` items.

    ``item_user_counts`` has shape ``(n_items,)``. Users with an empty list are left out.
    """
    counts = np.asarray(item_user_counts, dtype=np.float64)
    if counts.ndim != 1:
        raise ValueError(f"item_user_counts must be 1-D (n_items,), got shape {counts.shape}")
    top = _top_k(recommendations, k, counts.size)
    return _mean_of_user_means(top, counts)


def _l2_normalise_rows(x: sp.csr_matrix) -> tuple[sp.csr_matrix, np.ndarray]:
    """Row-normalised copy of ``x`` and a mask of rows with a nonzero norm."""
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1)).ravel())
    has = norms > 0
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=has)
    return sp.csr_matrix(sp.diags(scale) @ x), has


def intra_list_diversity(
    recommendations: np.ndarray, k: int, item_features: sp.spmatrix | sp.sparray
) -> float:
    """Mean pairwise cosine distance within each top-``k`` list, averaged over users.

    ``item_features`` is sparse ``(n_items, n_features)``; rows are L2-normalised.
    For a list of ``m`` normalised vectors ``x_1..x_m``,
    ``sum_{i<j} cos(x_i, x_j) = (||sum_i x_i||^2 - m) / 2``, so
    ``ILD = 1 - (||sum_i x_i||^2 - m) / (m (m - 1))`` needs one sparse product per user
    chunk instead of an ``m x m`` Gram matrix per user.

    Items without features (all-zero rows) have no defined cosine and are skipped;
    users left with fewer than two featured items are left out of the mean
    (nan if no user qualifies).
    """
    feats = sp.csr_matrix(item_features, dtype=np.float64)
    top = _top_k(recommendations, k, feats.shape[0])
    x, has_features = _l2_normalise_rows(feats)
    use = (top != PADDING) & has_features[np.where(top != PADDING, top, 0)]
    m = use.sum(axis=1)
    eligible = np.flatnonzero(m >= 2)
    if eligible.size == 0:
        return float("nan")
    top, use, m = top[eligible], use[eligible], m[eligible].astype(np.float64)

    # Chunk users so that the (chunk, n_features) sum matrix stays bounded in memory.
    nnz_per_item = max(1.0, x.nnz / max(1, int(has_features.sum())))
    chunk = max(1, int(_ILD_CHUNK_NNZ // (nnz_per_item * max(1, top.shape[1]))))
    sq_norm = np.empty(top.shape[0])
    for start in range(0, top.shape[0], chunk):
        t, u = top[start : start + chunk], use[start : start + chunk]
        rows = np.nonzero(u)[0]
        sel = sp.csr_matrix(
            (np.ones(rows.size), (rows, t[u])), shape=(t.shape[0], x.shape[0])
        )  # sel[u, i] = 1 if i is a featured item in u's list
        summed = sp.csr_matrix(sel @ x)
        row_of_value = np.repeat(np.arange(t.shape[0]), np.diff(summed.indptr))
        sq_norm[start : start + chunk] = np.bincount(
            row_of_value, weights=summed.data**2, minlength=t.shape[0]
        )

    mean_cos = (sq_norm - m) / (m * (m - 1.0))
    # The identity subtracts two close numbers; clip float noise back into [0, 2].
    return float(np.clip(1.0 - mean_cos, 0.0, 2.0).mean())


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
    ``item_user_counts``; ``diversity`` needs ``item_features``.
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


# ----------------------------------------------------------------------------- paired significance


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of a per-user metric between a baseline ``a`` and a challenger ``b``.

    Differences are ``b - a``, so positive means the challenger is better.
    ``ci_low``/``ci_high`` bound the mean difference and ``rel_ci_low``/``rel_ci_high``
    the relative uplift ``mean_b / mean_a - 1`` (percentile bootstrap over users).
    ``t_statistic``/``p_value`` come from a two-sided paired t-test.
    """

    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    rel_uplift: float
    ci_low: float
    ci_high: float
    rel_ci_low: float
    rel_ci_high: float
    t_statistic: float
    p_value: float
    n_better: int
    n_worse: int
    confidence: float
    n_resamples: int

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict of all fields (e.g. for ``mlflow.log_dict`` or a DataFrame row)."""
        return asdict(self)


def _paired_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = b - a
    # scipy returns nan for zero-variance differences; resolve those cases explicitly:
    # all-equal pairs are "no evidence", a constant nonzero shift is certain.
    if np.ptp(d) == 0:
        if d[0] == 0:
            return 0.0, 1.0
        return float(np.sign(d[0]) * np.inf), 0.0
    res = stats.ttest_rel(b, a)  # two-sided, statistic > 0 when b is better
    return float(res.statistic), float(res.pvalue)


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    *,
    metric: str = "ndcg@10",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
) -> PairedComparison:
    """Compare per-user metric values of baseline ``a`` and challenger ``b``.

    ``a`` and ``b`` have shape ``(n_users,)`` and are paired by position (same users,
    e.g. from :func:`per_user_metric`). The bootstrap resamples users with replacement
    ``n_resamples`` times, in batches of ``(batch, n_users)`` indices to bound memory,
    from ``np.random.default_rng(random_state)``, so results are deterministic.
    The relative-uplift interval is nan/inf-prone when ``mean_a`` can be 0.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.ndim != 1 or a.shape != b.shape:
        raise ValueError(f"a and b must be 1-D with equal shapes, got {a.shape} and {b.shape}")
    n = a.size
    if n < 2:
        raise ValueError("need at least two paired users")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("a and b must be finite")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")

    mean_a, mean_b = float(a.mean()), float(b.mean())
    d = b - a
    t_stat, p_value = _paired_t_test(a, b)

    rng = np.random.default_rng(random_state)
    boot_a = np.empty(n_resamples)
    boot_b = np.empty(n_resamples)
    batch = max(1, min(n_resamples, _BOOTSTRAP_BATCH_ELEMENTS // n))
    for start in range(0, n_resamples, batch):
        stop = min(start + batch, n_resamples)
        idx = rng.integers(0, n, size=(stop - start, n))
        boot_a[start:stop] = a[idx].mean(axis=1)
        boot_b[start:stop] = b[idx].mean(axis=1)

    alpha = 1.0 - confidence
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    ci_low, ci_high = np.quantile(boot_b - boot_a, q)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel_ci_low, rel_ci_high = np.quantile(boot_b / boot_a - 1.0, q)
        rel_uplift = (mean_b - mean_a) / mean_a if mean_a != 0 else float("nan")

    return PairedComparison(
        metric=metric,
        n_users=int(n),
        mean_a=mean_a,
        mean_b=mean_b,
        diff=mean_b - mean_a,
        rel_uplift=float(rel_uplift),
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        rel_ci_low=float(rel_ci_low),
        rel_ci_high=float(rel_ci_high),
        t_statistic=t_stat,
        p_value=p_value,
        n_better=int((d > 0).sum()),
        n_worse=int((d < 0).sum()),
        confidence=float(confidence),
        n_resamples=int(n_resamples),
    )


# ----------------------------------------------------------------------------- reporting


def metrics_table(results: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """Models as rows, metric keys as columns (first-seen order); missing values are nan."""
    columns: dict[str, None] = {}
    for metrics in results.values():
        columns.update(dict.fromkeys(metrics))
    table = pd.DataFrame(
        [[metrics.get(c, np.nan) for c in columns] for metrics in results.values()],
        index=pd.Index(list(results), name="model"),
        columns=list(columns),
        dtype=np.float64,
    )
    return table


def _metric_by_k(metrics: Mapping[str, float], metric: str) -> tuple[list[int], list[float]]:
    prefix = f"{metric}@"
    pairs = sorted(
        (int(key[len(prefix) :]), float(value))
        for key, value in metrics.items()
        if key.startswith(prefix) and key[len(prefix) :].isdigit()
    )
    return [k for k, _ in pairs], [v for _, v in pairs]


def plot_metric_vs_k(
    results: Mapping[str, Mapping[str, float]], metric: str, path: str | PathLike[str]
) -> None:
    """Write a PNG of ``metric@k`` against ``k``, one line per model.

    ``metric`` is the bare name (``"ndcg"``). Uses the Agg canvas directly rather than
    pyplot, so it neither needs a display nor changes the process-wide backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    series: Sequence[tuple[str, list[int], list[float]]] = [
        (model, *_metric_by_k(metrics, metric)) for model, metrics in results.items()
    ]
    if not any(ks for _, ks, _ in series):
        raise ValueError(f"no '{metric}@k' values in results")

    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for model, ks, values in series:
        if ks:
            ax.plot(ks, values, marker="o", label=model)
    all_ks = sorted({k for _, ks, _ in series for k in ks})
    ax.set_xticks(all_ks)
    ax.set_xlabel("k")
    ax.set_ylabel(f"{metric}@k")
    ax.set_title(f"{metric}@k by model")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, format="png")
