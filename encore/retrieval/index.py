"""Top-N by inner product over item vectors, through a faiss index, heard items filtered exactly.

Why faiss: measured against the alternatives on Encore's own factors (benchmarks/ann.py,
benchmarks/results/ann.json); it ships exact (``IndexFlatIP``, the ground truth), graph
(HNSW) and inverted-file (IVF) indexes in one maintained wheel.

The norm augmentation (``ann.norm_augmentation``): a graph or k-means index is built for
distances, and the largest inner product is not the nearest neighbour (an item's norm counts).
Appending ``sqrt(M^2 - |x|^2)`` to every item vector (``M`` = the largest norm) and 0 to every
query makes ``|q - x|^2 = |q|^2 + M^2 - 2 q.x``: the nearest augmented item is the best inner
product (Bachrach et al. 2014). Measured on ALS factors it loses: their norms spread widely, the
extra coordinate dominates the distances of most items and the graph's neighbourhoods blur
(recall@100 in benchmarks/results/ann.md), so the default searches faiss's inner-product HNSW.

Seen items: a user's heard items are removed *after* the search, so each query fetches
``N + n_heard`` items (rounded up to a power of two, so users share a few search calls) and the
heard ones are masked out; a user whose fetch would exceed ``max_fetch`` is scored exactly.
Returned scores are the exact inner products of the returned items, ordered best first, ties
by the lower item id (as :func:`.topn.topk`).

Reproducible: the HNSW graph is built on one thread (parallel insertion depends on thread
timing) with faiss's fixed level seed; IVF's k-means takes ``seed``; a search is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from .config import AnnConfig
from .topn import compact, is_seen, mask_seen, topk


def _faiss() -> Any:
    # Imported when an index is built: loading a model or a config never pulls faiss in.
    import faiss

    return faiss


@contextmanager
def _omp_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP thread count inside the block (it is process-wide: restored after)."""
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(max(1, n))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _augment(vectors: np.ndarray, max_norm: float) -> np.ndarray:
    """Item vectors with the extra coordinate ``sqrt(max_norm^2 - |x|^2)``."""
    sq = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(max_norm**2 - sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)


def _with_zero(queries: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]), dtype=np.float32)


