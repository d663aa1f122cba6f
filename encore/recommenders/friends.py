"""Social recommendations: what a user's friends listen to."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from scipy.sparse import csr_matrix

from encore.config.types import NonNegativeInt

from .base import Recommender, as_ids, check_user_items, history_pair_scores, topk
from .generator_config import GeneratorConfig
from .weighting import weight_user_items


class FriendsConfig(GeneratorConfig):
    """Settings of a ``friends`` generator instance (``components.<name>: {kind: friends, ...}``)."""

    kind: Literal["friends"] = "friends"
    n_similar: NonNegativeInt = 0  # friends say nothing about item similarity
    weighting: Literal["log1p", "none"] = "log1p"


class FriendsRecommender(Recommender):
    """``score(u, i) = sum over u's friends f of w(f, i)``, i.e. ``(social @ W)[users]``.

    ``social`` is ``(n_users, n_users)`` CSR, ``social[u, f] != 0`` when ``f`` is a friend of
    ``u`` (its value is used as a link weight; pass 1s for a plain graph). ``W`` is the
    weighted ``user_items`` ``(n_users, n_items)`` given to :meth:`fit`, so scores reflect the
    friends' *training* history. Users without friends (or no social graph) score 0.

    Parameters
    ----------
    weighting:
        ``"log1p"`` or ``"none"`` transform of the friends' play counts.
    """

    name = "friends"
    config_class = FriendsConfig
    side_data = ("social",)
    required_side_data = ("social",)
    zero_means_unscored = True  # recommend only what at least one friend played

    def __init__(self, weighting: Literal["log1p", "none"] = "log1p"):
        self.weighting = weighting

    def fit(self, user_items: csr_matrix, social: csr_matrix | None = None) -> Self:
        """Store the weighted plays ``(n_users, n_items)`` and the social graph ``(n_users, n_users)``."""
        if self.weighting not in ("log1p", "none"):
            raise ValueError(f"weighting must be 'log1p' or 'none', got {self.weighting!r}")
        user_items = check_user_items(user_items)
        n_users, n_items = user_items.shape
        if social is None:
            social = csr_matrix((n_users, n_users), dtype=np.float32)
        social = csr_matrix(social, dtype=np.float32)
        if social.shape != (n_users, n_users):
            raise ValueError(f"social must be ({n_users}, {n_users}), got {social.shape}")
        self.social_ = social
        self.plays_ = weight_user_items(user_items, self.weighting)
        self.n_users_, self.n_items_ = n_users, n_items
        return self

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense float32 ``(len(user_ids), n_items)`` = ``social_[user_ids] @ plays_``."""
        return self.score_sparse(user_ids, user_items).toarray().astype(np.float32, copy=False)

    def score_sparse(self, user_ids: np.ndarray, user_items: csr_matrix) -> csr_matrix:
        """Sparse ``social_[user_ids] @ plays_``: the friends' weighted plays."""
        self._check_fitted()
        return csr_matrix(self.social_[as_ids(user_ids)] @ self.plays_)

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """Sum over each user's friends ``f`` of ``plays_[f, item]``."""
        self._check_fitted()
        return history_pair_scores(self.social_, self.plays_, users, items)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Not social: items most co-listened with the item (``plays_.T @ plays_``), self excluded."""
        self._check_fitted()
        item_ids = as_ids(item_ids)
        cooc = (self.plays_[:, item_ids].T @ self.plays_).toarray().astype(np.float32)
        cooc[cooc <= 0] = -np.inf
        cooc[np.arange(len(item_ids)), item_ids] = -np.inf
        return topk(cooc, N)

    def _get_state(self) -> dict[str, np.ndarray]:
        s, p = self.social_, self.plays_
        return {
            "social_data": s.data, "social_indices": s.indices, "social_indptr": s.indptr,
            "plays_data": p.data, "plays_indices": p.indices, "plays_indptr": p.indptr,
        }  # fmt: skip

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        n_users, n_items = self.n_users_, self.n_items_
        self.social_ = csr_matrix(
            (state["social_data"], state["social_indices"], state["social_indptr"]), shape=(n_users, n_users)
        )
        self.plays_ = csr_matrix(
            (state["plays_data"], state["plays_indices"], state["plays_indptr"]), shape=(n_users, n_items)
        )
