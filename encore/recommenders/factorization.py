"""Shared plumbing for the models that wrap an ``implicit`` matrix-factorisation model.

A fitted model holds ``user_factors`` ``(n_users, k)`` and ``item_factors`` ``(n_items, k)``
(float32) and scores ``score(u, i) = user_factors[u] . item_factors[i]``.
"""

from __future__ import annotations

import io
from abc import abstractmethod
from typing import Any, Self

import numpy as np
from implicit.cpu.matrix_factorization_base import MatrixFactorizationBase
from scipy.sparse import csr_matrix

from ..progress import Progress
from .base import (
    Recommender,
    as_ids,
    check_user_items,
    drop_self,
    factor_pair_scores,
    npz_bytes,
    single_threaded_blas,
)

# implicit marks items filtered out of a user's top-N with this score.
_IMPLICIT_FILTERED = -np.finfo(np.float32).max


class ImplicitFactorizationRecommender(Recommender):
    """Base for ALS/BPR: fit, recommend and similar_items delegate to implicit's CPU model.

    Subclasses implement :meth:`_new_model` (an unfitted implicit model) and may override
    :meth:`_fit_input` (the matrix implicit is fitted on, e.g. a confidence transform).
    """

    model_: MatrixFactorizationBase

    @abstractmethod
    def _new_model(self) -> MatrixFactorizationBase:
        """A fresh implicit CPU model built from this instance's hyper-parameters."""

    @classmethod
    @abstractmethod
    def _implicit_class(cls) -> Any:
        """The implicit class whose ``load`` reads the embedded model."""

    def _fit_input(self, user_items: csr_matrix) -> csr_matrix:
        return user_items

    # -- fitted factors ---------------------------------------------------------------

    @property
    def user_factors(self) -> np.ndarray:
        """``(n_users, k)`` float32 user factors."""
        return self.model_.user_factors

    @property
    def item_factors(self) -> np.ndarray:
        """``(n_items, k)`` float32 item factors."""
        return self.model_.item_factors

    # -- Recommender --------------------------------------------------------------------

    def fit(self, user_items: csr_matrix) -> Self:
        """Fit on ``user_items`` ``(n_users, n_items)`` play counts."""
        user_items = check_user_items(user_items)
        # Construction too: implicit checks the BLAS thread count in __init__.
        with single_threaded_blas():
            model = self._new_model()
            # implicit calls back once per iteration: progress with an ETA on long fits.
            with Progress(f"{self.name} fit", model.iterations, unit="iterations") as progress:
                model.fit(self._fit_input(user_items), show_progress=False,
                          callback=lambda *_: progress.advance(1))
        self.model_ = model
        self.n_users_, self.n_items_ = user_items.shape
        return self

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """``user_factors[user_ids] @ item_factors.T``: float32 ``(len(user_ids), n_items)``.

        ``user_items`` is unused (factors are fixed at fit time) but accepted for the
        common interface.
        """
        self._check_fitted()
        return self.user_factors[as_ids(user_ids)] @ self.item_factors.T

    def recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """implicit's batched ``model.recommend`` on all ``user_ids`` in one call.

        implicit batches and multi-threads internally, so ``batch_size`` is unused; the
        only overhead added here is the row selection, the dtype cast and the -1 padding.
        """
        self._check_fitted()
        user_ids = as_ids(user_ids)
        if len(user_ids) == 0:
            return np.empty((0, N), dtype=np.int64), np.empty((0, N), dtype=np.float32)
        rows = None
        if filter_already_liked_items:
            rows = check_user_items(user_items, self.n_items_)[user_ids]
        # implicit returns garbage (id 0, score 0) past n_items, so never ask for more.
        k = min(N, self.n_items_)
        with single_threaded_blas():
            ids, scores = self.model_.recommend(
                user_ids, rows, N=k, filter_already_liked_items=filter_already_liked_items
            )
        invalid = scores <= _IMPLICIT_FILTERED
        ids = np.where(invalid, -1, ids).astype(np.int64, copy=False)
        scores = np.where(invalid, -np.inf, scores).astype(np.float32, copy=False)
        if k < N:
            ids = np.pad(ids, ((0, 0), (0, N - k)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, N - k)), constant_values=-np.inf)
        return ids, scores

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """Row-wise dot product of ``user_factors[users]`` and ``item_factors[items]``."""
        self._check_fitted()
        return factor_pair_scores(self.user_factors, self.item_factors, users, items)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item factors (implicit's ``similar_items``), the item itself excluded."""
        self._check_fitted()
        item_ids = as_ids(item_ids)
        k = min(N + 1, self.n_items_)
        with single_threaded_blas():
            ids, scores = self.model_.similar_items(item_ids, N=k)
        return drop_self(item_ids, np.atleast_2d(ids), np.atleast_2d(scores), N)

    # -- persistence: implicit's own .npz, embedded as bytes ----------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"implicit_npz": npz_bytes(self.model_.save)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        with single_threaded_blas():
            self.model_ = self._implicit_class().load(io.BytesIO(state["implicit_npz"].tobytes()))
        # implicit stores num_threads in its file; ours is authoritative.
        self.model_.num_threads = self.num_threads
