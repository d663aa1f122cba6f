"""Beyond-accuracy metrics: coverage, novelty, popularity, intra-list diversity.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .accuracy import PADDING, _top_k

# Target number of stored values per user chunk in intra_list_diversity (~100 MB of
# float64 + int32 index), so 50k users with rich tag features never blow up memory.
_ILD_CHUNK_NNZ = 8_000_000

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
    train_items = np.asarray(train_items, dtype=np.int64).ravel()
    if train_items.size == 0:
        raise ValueError("train_items is empty")
    shown = top[top != PADDING]
    # Boolean tables over item ids, not np.unique: numpy 2.4's hash-based unique cost 7 s of a
    # 1M run's evaluate (every model x segment x k calls this with every training interaction).
    size = int(max(train_items.max(), shown.max(initial=-1))) + 1
    in_catalogue = np.zeros(size, dtype=bool)
    in_catalogue[train_items] = True
    in_lists = np.zeros(size, dtype=bool)
    in_lists[shown] = True
    return float((in_catalogue & in_lists).sum() / in_catalogue.sum())


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


def new_item_exposure(recommendations: np.ndarray, k: int, item_user_counts: np.ndarray) -> float:
    """Share of the filled top-``k`` slots given to items nobody listened to in training
    (``item_user_counts == 0``): how much room new releases get (0 when no slot is filled)."""
    top = _top_k(recommendations, k)
    valid = top != PADDING
    if not valid.any():
        return 0.0
    cold = np.asarray(item_user_counts)[np.where(valid, top, 0)] == 0
    return float((cold & valid).sum() / valid.sum())
