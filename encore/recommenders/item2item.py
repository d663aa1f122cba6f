"""Content-based item-to-item recommendations from item side information (tags, genres ...)."""

from __future__ import annotations

from typing import Literal, Self

import numpy as np
from scipy.sparse import csr_matrix
from sklearn.decomposition import TruncatedSVD
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import normalize

from encore.config.types import PositiveInt

from .base import as_ids, check_user_items, drop_self
from .factorization import FactorRecommender
from .generator_config import FactorGeneratorConfig, SideDataMissing, StageView
from .weighting import DocumentWeighting, log1p_weight, weight_documents


class Item2ItemConfig(FactorGeneratorConfig):
    """Settings of a ``item2item`` generator instance (``components.<name>: {kind: item2item, ...}``)."""

    kind: Literal["item2item"] = "item2item"
    n_components: PositiveInt = 256
    n_neighbors: PositiveInt = 50
    weighting: Literal["tfidf", "bm25", "none"] = "bm25"


class Item2ItemRecommender(FactorRecommender):
    """Cosine similarity of items in a reduced feature space, and of users' play profiles to items.

    Fit: the item features ``(n_items, n_features)`` are TF-IDF (or BM25) weighted, reduced
    with TruncatedSVD to ``embeddings_`` ``(n_items, n_components)`` and L2-normalised; items
    without any feature keep a zero embedding (score 0, never a neighbour) and are listed
    in ``items_without_features_``. A NearestNeighbors(cosine) index over the items that
    have features serves :meth:`similar_items`.

    Score: a user's profile is the log1p(play)-weighted mean of the embeddings of the items
    in their history, L2-normalised; ``score = profile @ embeddings_.T`` is the cosine (the
    user and item vectors of :class:`~.factorization.FactorRecommender`, so ``retrieval: ann``
    applies).

    Defaults tuned on Last.fm 2K artist tags (NDCG@10, held-out pairs' tags removed):
    BM25 beats implicit's TF-IDF (0.106 vs 0.085 at 64 dims), and more SVD dimensions keep
    finer tag distinctions (64: 0.106, 128: 0.130, 256: 0.145, 512: 0.152; raw BM25
    cosine without SVD: 0.113).

    Parameters
    ----------
    n_components:
        SVD dimension (capped at ``n_features - 1``).
    n_neighbors:
        Default neighbourhood size of the index (queries may ask for more).
    weighting:
        ``"tfidf"`` or ``"bm25"`` weighting of the feature counts.
    random_state:
        Seed of the randomised SVD.
    """

    name = "item2item"
    config_class = Item2ItemConfig
    side_data = ("item_features",)
    required_side_data = ("item_features",)

    def __init__(
        self,
        n_components: int = 256,
        n_neighbors: int = 50,
        weighting: DocumentWeighting = "bm25",
        random_state: int | None = 42,
    ):
        self.n_components = n_components
        self.n_neighbors = n_neighbors
        self.weighting = weighting
        self.random_state = random_state

    @classmethod
    def side_data_problem(cls, view: StageView) -> str | None:
        """Item features must exist and tell items apart: at least 2 distinct feature columns in use
        (TruncatedSVD needs two, and one value would make every item alike)."""
        problem = super().side_data_problem(view)
        if problem is not None:
            return problem
        return _too_few_features(cls.name, view.item_features)

    def fit(self, user_items: csr_matrix, item_features: csr_matrix | None = None) -> Self:
        """Embed items from ``item_features`` ``(n_items, n_features)`` (required).

        ``user_items`` ``(n_users, n_items)`` only fixes the item count: profiles are built
        from the history passed at score time.
        """
        user_items = check_user_items(user_items)
        if item_features is None:
            raise ValueError("Item2ItemRecommender.fit needs item_features (n_items, n_features)")
        features = csr_matrix(item_features, dtype=np.float32)
        n_users, n_items = user_items.shape
        if features.shape[0] != n_items:
            raise ValueError(f"item_features has {features.shape[0]} rows, user_items has {n_items} items")
        problem = _too_few_features(self.name, features)
        if problem is not None:
            raise SideDataMissing(problem)

        has_features = np.diff(features.indptr) > 0
        self.items_without_features_ = np.flatnonzero(~has_features)
        self.n_items_without_features_ = len(self.items_without_features_)

        weighted = weight_documents(features, self.weighting)
        k = max(1, min(self.n_components, features.shape[1] - 1))
        svd = TruncatedSVD(n_components=k, random_state=self.random_state)
        self.embeddings_ = normalize(svd.fit_transform(weighted)).astype(np.float32)
        # TF-IDF can zero a row whose only features occur everywhere (idf <= 0).
        self._index_items = np.flatnonzero(np.linalg.norm(self.embeddings_, axis=1) > 0)
        self._build_index()
        self.n_users_, self.n_items_ = n_users, n_items
        self.set_retrieval(self.retrieval, self.ann)  # a refit drops the ANN indexes of the old embeddings
        return self

    def _build_index(self) -> None:
        self.index_ = NearestNeighbors(
            n_neighbors=max(1, min(self.n_neighbors, len(self._index_items))),
            metric="cosine",
            algorithm="brute",
        )
        if len(self._index_items):
            self.index_.fit(self.embeddings_[self._index_items])

    def user_profiles(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """L2-normalised log1p-weighted mean item embedding per user: ``(n, n_components)``."""
        rows = log1p_weight(check_user_items(user_items, self.n_items_)[as_ids(user_ids)])
        # The mean's denominator does not change the direction; normalising is enough.
        return normalize(np.asarray(rows @ self.embeddings_, dtype=np.float32))

    def item_vectors(self) -> np.ndarray:
        return self.embeddings_

    def user_vectors(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        return self.user_profiles(user_ids, user_items)

    def exact_similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Nearest items by cosine from the NearestNeighbors index, self excluded.

        Items without features get ``-1`` rows.
        """
        item_ids = as_ids(item_ids)
        ids = np.full((len(item_ids), N), -1, dtype=np.int64)
        scores = np.full((len(item_ids), N), -np.inf, dtype=np.float32)
        query = np.flatnonzero(np.linalg.norm(self.embeddings_[item_ids], axis=1) > 0)
        k = min(N + 1, len(self._index_items))
        if len(query) == 0 or k == 0:
            return ids, scores
        dist, pos = self.index_.kneighbors(self.embeddings_[item_ids[query]], n_neighbors=k)
        found = self._index_items[pos]
        ids[query], scores[query] = drop_self(item_ids[query], found, 1.0 - dist, N)
        return ids, scores

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"embeddings": self.embeddings_, "items_without_features": self.items_without_features_}

    def _set_model_state(self, state: dict[str, np.ndarray]) -> None:
        self.embeddings_ = state["embeddings"]
        self.items_without_features_ = state["items_without_features"]
        self.n_items_without_features_ = len(self.items_without_features_)
        self._index_items = np.flatnonzero(np.linalg.norm(self.embeddings_, axis=1) > 0)
        self._build_index()


def _too_few_features(kind: str, features: csr_matrix) -> str | None:
    """Item features that cannot tell items apart: fewer than 2 feature columns in use (one value
    makes every item alike, and TruncatedSVD needs two columns)."""
    distinct = int(np.count_nonzero(np.diff(csr_matrix(features).tocsc().indptr)))
    if distinct < 2:
        return f"kind '{kind}' needs item features of at least 2 distinct values, and this dataset has {distinct}"
    return None
