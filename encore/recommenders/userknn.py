"""User-based k-nearest neighbours: what the users who listen most like you play.

The baseline of the ThirtyMusic study Encore grew from, and the proof that a generator
kind is one module: this file holds the settings model, the class and its side data (none).
"""

from __future__ import annotations

from itertools import pairwise
from typing import Literal, Self

import numpy as np
from scipy.sparse import csr_matrix, vstack
from sklearn.preprocessing import normalize

from encore.arrays import lookup_pairs, pair_keys, positions_in_groups, row_sums
from encore.config.types import PositiveFloat, PositiveInt
from encore.threads import map_in_order

from .base import Recommender, as_ids, check_user_items, pairs_by_user_batch, topk, topk_sparse
from .generator_config import GeneratorConfig
from .weighting import InteractionWeighter, InteractionWeighting


class UserKNNConfig(GeneratorConfig):
    """Settings of a ``userknn`` generator instance (``components.<name>: {kind: userknn, ...}``)."""

    kind: Literal["userknn"] = "userknn"
    K: PositiveInt = 50
    weighting: InteractionWeighting = "log1p"
    similarity_exponent: PositiveFloat = 3.0
    max_item_listeners: PositiveInt | None = 1000


class UserKNNRecommender(Recommender):
    """``score(u, i) = sum over u's K nearest users v of sim(u, v)^p * w(v, i)``.

    ``w`` is the weighted ``user_items`` (n_users, n_items) of the fit (``weighting``);
    ``sim`` is the cosine of two users' weighted listening vectors. A user is never their own
    neighbour. Scoring is batched and sparse: a batch's similarities are the sparse product of
    its normalised vectors with the neighbour index (n_items, n_users), the top ``K`` of each
    row are kept, times the weighted plays — no per-user Python loop; a chunk holds at most
    ``PRODUCT_CELLS`` similarities, dense only when its rows are nearly as long as the user list.

    **Bounded neighbour search** (``max_item_listeners``): the index keeps, for each item, the
    ``max_item_listeners`` listeners whose normalised weight on it is largest — the users for
    whom that item counts most in a cosine (impact-ordered posting lists, truncated). Without
    it, finding neighbours costs the sum over a user's items of their listener counts, which
    grows with the square of the number of users on popular items; with it, at most
    ``max_item_listeners`` per item, so the whole search is linear in interactions. Items with
    fewer listeners are exact; for a longer list the similarity of ``u`` and ``v`` omits the
    items on which ``v`` was cut, each a small term of the cosine. ``None`` = exact. Last.fm 2K
    has no item with 1,000 listeners, so the default is exact there (docs/benchmarks.md, "Scale").

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
    max_item_listeners:
        Listeners kept per item in the neighbour index (``None``: all).
    """

    name = "userknn"
    config_class = UserKNNConfig
    zero_means_unscored = True  # recommend only what at least one neighbour played

    PRODUCT_CELLS = 1 << 24
    """Most similarity entries one neighbour-search chunk holds (64 MiB of float32)."""
    DENSE_FROM = 0.5
    """A chunk whose longest row has this share of all users is selected as one dense block."""

    def __init__(self, K: int = 50, weighting: InteractionWeighting = "log1p", similarity_exponent: float = 3.0,
                 max_item_listeners: int | None = 1000):
        self.K = K
        self.weighting = weighting
        self.similarity_exponent = similarity_exponent
        self.max_item_listeners = max_item_listeners

    def fit(self, user_items: csr_matrix) -> Self:
        """Weight the plays and L2-normalise every user's vector (the neighbour pool)."""
        if self.K <= 0:
            raise ValueError(f"K must be > 0, got {self.K}")
        user_items = check_user_items(user_items)
        self.weighter_ = InteractionWeighter(self.weighting)
        self.plays_ = self.weighter_.fit_transform(user_items)
        self.n_users_, self.n_items_ = user_items.shape
        self._pool = self._neighbour_index()
        self.neighbours_ = self._search(np.arange(self.n_users_), self.plays_)
        return self

    def _neighbour_index(self) -> csr_matrix:
        """``(n_items, n_users)`` normalised weights, each item's row cut to its
        ``max_item_listeners`` largest (ties: the lower user id)."""
        pool = normalize(self.plays_).T.tocsr()
        pool.sort_indices()
        if self.max_item_listeners is None or pool.getnnz(axis=1).max(initial=0) <= self.max_item_listeners:
            return pool
        rows = np.repeat(np.arange(pool.shape[0]), np.diff(pool.indptr))
        order = np.lexsort((pool.indices, -pool.data, rows))
        keep = np.zeros(pool.nnz, dtype=bool)
        keep[order[positions_in_groups(rows[order]) < self.max_item_listeners]] = True
        return csr_matrix((pool.data[keep], pool.indices[keep], np.r_[0, np.cumsum(np.bincount(
            rows[keep], minlength=pool.shape[0]))]), shape=pool.shape)

    def neighbours(self, user_ids: np.ndarray, user_items: csr_matrix) -> csr_matrix:
        """Sparse ``(len(user_ids), n_users)``: each user's ``K`` nearest fitted users, ``sim^p``.

        A fitted user whose row of ``user_items`` is their fitted history gets the neighbours
        found at fit (``neighbours_``, the same search): the generator's lists, the ranker's
        features of both stages and serving all reuse one search. Other rows (another history,
        a new user) are searched.
        """
        self._check_fitted()
        user_ids = as_ids(user_ids)
        plays = self.weighter_.transform(check_user_items(user_items, self.n_items_)[user_ids])
        fitted = user_ids < self.n_users_
        reuse = np.zeros(len(user_ids), dtype=bool)
        reuse[fitted] = same_rows(plays[np.flatnonzero(fitted)], self.plays_[user_ids[fitted]])
        if reuse.all():
            return self.neighbours_[user_ids]
        found = self._search(user_ids[~reuse], plays[np.flatnonzero(~reuse)])
        if not reuse.any():
            return found
        order = np.argsort(np.r_[np.flatnonzero(reuse), np.flatnonzero(~reuse)], kind="stable")
        return vstack([self.neighbours_[user_ids[reuse]], found], format="csr")[order]

    def _search(self, user_ids: np.ndarray, plays: csr_matrix) -> csr_matrix:
        """:meth:`neighbours` of the weighted play rows ``plays`` (one per id of ``user_ids``), searched."""
        if len(user_ids) == 0:
            return csr_matrix((0, self.n_users_), dtype=np.float32)
        query = normalize(plays)
        # A row's product has at most the index lengths of its items (and n_users) entries:
        # chunk the rows so that one chunk's product, and its rows padded to the longest one,
        # stay within PRODUCT_CELLS. Rows go through in order of that bound, so a chunk's rows
        # have similar lengths: in id order the padding was 5-7x the product's entries at 10M
        # interactions, sorted 1.2-1.5x. Each row's neighbours do not depend on its chunk.
        bound = np.minimum(row_sums(query, np.diff(self._pool.indptr)[query.indices]), self.n_users_)
        order = np.argsort(bound, kind="stable")
        query, user_ids, bound = query[order], user_ids[order], bound[order]
        edges = [0]
        while edges[-1] < len(user_ids):
            first = edges[-1]
            window = bound[first:first + (1 << 16)]
            size = np.maximum(np.cumsum(window), np.maximum.accumulate(window) * np.arange(1, len(window) + 1))
            edges.append(first + max(1, int(np.searchsorted(size, self.PRODUCT_CELLS, side="right"))))
        # Chunks on threads: scipy's sparse product and numpy's passes release the GIL, so two
        # cores search about 1.8x faster (3M interactions: 25 s -> 14 s); map_in_order bounds
        # the chunks in memory. Chunks are independent, so the result does not depend on it.
        chunks = [slice(lo, hi) for lo, hi in pairwise(edges)]
        parts = list(map_in_order(lambda rows: self._top_neighbours(query[rows], user_ids[rows]), chunks))
        return vstack(parts, format="csr")[np.argsort(order)]

    def _top_neighbours(self, query: csr_matrix, user_ids: np.ndarray) -> csr_matrix:
        """The ``K`` largest positive similarities of each row of ``query @ index``, ``sim^p``
        (ties: the lower user id; oneself excluded)."""
        sims = (query @ self._pool).tocsr()
        counts = np.diff(sims.indptr)
        width = int(counts.max(initial=0))
        own = np.flatnonzero(user_ids < self.n_users_)
        if width >= self.DENSE_FROM * self.n_users_:
            # Rows nearly as long as the user list (small or unbounded data): one dense block.
            dense = sims.toarray().astype(np.float32, copy=False)
            dense[dense <= 0] = -np.inf
            dense[own, user_ids[own]] = -np.inf  # never one's own neighbour
            cols, top = topk(dense, min(self.K, self.n_users_))
            keep = cols >= 0
            rows, cols = np.nonzero(keep)[0], cols[keep]
        else:
            # Each row's entries, padded to the longest row, go through the dense top-k for the
            # K-th best value; the entries at or above it (about K a row) are then ordered by
            # value and user id. Sorting the product's indices instead cost more than the product.
            rows = np.repeat(np.arange(len(user_ids)), counts)
            values = sims.data.astype(np.float32)
            values[(values <= 0) | (sims.indices == user_ids[rows])] = -np.inf
            padded = np.full((len(user_ids), width), -np.inf, dtype=np.float32)
            padded[rows, np.arange(len(rows)) - np.repeat(sims.indptr[:-1], counts)] = values
            k = min(self.K, width)
            kth = topk(padded, k)[1][:, k - 1] if k else np.full(len(user_ids), np.inf, dtype=np.float32)
            chosen = values >= kth[rows]
            cols, top = topk_sparse(csr_matrix((values[chosen], (rows[chosen], sims.indices[chosen])),
                                               shape=sims.shape), k)
            keep = cols >= 0
            rows, cols = np.nonzero(keep)[0], cols[keep]
        weights = top[keep].astype(np.float64) ** self.similarity_exponent
        return csr_matrix((weights.astype(np.float32), (rows, cols)), shape=(len(user_ids), self.n_users_))

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """Dense float32 ``(len(user_ids), n_items)``: the neighbours' weighted plays, summed."""
        return self.score_sparse(user_ids, user_items).toarray().astype(np.float32, copy=False)

    def score_sparse(self, user_ids: np.ndarray, user_items: csr_matrix) -> csr_matrix:
        """Sparse :meth:`score`: at most ``K`` neighbours' plays per row."""
        return csr_matrix(self.neighbours(user_ids, user_items) @ self.plays_)

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """float32 ``(n_pairs,)``: :meth:`score` at each ``(users[p], items[p])``, looked up in the
        sparse scores of ``batch_size`` distinct users at a time (about ``K`` neighbours' items a
        row) instead of dense ``(batch_size, n_items)`` blocks: the ranker scores millions of pairs."""
        self._check_fitted()
        users, items = as_ids(users), as_ids(items)
        if users.shape != items.shape:
            raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
        out = np.zeros(len(users), dtype=np.float32)
        for batch_users, pairs, rows in pairs_by_user_batch(users, batch_size):
            block = self.score_sparse(batch_users, user_items).tocoo()
            out[pairs] = lookup_pairs(pair_keys(rows, items[pairs], self.n_items_),
                                      pair_keys(block.row, block.col, self.n_items_),
                                      block.data.astype(np.float32), fill=0.0)
        return out

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
        p, n = self.plays_, self.neighbours_
        return {"plays_data": p.data, "plays_indices": p.indices, "plays_indptr": p.indptr,
                "neighbours_data": n.data, "neighbours_indices": n.indices, "neighbours_indptr": n.indptr,
                **self.weighter_.get_state()}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        shape = (self.n_users_, self.n_items_)
        self.plays_ = csr_matrix((state["plays_data"], state["plays_indices"], state["plays_indptr"]), shape=shape)
        self.weighter_ = InteractionWeighter(self.weighting).set_state(state)
        self._pool = self._neighbour_index()
        if "neighbours_data" in state:
            self.neighbours_ = csr_matrix((state["neighbours_data"], state["neighbours_indices"],
                                           state["neighbours_indptr"]), shape=(self.n_users_, self.n_users_))
        else:  # a model saved before neighbours were stored
            self.neighbours_ = self._search(np.arange(self.n_users_), self.plays_)


def same_rows(a: csr_matrix, b: csr_matrix) -> np.ndarray:
    """Boolean ``(n_rows,)``: whether row ``r`` of ``a`` and of ``b`` store the same entries
    (columns and values; both with sorted indices), vectorised over the CSR arrays."""
    a, b = a.tocsr(), b.tocsr()
    a.sort_indices()
    b.sort_indices()
    lengths = np.diff(a.indptr)
    same = lengths == np.diff(b.indptr)
    in_a, in_b = np.repeat(same, lengths), np.repeat(same, np.diff(b.indptr))
    differs = (a.indices[in_a] != b.indices[in_b]) | (a.data[in_a] != b.data[in_b])
    same[np.repeat(np.flatnonzero(same), lengths[same])[differs]] = False
    return same