class InnerProductIndex:
    """Best items by ``query . vectors[i]`` for many queries at once.

    Parameters
    ----------
    vectors:
        ``(n_items, d)`` item vectors (cast to float32).
    settings:
        The index (:class:`~encore.retrieval.config.AnnConfig`).
    seed:
        Seed of IVF's k-means (HNSW's levels use faiss's fixed seed).
    num_threads:
        Search threads (0 = faiss's default, every core); results do not depend on it.
    """

    def __init__(self, vectors: np.ndarray, settings: AnnConfig, *, seed: int = 0, num_threads: int = 0):
        faiss = _faiss()
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.settings = settings
        self.num_threads = num_threads or faiss.omp_get_max_threads()
        n, d = self.vectors.shape
        self.n_items = n
        self._members = np.arange(n)
        self._augmented = False
        if settings.index == "flat":
            self._index = faiss.IndexFlatIP(d)
            self._index.add(self.vectors)
            return
        # Zero vectors (ALS items nobody played: a sixth of a synthetic catalogue) score 0 for
        # every query and only clutter a graph; they are left out, and a list that reaches
        # scores <= 0, where they would rank, is scored exactly (top_n).
        self._members = np.flatnonzero(np.any(self.vectors != 0, axis=1))
        members = self.vectors[self._members]
        self._augmented = settings.norm_augmentation
        if self._augmented:
            max_norm = float(np.sqrt(np.einsum("ij,ij->i", members, members).max())) if len(members) else 0.0
            data, dim, metric = _augment(members, max_norm), d + 1, faiss.METRIC_L2
        else:
            data, dim, metric = np.ascontiguousarray(members), d, faiss.METRIC_INNER_PRODUCT
        if settings.index == "hnsw":
            index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, metric)
            index.hnsw.efConstruction = settings.ef_construction
            index.hnsw.efSearch = settings.ef_search
            with _omp_threads(1):  # parallel insertion order depends on thread timing
                index.add(data)
        else:
            nlist = settings.nlist or max(1, int(4 * np.sqrt(len(data))))
            nlist = min(nlist, max(1, len(data) // 39))  # faiss wants >= 39 training points per cell
            quantizer = faiss.IndexFlat(dim, metric)
            index = faiss.IndexIVFFlat(quantizer, dim, nlist, metric)
            index.cp.seed = seed
            with _omp_threads(self.num_threads):
                index.train(data)
                index.add(data)
            index.nprobe = min(settings.nprobe, nlist)
        self._index = index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's ``k`` best items per query: ids ``(n, k)`` int64 (``-1`` where it found
        fewer) and their exact inner products (float32, ``-inf`` for ``-1``), best first,
        ties by the lower id."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self._members))
        if len(queries) == 0 or k <= 0:
            return np.full((len(queries), max(k, 0)), -1, np.int64), np.full((len(queries), max(k, 0)), -np.inf,
                                                                           np.float32)
        with _omp_threads(self.num_threads):
            if self.settings.index == "hnsw":
                # efSearch bounds the candidate list; below k the graph cannot return k items.
                self._index.hnsw.efSearch = max(self.settings.ef_search, k)
            elif self.settings.index == "ivf":
                self._index.nprobe = min(self.settings.nprobe, self._index.nlist)
            _, ids = self._index.search(_with_zero(queries) if self._augmented else queries, k)
        valid = ids >= 0
        ids = np.where(valid, self._members[np.maximum(ids, 0)], -1)
        scores = np.einsum("ij,ikj->ik", queries, self.vectors[np.where(valid, ids, 0)]).astype(np.float32)
        scores[~valid] = -np.inf
        order = np.lexsort((np.where(valid, ids, np.iinfo(np.int64).max), -scores), axis=1)
        return np.take_along_axis(ids, order, axis=1), np.take_along_axis(scores, order, axis=1)

    def top_n(self, queries: np.ndarray, N: int, heard: csr_matrix | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
        """Best ``N`` items of every query whose row of ``heard`` (aligned CSR rows, same item
        space) does not hold them: ``(n, N)`` ids (``-1`` padded) and scores (``-inf`` padded)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(queries)
        ids = np.full((n, N), -1, dtype=np.int64)
        scores = np.full((n, N), -np.inf, dtype=np.float32)
        if n == 0 or N <= 0:
            return ids, scores
        n_heard = np.diff(heard.indptr) if heard is not None else np.zeros(n, dtype=np.int64)
        need = N + n_heard
        fetch = np.minimum(1 << np.ceil(np.log2(np.maximum(need, 1))).astype(np.int64), self.n_items)
        exact = need > self.settings.max_fetch
        for size in np.unique(fetch[~exact]):
            rows = np.flatnonzero((fetch == size) & ~exact)
            found, found_scores = self.search(queries[rows], int(size))
            invalid = is_seen(heard[rows], found) if heard is not None else np.zeros(found.shape, bool)
            ids[rows], scores[rows] = compact(found, found_scores, invalid, N)
        if len(self._members) < self.n_items:  # lists reaching the left-out zero vectors' score
            exact |= ~(scores[:, N - 1] > 0)
        rows = np.flatnonzero(exact)
        if len(rows):  # long histories (and the above): a dense block of the few users who have them
            block = queries[rows] @ self.vectors.T
            if heard is not None:
                mask_seen(block, heard[rows])
            ids[rows], scores[rows] = topk(block, N)
        return ids, scores


def recall_at(approximate: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over rows of |approximate[:, :k] & exact[:, :k]| / |exact[:, :k]| (``-1`` slots ignored)."""
    a, e = approximate[:, :k], exact[:, :k]
    hits = np.array([len(np.intersect1d(x[x >= 0], y[y >= 0])) for x, y in zip(a, e, strict=True)])
    sizes = (e >= 0).sum(axis=1)
    keep = sizes > 0
    return float(np.mean(hits[keep] / sizes[keep])) if keep.any() else 1.0
