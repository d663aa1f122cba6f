"""EASE^R (Steck 2019): a closed-form item-item linear autoencoder."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
import scipy.linalg
from scipy.sparse import csr_matrix

from encore.config.types import PositiveFloat, PositiveInt

from .base import Recommender, as_ids, check_user_items, history_pair_scores, topk
from .generator_config import GeneratorConfig, SettingUnfit
from .weighting import InteractionWeighter, InteractionWeighting


class EASEConfig(GeneratorConfig):
    """Settings of a ``ease`` generator instance (``components.<name>: {kind: ease, ...}``)."""

    kind: Literal["ease"] = "ease"
    l2: PositiveFloat = 3000.0
    weighting: Literal["log1p", "none"] = "log1p"
    min_item_users: PositiveInt = 2
    max_items: PositiveInt | None = 8000
    saved_top_k: PositiveInt | None = 128
    """Entries of ``B`` kept per column (the largest in magnitude) in the saved model; None =
    the dense matrix. The fitted model proposes with the full ``B``; what reads the saved one
    (the ranker's pair scores) gets the pruned ``B`` (docs/benchmarks.md, "Outputs")."""


class EASERecommender(Recommender):
    """``score = X[users] @ B`` with ``B = I - P / diag(P)``, ``P = (X^T X + l2 I)^-1``, diag(B) = 0.

    ``X`` is the weighted ``user_items`` ``(n_users, n_items)`` restricted to the ``m``
    modelled items ``items_`` (those with at least ``min_item_users`` listeners, at most
    ``max_items`` of them, most listened first). ``B`` is dense ``(m, m)`` float32; items
    outside ``items_`` score 0.

    Memory: the Gram matrix and its inverse are dense float64, ``m**2 * 8`` bytes (2.5 GB
    for Last.fm 2K's 17,632 artists), plus ``m**2 * 4`` bytes for ``B``; time is one
    Cholesky inversion, O(m**3), or, with fewer users ``n`` than items, O(n**3 + nnz * (n + m))
    through the Woodbury identity (see :func:`_ridge_gram_inverse`). Lower ``max_items`` or
    raise ``min_item_users`` for larger catalogues.

    ``min_item_users=2`` by default: on Last.fm 2K, modelling the 15,363 artists with at
    least one training listener takes ~95 s and 3 GB; dropping one-listener artists (5,982
    left) took ~8 s for the same NDCG@10 (0.237), ~2 s since the Woodbury path.

    Parameters
    ----------
    l2:
        Ridge penalty λ added to the Gram diagonal.
    weighting:
        Confidence transform of play counts (:class:`~.weighting.InteractionWeighter`:
        ``"log1p"``, ``"bm25"`` or ``"none"``), fitted on the training matrix and applied
        to the history at score time.
    min_item_users:
        Items with fewer listeners in the training matrix are not modelled.
    max_items:
        Cap on the number of modelled items (the most listened ones), or None.
    saved_top_k:
        What :meth:`save` keeps of ``B``: per column (a predicted item) the ``saved_top_k``
        history items of largest ``|B|``, as ``(saved_top_k, m)`` row indexes and float32
        values; a loaded model scores with that sparse ``B`` (zeros elsewhere). None saves
        ``B`` dense (``m**2 * 4`` bytes: 143 MB for Last.fm 2K's 5,982 modelled artists).
    """

    name = "ease"
    config_class = EASEConfig

    def __init__(
        self,
        l2: float = 3000.0,
        weighting: InteractionWeighting = "log1p",
        min_item_users: int = 2,
        max_items: int | None = 8000,
        saved_top_k: int | None = 128,
    ):
        self.l2 = l2
        self.weighting = weighting
        self.min_item_users = min_item_users
        self.max_items = max_items
        self.saved_top_k = saved_top_k

    def fit(self, user_items: csr_matrix) -> Self:
        """Solve for ``B`` on ``user_items`` ``(n_users, n_items)``."""
        user_items = check_user_items(user_items)
        n_users, n_items = user_items.shape
        listeners = np.bincount(user_items.indices, minlength=n_items)
        candidates = np.flatnonzero(listeners >= max(self.min_item_users, 1))
        if len(candidates) == 0:  # an empty Gram matrix: LAPACK's Cholesky fails on it
            raise SettingUnfit("min_item_users", f"no item has min_item_users ({self.min_item_users}) or more "
                               f"listeners in the training data ({n_users} users, at most "
                               f"{int(listeners.max(initial=0))} listeners per item); lower min_item_users")
        if self.max_items is not None and len(candidates) > self.max_items:
            # Most listened first; stable so ties keep the lower item id.
            order = np.argsort(-listeners[candidates], kind="stable")[: self.max_items]
            candidates = np.sort(candidates[order])
        self.items_ = candidates.astype(np.int64)
        self.weighter_ = InteractionWeighter(self.weighting)
        X = self.weighter_.fit_transform(user_items)[:, self.items_]

        P = _ridge_gram_inverse(X.astype(np.float64), self.l2)
        # B_ij = -P_ij / P_jj off the diagonal, 0 on it; in place to keep one m x m buffer.
        P /= -np.diag(P)[None, :]
        P[np.diag_indices_from(P)] = 0.0
        # C order: scipy's sparse @ dense ravels (copies) a Fortran-ordered right operand.
        self.B_ = np.ascontiguousarray(P, dtype=np.float32)
        del P

        self._local = np.full(n_items, -1, dtype=np.int64)
        self._local[self.items_] = np.arange(len(self.items_))
        self.n_users_, self.n_items_ = n_users, n_items
        return self

    def _history(self, user_items: csr_matrix) -> csr_matrix:
        """Weighted history restricted to the modelled items: ``(n_users, m)``."""
        return self.weighter_.transform(check_user_items(user_items, self.n_items_))[:, self.items_]

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense float32 ``(len(user_ids), n_items)``; unmodelled items score 0."""
        self._check_fitted()
        user_ids = as_ids(user_ids)
        rows = check_user_items(user_items, self.n_items_)[user_ids]
        local = self.weighter_.transform(rows)[:, self.items_] @ self.B_
        out = np.zeros((len(user_ids), self.n_items_), dtype=np.float32)
        out[:, self.items_] = local
        return out

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """Sum over each user's history ``j`` of ``x[u, j] * B[j, item]`` (0 if unmodelled)."""
        self._check_fitted()
        users, items = as_ids(users), as_ids(items)
        local = self._local[items]
        modelled = local >= 0
        out = np.zeros(len(users), dtype=np.float32)
        if modelled.any():
            # Weight the pairs' users' rows only: all of them per call cost O(nnz) per batch.
            uniq, inverse = np.unique(users[modelled], return_inverse=True)
            history = self._history(check_user_items(user_items, self.n_items_)[uniq])
            out[modelled] = history_pair_scores(history, self.B_, inverse, local[modelled])
        return out

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Items ranked by ``B[item, :]`` (how much the item predicts them), self excluded.

        Unmodelled query items get ``-1``; unmodelled items are never returned.
        """
        self._check_fitted()
        item_ids = as_ids(item_ids)
        local = self._local[item_ids]
        ids = np.full((len(item_ids), N), -1, dtype=np.int64)
        scores = np.full((len(item_ids), N), -np.inf, dtype=np.float32)
        has = local >= 0
        if has.any():
            # Top-N over the m modelled columns only, then back to global item ids.
            sub = self.B_[local[has]]
            sub[np.arange(len(sub)), local[has]] = -np.inf  # self (diag is 0, not -inf)
            local_ids, scores[has] = topk(sub, N)
            ids[has] = np.where(local_ids >= 0, self.items_[np.maximum(local_ids, 0)], -1)
        return ids, scores

    def _get_state(self) -> dict[str, np.ndarray]:
        m = len(self.items_)
        if self.saved_top_k is None or self.saved_top_k >= m:
            return {"B": self.B_, "items": self.items_, **self.weighter_.get_state()}
        rows, values = _column_top_k(self.B_, self.saved_top_k)
        return {"B_rows": rows, "B_values": values, "items": self.items_, **self.weighter_.get_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        if "B" in state:
            self.B_ = np.ascontiguousarray(state["B"], dtype=np.float32)
        else:  # pruned: per column, its kept rows; everything else 0
            rows, values = state["B_rows"].astype(np.int64), state["B_values"]
            m = rows.shape[1]
            self.B_ = np.zeros((m, m), dtype=np.float32)
            self.B_[rows, np.arange(m)[None, :]] = values
        self.items_ = state["items"].astype(np.int64)
        self.weighter_ = InteractionWeighter(self.weighting).set_state(state)
        self._local = np.full(self.n_items_, -1, dtype=np.int64)
        self._local[self.items_] = np.arange(len(self.items_))


def _column_top_k(B: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column of ``B`` ``(m, m)``, the ``k`` rows of largest ``|B|``: ``(k, m)`` row indexes
    (int16 when ``m`` fits, else int32; sorted within a column, which compresses) and their
    float32 values. ``argpartition`` (introselect) is deterministic: same ``B``, same rows."""
    m = B.shape[0]
    rows = np.empty((k, m), dtype=np.int16 if m <= np.iinfo(np.int16).max else np.int32)
    values = np.empty((k, m), dtype=np.float32)
    step = 512  # columns per block: one (m, step) float32 copy at a time
    for start in range(0, m, step):
        block = np.abs(B[:, start:start + step])
        top = np.sort(np.argpartition(-block, k - 1, axis=0)[:k], axis=0)
        rows[:, start:start + step] = top
        values[:, start:start + step] = np.take_along_axis(B[:, start:start + step], top, axis=0)
    return rows, values


def _ridge_gram_inverse(X: csr_matrix, l2: float) -> np.ndarray:
    """``(X^T X + l2 I)^-1`` (dense float64 ``(m, m)``) of a sparse float64 ``(n, m)`` matrix.

    With ``n >= m``: Cholesky inverse of the ``m x m`` Gram matrix, ~m**3 flops. With fewer
    rows than columns (Last.fm 2K: 1,892 users, ~6k modelled items) the Woodbury identity
    ``(X^T X + l2 I)^-1 = (I - X^T (X X^T + l2 I)^-1 X) / l2`` needs only an ``n x n`` inverse
    (n**3) and two sparse-dense products (nnz * (n + m)): ~30x fewer flops there, and equal
    to float64 rounding (far below the float32 of ``B``). Both keep one m x m buffer.
    """
    n, m = X.shape
    if n >= m:
        gram = (X.T @ X).toarray()
        gram[np.diag_indices_from(gram)] += l2
        return _spd_inverse(gram)  # in place: no second m x m buffer
    kernel = (X @ X.T).toarray()
    kernel[np.diag_indices_from(kernel)] += l2
    inverse = _spd_inverse(kernel)  # (n, n), symmetric
    P = np.asarray(X.T @ (X.T @ inverse).T)  # X^T K^-1 X: (m, n) dense, then (m, m)
    P *= -1.0 / l2
    P[np.diag_indices_from(P)] += 1.0 / l2
    return P


def _spd_inverse(a: np.ndarray) -> np.ndarray:
    """Inverse of a symmetric positive-definite float64 matrix, overwriting ``a``.

    LAPACK potrf + potri work in place, so the only m x m buffer is ``a`` itself.
    """
    potrf, potri = scipy.linalg.get_lapack_funcs(("potrf", "potri"), (a,))
    # a is symmetric, so its transpose is the same matrix in Fortran order (no copy).
    f = a.T if a.flags.c_contiguous else np.asfortranarray(a)
    c, info = potrf(f, lower=False, overwrite_a=True, clean=False)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix is not positive definite (potrf info={info})")
    inv, info = potri(c, lower=False, overwrite_c=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (potri info={info})")
    # potri fills the upper triangle only; mirror it in place, one block of rows at a time.
    m, step = inv.shape[0], 1024
    for s in range(0, m, step):
        e = min(s + step, m)
        inv[s:e, :s] = inv[:s, s:e].T
        diag = inv[s:e, s:e]
        inv[s:e, s:e] = np.triu(diag) + np.triu(diag, 1).T
    return inv
