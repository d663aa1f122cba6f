"""User-based k-nearest neighbours: what the users who listen most like you play.

The baseline of the ThirtyMusic study Encore grew from, and the proof that a generator
kind is one module: this file holds the settings model, the class and its side data (none).
"""

from __future__ import annotations

from typing import Annotated, Literal, Self

import numpy as np
from pydantic import Field
from scipy.sparse import csr_matrix
from sklearn.preprocessing import normalize

from .base import Recommender, as_ids, check_user_items, topk
from .spec import GeneratorConfig, PositiveInt
from .weighting import InteractionWeighter, InteractionWeighting


class UserKNNConfig(GeneratorConfig):
    """Settings of a ``userknn`` generator instance (``components.<name>: {kind: userknn, ...}``)."""

    kind: Literal["userknn"] = "userknn"
    K: PositiveInt = 50
    weighting: InteractionWeighting = "log1p"
    similarity_exponent: Annotated[float, Field(gt=0)] = 3.0


class UserKNNRecommender(Recommender):
    """``score(u, i) = sum over u's K nearest users v of sim(u, v)^p * w(v, i)``.

    ``w`` is the weighted ``user_items`` (n_users, n_items) of the fit (``weighting``);
    ``sim`` is the cosine of two users' weighted listening vectors. A user is never their own
    neighbour. Scoring is batched: a ``(batch, n_users)`` similarity block, its top ``K`` per
    row kept as a sparse matrix, times the weighted plays — no per-user Python loop, memory
    bounded by the batch.

    Defaults chosen on Last.fm 2K (per-user 20 % holdout, seed 42, NDCG@10 of the train fit on
    test, 2 cores): log1p beats BM25 and raw counts (K=50, p=1: 0.205 vs 0.163 vs 0.153);
    sharpening helps (log1p K=50: p=1 0.205, p=2 0.210, p=3 0.215); K between 35 and 80 is a
    plateau (0.213-0.215), K=500 drops to 0.189 (p=2).

    Parameters
    ----------
    K:
        Neighbours per user.
    weighting:
        ``"bm25"``, ``"log1p"`` or ``"none"`` transform of play counts, for both the
        similarity and the neighbours' contributions.
    similarity_exponent:
        ``p``: > 1 sharpens towards the closest neighbours.
    """

    name = "userknn"
    config_class = UserKNNConfig
    zero_means_unscored = True  # recommend only what at least one neighbour played

    def __init__(self, K: int = 50, weighting: InteractionWeighting = "log1p", similarity_exponent: float = 3.0):
        self.K = K
        self.weighting = weighting
        self.similarity_exponent = similarity_exponent

    def fit(self, user_items: csr_matrix) -> Self:
        """Weight the plays and L2-normalise every user's vector (the neighbour pool)."""
        if self.K <= 0:
            raise ValueError(f"K must be > 0, got {self.K}")
        user_items = check_user_items(user_items)
        self.weighter_ = InteractionWeighter(self.weighting)
        self.plays_ = self.weighter_.fit_transform(user_items)
        self.n_users_, self.n_items_ = user_items.shape
        self._pool = normalize(self.plays_).T.tocsr()
        return self

    def neighbours(self, user_ids: np.ndarray, user_items: csr_matrix) -> csr_matrix:
        """Sparse ``(len(user_ids), n_users)``: each user's ``K`` nearest fitted users, ``sim^p``."""
        self._check_fitted()
        user_ids = as_ids(user_ids)
        query = normalize(self.weighter_.transform(check_user_items(user_items, self.n_items_)[user_ids]))
        sims = np.asarray((query @ self._pool).todense(), dtype=np.float32)
        own = user_ids < self.n_users_
        sims[np.flatnonzero(own), user_ids[own]] = -np.inf  # never one's own neighbour
        ids, values = topk(sims, min(self.K, self.n_users_))
        keep = (ids >= 0) & (values > 0)
        rows = np.repeat(np.arange(len(user_ids)), ids.shape[1])[keep.ravel()]
        weights = values[keep].astype(np.float64) ** self.similarity_exponent
        return csr_matrix((weights.astype(np.float32), (rows, ids[keep])), shape=(len(user_ids), self.n_users_))

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense float32 ``(len(user_ids), n_items)``: the neighbours' weighted plays, summed."""
        return (self.neighbours(user_ids, user_items) @ self.plays_).toarray().astype(np.float32, copy=False)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Items whose weighted listener vectors are closest (cosine), self excluded."""
        self._check_fitted()
        item_ids = as_ids(item_ids)
        columns = normalize(self.plays_.T.tocsr())
        sims = (columns[item_ids] @ columns.T).toarray().astype(np.float32)
        sims[sims <= 0] = -np.inf
        sims[np.arange(len(item_ids)), item_ids] = -np.inf
        return topk(sims, N)

    def _get_state(self) -> dict[str, np.ndarray]:
        p = self.plays_
        return {"plays_data": p.data, "plays_indices": p.indices, "plays_indptr": p.indptr,
                **self.weighter_.get_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.plays_ = csr_matrix((state["plays_data"], state["plays_indices"], state["plays_indptr"]),
                                 shape=(self.n_users_, self.n_items_))
        self.weighter_ = InteractionWeighter(self.weighting).set_state(state)
        self._pool = normalize(self.plays_).T.tocsr()
