"""Non-personalised popularity, optionally recency-weighted."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from scipy.sparse import csr_matrix

from encore.config.types import PositiveFloat

from .base import Recommender, as_ids, check_user_items, compact, drop_self, is_seen, topk
from .generator_config import GeneratorConfig

_SECONDS_PER_DAY = 86_400.0


class PopularConfig(GeneratorConfig):
    """Settings of a ``popular`` generator instance (``components.<name>: {kind: popular, ...}``)."""

    kind: Literal["popular"] = "popular"
    measure: Literal["users", "plays"] = "users"
    recency_half_life_days: PositiveFloat | None = None


class PopularRecommender(Recommender):
    """Every user gets the same score vector ``popularity_`` ``(n_items,)``.

    Parameters
    ----------
    measure:
        ``"users"``: number of listeners of the item; ``"plays"``: total play count.
    recency_half_life_days:
        When set (and timestamps are given to :meth:`fit`), each interaction counts
        ``0.5 ** (age_days / half_life)``, its age measured from the newest timestamp in
        the data, so the ranking reflects what is popular *now*.
    """

    name = "popular"
    config_class = PopularConfig
    side_data = ("timestamps",)

    def __init__(
        self,
        measure: Literal["users", "plays"] = "users",
        recency_half_life_days: float | None = None,
    ):
        self.measure = measure
        self.recency_half_life_days = recency_half_life_days

    def fit(self, user_items: csr_matrix, timestamps: csr_matrix | None = None) -> Self:
        """Count item popularity.

        Parameters
        ----------
        user_items:
            ``(n_users, n_items)`` play counts.
        timestamps:
            Optional ``(n_users, n_items)`` CSR of unix seconds of each pair's last play,
            with a value at every nonzero of ``user_items``. Used only with
            ``recency_half_life_days``.
        """
        if self.measure not in ("users", "plays"):
            raise ValueError(f"measure must be 'users' or 'plays', got {self.measure!r}")
        user_items = check_user_items(user_items)
        weights = user_items.copy()
        if self.measure == "users":
            weights.data[:] = 1.0
        # Recorded so a run can log whether the half-life actually took effect.
        self.recency_applied_ = self.recency_half_life_days is not None and timestamps is not None
        if self.recency_applied_:
            weights = weights.multiply(self._decay(user_items, timestamps)).tocsr()
        self.popularity_ = np.asarray(weights.sum(axis=0), dtype=np.float32).ravel()
        self.n_users_, self.n_items_ = user_items.shape
        return self

    def _decay(self, user_items: csr_matrix, timestamps: csr_matrix) -> csr_matrix:
        """``0.5 ** (age_days / half_life)`` at every nonzero of ``timestamps``."""
        if self.recency_half_life_days is None or self.recency_half_life_days <= 0:
            raise ValueError(f"recency_half_life_days must be > 0, got {self.recency_half_life_days!r}")
        ts = csr_matrix(timestamps, dtype=np.float64)
        if ts.shape != user_items.shape:
            raise ValueError(f"timestamps shape {ts.shape} differs from user_items shape {user_items.shape}")
        # Every interaction needs a time, else it would silently weigh 0.
        if user_items.multiply(ts != 0).nnz != user_items.nnz:
            raise ValueError("timestamps must have a value at every nonzero of user_items")
        age_days = (ts.data.max() - ts.data) / _SECONDS_PER_DAY
        decay = ts.copy()
        decay.data = 0.5 ** (age_days / self.recency_half_life_days)
        return decay

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """``popularity_`` repeated for every user: float32 ``(len(user_ids), n_items)``."""
        self._check_fitted()
        n = len(as_ids(user_ids))
        return np.broadcast_to(self.popularity_, (n, self.n_items_)).copy()

    def recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The default's lists without its dense ``(batch, n_items)`` blocks: a user's top ``N``
        unplayed items are among the first ``N + len(history)`` of the global order, so each
        batch is checked against that prefix only (cost of ``N`` plus the histories)."""
        self._check_fitted()
        user_ids = as_ids(user_ids)
        user_items = check_user_items(user_items, self.n_items_)
        order, ranked = topk(self.popularity_[None, :], self.n_items_)  # best first, ties: lower id
        ids = np.empty((len(user_ids), N), dtype=np.int64)
        scores = np.empty((len(user_ids), N), dtype=np.float32)
        for start in range(0, len(user_ids), batch_size):
            batch = user_ids[start : start + batch_size]
            rows = user_items[batch]
            width = min(N + (int(np.diff(rows.indptr).max(initial=0)) if filter_already_liked_items else 0),
                        self.n_items_)
            prefix = np.broadcast_to(order[0, :width], (len(batch), width))
            seen = is_seen(rows, prefix) if filter_already_liked_items else np.zeros(prefix.shape, dtype=bool)
            stop = start + len(batch)
            ids[start:stop], scores[start:stop] = compact(prefix, np.broadcast_to(ranked[0, :width], prefix.shape),
                                                          seen, N)
        return ids, scores

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """``popularity_[items]`` (users are irrelevant)."""
        self._check_fitted()
        return self.popularity_[as_ids(items)].astype(np.float32, copy=False)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Not a similarity: the ``N`` most popular items other than the query item.

        A fallback so that every model answers the interface; scores are popularity.
        """
        self._check_fitted()
        item_ids = as_ids(item_ids)
        # Top N + 1 once, then drop the query item per row (it is among them or not).
        ids, scores = topk(self.popularity_[None, :], N + 1)
        ids = np.broadcast_to(ids, (len(item_ids), N + 1))
        scores = np.broadcast_to(scores, (len(item_ids), N + 1))
        return drop_self(item_ids, ids, scores, N)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"popularity": self.popularity_, "recency_applied": np.array(self.recency_applied_)}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.popularity_ = state["popularity"]
        self.recency_applied_ = bool(state["recency_applied"])
