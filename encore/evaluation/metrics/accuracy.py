"""Per-user ranking metrics (precision, recall, NDCG, MAP, hit rate, MRR) and their input checks.

Conventions: see :mod:`encore.evaluation.metrics`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from encore.evaluation.metric_names import RANKING_METRIC_NAMES

PADDING = -1
"""Value that fills a recommendation row past its last item."""



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

RANKING_METRICS: dict[str, MetricFn] = dict(zip(
    RANKING_METRIC_NAMES,
    (precision_at_k, recall_at_k, ndcg_at_k, average_precision_at_k, hit_rate_at_k, reciprocal_rank_at_k),
    strict=True,  # one function per declared name, in the declared order
))
"""Per-user metric functions by the name used in result keys (``"ndcg@10"``)."""
