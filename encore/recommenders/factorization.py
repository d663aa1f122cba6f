"""Models whose score is an inner product of vectors, and the ones that wrap ``implicit``.

:class:`FactorRecommender` is the base of every kind that scores ``user_vectors(u) .
item_vectors[i]`` (ALS, BPR, item2item, a user's own kind exposing factors): it retrieves
top-N lists and similar items either exactly (the model's own path) or, with ``retrieval:
ann``, from an :class:`~encore.retrieval.InnerProductIndex` over the item vectors, and measures
the ANN lists against exact ones (:meth:`FactorRecommender.retrieval_report`).

A fitted implicit model holds ``user_factors`` ``(n_users, k)`` and ``item_factors``
``(n_items, k)`` (float32) and scores ``score(u, i) = user_factors[u] . item_factors[i]``.
"""

from __future__ import annotations

import io
import json
import time
from abc import abstractmethod
from typing import Any, Self

import numpy as np
from implicit.cpu.matrix_factorization_base import MatrixFactorizationBase
from scipy.sparse import csr_matrix

from encore.retrieval import AnnConfig, InnerProductIndex, Retrieval, recall_at

from ..progress import Progress
from .base import (
    Recommender,
    as_ids,
    check_user_items,
    drop_self,
    factor_pair_scores,
    npz_bytes,
    single_threaded_blas,
    topk,
)
from .generator_config import FactorGeneratorConfig, GeneratorConfig

# implicit marks items filtered out of a user's top-N with this score.
_IMPLICIT_FILTERED = -np.finfo(np.float32).max
_RETRIEVAL_KEY = "__retrieval__"
"""The saved retrieval settings (a model loaded for serving or the ranker retrieves as it was fitted)."""


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (zero rows stay zero): cosine becomes an inner product."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


class FactorRecommender(Recommender):
    """A model scoring ``score(u, i) = user_vectors(u) . item_vectors()[i]``.

    Subclasses implement :meth:`item_vectors`, :meth:`user_vectors` (plus ``fit`` and
    :meth:`_model_state` / :meth:`_set_model_state`); they may override :meth:`exact_recommend`
    and :meth:`exact_similar_items` with a faster exact path of their own. Similar items are
    the cosine of item vectors. ``retrieval`` / ``ann`` come from the instance's settings
    (:class:`~encore.recommenders.generator_config.FactorGeneratorConfig`), not from the
    constructor: they choose how lists are found, not what the model is.
    """

    config_class = FactorGeneratorConfig
    retrieval: Retrieval = "exact"
    ann: AnnConfig = AnnConfig()

    @abstractmethod
    def item_vectors(self) -> np.ndarray:
        """``(n_items, d)`` float32 item vectors."""

    @abstractmethod
    def user_vectors(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """``(len(user_ids), d)`` float32 vectors of these users (``user_items``: full history)."""

    @abstractmethod
    def _model_state(self) -> dict[str, np.ndarray]:
        """Fitted arrays to save (what ``_get_state`` is for other recommenders)."""

    @abstractmethod
    def _set_model_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`_model_state` returned."""

    @classmethod
    def from_config(cls, section: GeneratorConfig, seed: int | None = None) -> Self:
        model = super().from_config(section, seed)
        if isinstance(section, FactorGeneratorConfig):
            model.set_retrieval(section.retrieval, section.ann)
        return model

    def set_retrieval(self, retrieval: Retrieval, ann: AnnConfig | None = None) -> Self:
        """Retrieve with ``retrieval`` (and the index ``ann``) from now on; returns self."""
        self.retrieval, self.ann = retrieval, ann or AnnConfig()
        self._indexes: dict[str, tuple[InnerProductIndex, np.ndarray]] = {}
        return self

    # -- scores ----------------------------------------------------------------------------

    def score(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """``user_vectors @ item_vectors.T``: float32 ``(len(user_ids), n_items)``."""
        self._check_fitted()
        return self.user_vectors(as_ids(user_ids), user_items) @ self.item_vectors().T

    def score_pairs(
        self, users: np.ndarray, items: np.ndarray, user_items: csr_matrix, batch_size: int = 1024
    ) -> np.ndarray:
        """Each unique user's vector once, then row-wise dot products with the item vectors."""
        self._check_fitted()
        users, items = as_ids(users), as_ids(items)
        uniq, inverse = np.unique(users, return_inverse=True)
        return factor_pair_scores(self.user_vectors(uniq, user_items), self.item_vectors(), inverse, items)

    # -- retrieval -------------------------------------------------------------------------

    def _index(self, which: str) -> tuple[InnerProductIndex, np.ndarray]:
        """The ANN index over item vectors (``which="items"``) or over unit item vectors of
        non-zero items (``"similar"``), built on first use; with the item of each index row."""
        indexes = self.__dict__.setdefault("_indexes", {})
        if which not in indexes:
            vectors = self.item_vectors()
            rows = np.arange(len(vectors))
            if which == "similar":
                vectors = unit_rows(vectors)
                rows = np.flatnonzero(np.any(vectors != 0, axis=1))
                vectors = vectors[rows]
            started = time.perf_counter()
            indexes[which] = (InnerProductIndex(vectors, self.ann, seed=getattr(self, "random_state", None) or 0,
                                                num_threads=getattr(self, "num_threads", 0)), rows)
            self.__dict__.setdefault("index_build_seconds_", {})[which] = time.perf_counter() - started
        return indexes[which]

    def recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` per user: :meth:`exact_recommend`, or the ANN index's lists with the heard
        items filtered exactly (``retrieval: ann``)."""
        self._check_fitted()
        if self.retrieval == "exact":
            return self.exact_recommend(user_ids, user_items, N, filter_already_liked_items=filter_already_liked_items,
                                        batch_size=batch_size)
        user_ids = as_ids(user_ids)
        user_items = check_user_items(user_items, self.n_items_)
        index, _ = self._index("items")
        heard = user_items[user_ids] if filter_already_liked_items else None
        return index.top_n(self.user_vectors(user_ids, user_items), N, heard)

    def exact_recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``N`` over every item (:meth:`Recommender.recommend`: score, mask, select)."""
        return Recommender.recommend(self, user_ids, user_items, N,
                                     filter_already_liked_items=filter_already_liked_items, batch_size=batch_size)

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """``N`` most similar items by cosine of item vectors (self excluded): exact, or from
        the ANN index over unit item vectors. Items with a zero vector get ``-1`` rows."""
        self._check_fitted()
        if self.retrieval == "exact":
            return self.exact_similar_items(item_ids, N)
        item_ids = as_ids(item_ids)
        index, rows = self._index("similar")
        queries = unit_rows(self.item_vectors()[item_ids])
        found, scores = index.search(queries, N + 1)
        found = np.where(found >= 0, rows[np.maximum(found, 0)], -1)
        zero = ~np.any(queries != 0, axis=1)
        found[zero], scores[zero] = -1, -np.inf
        return drop_self(item_ids, found, scores, N)

    def exact_similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item vectors against every item with a non-zero vector, self excluded."""
        item_ids = as_ids(item_ids)
        unit = unit_rows(self.item_vectors())
        block = unit[item_ids] @ unit.T
        block[:, ~np.any(unit != 0, axis=1)] = -np.inf
        block[~np.any(unit[item_ids] != 0, axis=1)] = -np.inf
        ids, scores = topk(block, N + 1)
        return drop_self(item_ids, ids, scores, N)

    def retrieval_report(self, user_items: csr_matrix, users: np.ndarray, N: int, *, seed: int = 0
                         ) -> dict[str, float]:
        """ANN lists against exact ones on a seeded sample of ``ann.recall_users`` of ``users``:
        ``ann_recall@10`` and ``ann_recall@N``, the seconds of each and the speed-up, the index
        build seconds. Empty with ``retrieval: exact`` or ``recall_users: 0``."""
        if self.retrieval == "exact" or not self.ann.recall_users or len(users) == 0:
            return {}
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(as_ids(users), size=min(self.ann.recall_users, len(users)), replace=False))
        self._index("items")  # built before the clock starts: the build is reported on its own
        started = time.perf_counter()
        exact, _ = self.exact_recommend(sample, user_items, N)
        exact_seconds = time.perf_counter() - started
        started = time.perf_counter()
        approx, _ = self.recommend(sample, user_items, N)
        ann_seconds = time.perf_counter() - started
        report = {f"ann_recall@{k}": recall_at(approx, exact, k) for k in sorted({min(10, N), N})}
        builds = self.__dict__.get("index_build_seconds_", {})
        return report | {"ann_seconds": ann_seconds, "ann_exact_seconds": exact_seconds,
                         "ann_speedup": exact_seconds / max(ann_seconds, 1e-9),
                         "ann_index_build_seconds": float(sum(builds.values())), "ann_sample_users": len(sample)}

    # -- persistence -----------------------------------------------------------------------

    def _get_state(self) -> dict[str, np.ndarray]:
        settings = {"retrieval": self.retrieval, "ann": self.ann.model_dump()}
        return self._model_state() | {_RETRIEVAL_KEY: np.array(json.dumps(settings))}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        state = dict(state)
        saved = state.pop(_RETRIEVAL_KEY, None)
        settings = json.loads(str(saved)) if saved is not None else {"retrieval": "exact", "ann": {}}
        self.set_retrieval(settings["retrieval"], AnnConfig(**settings["ann"]))
        self._set_model_state(state)


class ImplicitFactorizationRecommender(FactorRecommender):
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

    def item_vectors(self) -> np.ndarray:
        return self.item_factors

    def user_vectors(self, user_ids: np.ndarray, user_items: csr_matrix) -> np.ndarray:
        """The fitted ``user_factors`` rows (``user_items`` unused: factors are fixed at fit time)."""
        return self.user_factors[as_ids(user_ids)]

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
        self.set_retrieval(self.retrieval, self.ann)  # a refit drops the indexes of the old factors
        return self

    def exact_recommend(
        self,
        user_ids: np.ndarray,
        user_items: csr_matrix,
        N: int,
        *,
        filter_already_liked_items: bool = True,
        batch_size: int = 1024,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-N: implicit's batched ``model.recommend`` on all ``user_ids`` in one call.

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

    def exact_similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of item factors (implicit's ``similar_items``), the item itself excluded."""
        item_ids = as_ids(item_ids)
        k = min(N + 1, self.n_items_)
        with single_threaded_blas():
            ids, scores = self.model_.similar_items(item_ids, N=k)
        return drop_self(item_ids, np.atleast_2d(ids), np.atleast_2d(scores), N)

    # -- persistence: implicit's own .npz, embedded as bytes ----------------------------

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"implicit_npz": npz_bytes(self.model_.save)}

    def _set_model_state(self, state: dict[str, np.ndarray]) -> None:
        with single_threaded_blas():
            self.model_ = self._implicit_class().load(io.BytesIO(state["implicit_npz"].tobytes()))
        # implicit stores num_threads in its file; ours is authoritative.
        self.model_.num_threads = self.num_threads
