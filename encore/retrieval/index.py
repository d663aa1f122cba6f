"""Top-N by inner product over item vectors, through a faiss index, heard items filtered exactly.

Why faiss: measured against the alternatives on Encore's own factors (benchmarks/ann.py,
benchmarks/results/ann.json); it ships exact (``IndexFlatIP``, the ground truth), quantised
(PQ fast scan with exact re-scoring), graph (HNSW) and inverted-file (IVF) indexes in one
maintained wheel.

Why ``pq`` is the default: factor models give items norms that spread over orders of magnitude
(ALS on the synthetic catalogue: median 0.05, largest 11). An inner-product HNSW graph links
items by inner product, so items of small norm are rarely anyone's neighbour and hard to reach:
the lists of users whose best items include them stay short of exact however wide the search
(recall@100 stalls near 0.95 on ALS). The norm augmentation (append ``sqrt(M^2 - |x|^2)`` to
every item, ``M`` the largest norm, and 0 to every query: ``|q - x|^2 = |q|^2 + M^2 - 2 q.x``,
so the nearest augmented item is the best inner product, Bachrach et al. 2014) is exact
(``flat`` with ``norm_augmentation`` returns the exact lists, tested) but puts almost every item
near one pole of the sphere, where a graph's neighbourhoods blur: worse still. The quantised
scan visits every item in a 4-bit copy (16 x smaller than float32, scored 32 codes per SIMD
instruction) and re-scores the best ``refine_factor * k`` exactly: nothing is unreachable. It
stays linear in the items, and on 2 cores at 100k items and 64 dimensions it was measured no
faster than implicit's exact top-N (benchmarks/results/ann.md): ``exact`` stays the default
retrieval; a catalogue of tens of millions would want ``ivf`` in front of the scan.

Seen items: a user's heard items are removed *after* the search, so each query fetches
``N + n_heard`` items (rounded up to a power of two, so users share a few search calls) and the
heard ones are masked out; a user whose fetch would exceed ``max_fetch`` is scored exactly.
Returned scores are the exact inner products of the returned items, ordered best first, ties
by the lower item id (as :func:`.topn.topk`).

Reproducible: PQ's and IVF's k-means take ``seed``; the HNSW graph is built on one thread
(parallel insertion depends on thread timing) with faiss's fixed level seed; a search is
deterministic.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

import numpy as np
from scipy.sparse import csr_matrix

from encore.threads import available_cores

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


def augment_items(vectors: np.ndarray, max_norm: float) -> np.ndarray:
    """Item vectors with the extra coordinate ``sqrt(max_norm^2 - |x|^2)`` (``max_norm``: at
    least the largest norm): every augmented item then has norm ``max_norm``, so its L2
    distance to an :func:`augment_queries` query falls as its inner product with it rises."""
    sq = np.einsum("ij,ij->i", vectors, vectors)
    extra = np.sqrt(np.maximum(max_norm**2 - sq, 0.0)).astype(np.float32)
    return np.ascontiguousarray(np.hstack([vectors, extra[:, None]]), dtype=np.float32)


def augment_queries(queries: np.ndarray) -> np.ndarray:
    """Queries with a 0 appended: ``|[q, 0] - [x, e]|^2 = |q|^2 + max_norm^2 - 2 q.x``."""
    return np.ascontiguousarray(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]), dtype=np.float32)


_MIN_QUANTISED = 256
"""Fewest quantised items for ``pq`` (k-means of 16 codes per sub-space); below, all are exact."""
_SEARCH_CHUNK = 256
"""Queries per faiss search call on a search thread."""


def _pad_columns(vectors: np.ndarray, pad: int) -> np.ndarray:
    """``vectors`` with ``pad`` zero columns appended (float32, contiguous, as faiss wants)."""
    if pad:
        vectors = np.hstack([vectors, np.zeros((len(vectors), pad), np.float32)])
    return np.ascontiguousarray(vectors, dtype=np.float32)


class InnerProductIndex:
    """Best items by ``query . vectors[i]`` for many queries at once.

    Parameters
    ----------
    vectors:
        ``(n_items, d)`` item vectors (cast to float32).
    settings:
        The index (:class:`~encore.retrieval.config.AnnConfig`).
    seed:
        Seed of PQ's and IVF's k-means (HNSW's levels use faiss's fixed seed).
    num_threads:
        Search threads (0 = every core of this process); results do not depend on it.
    """

    def __init__(self, vectors: np.ndarray, settings: AnnConfig, *, seed: int = 0, num_threads: int = 0):
        faiss = _faiss()
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.settings = settings
        self.num_threads = num_threads or available_cores()
        n, d = self.vectors.shape
        self.n_items = n
        self._members = np.arange(n)
        self._augmented = False
        self._pad = 0
        self._head = np.empty(0, np.int64)  # pq: member positions scored exactly (largest norms)
        self._tail = None  # pq: member position of each row of the quantised index
        if settings.index == "flat" and not settings.norm_augmentation:
            self._index = faiss.IndexFlatIP(d)
            self._index.add(self.vectors)
            return
        # Zero vectors (ALS items nobody played: a sixth of a synthetic catalogue) score 0 for
        # every query and only clutter an index; they are left out, and a list that reaches
        # scores <= 0, where they would rank, is scored exactly (top_n).
        self._members = np.flatnonzero(np.any(self.vectors != 0, axis=1))
        members = self.vectors[self._members]
        self._augmented = settings.norm_augmentation and settings.index != "pq"
        if self._augmented:
            max_norm = float(np.sqrt(np.einsum("ij,ij->i", members, members).max())) if len(members) else 0.0
            data, metric = augment_items(members, max_norm), faiss.METRIC_L2
        else:
            data, metric = np.ascontiguousarray(members), faiss.METRIC_INNER_PRODUCT
        dim = data.shape[1]
        if settings.index == "flat":  # exact, through the augmented path (the transform's check)
            index = faiss.IndexFlat(dim, metric)
            index.add(data)
        elif settings.index == "pq":
            index = self._pq_index(faiss, data, settings, seed)
        elif settings.index == "hnsw":
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

    def _pq_index(self, faiss: Any, data: np.ndarray, settings: AnnConfig, seed: int) -> Any:
        """Exact re-scoring (``IndexRefineFlat``) over a 4-bit PQ fast-scan copy of ``data``,
        except the ``exact_share`` of rows with the largest norms (``self._head``), which each
        search scores exactly. Why: the codebooks are k-means of mostly small vectors, and the
        few large ones (popular items, the very ones at the top of lists) were clipped to the
        outermost codes: BPR's recall@10 fell to about 0.7 with every item quantised (dev run
        on 100k items), and reached 1.0 with the 3% largest scored exactly.

        The vectors are padded with zero columns to a whole, even number of codes (fast scan
        packs two codes a byte); a zero column adds nothing to an inner product. Training is
        k-means per sub-space on a seeded sample (``seed``), so a build is reproducible.
        """
        norms = np.einsum("ij,ij->i", data, data)
        order = np.argsort(-norms, kind="stable")
        n_head = int(np.ceil(settings.exact_share * len(data)))
        if len(data) - n_head < _MIN_QUANTISED:  # too few to train 16 codes on: all exact
            n_head = len(data)
        self._head, self._tail = np.sort(order[:n_head]), np.sort(order[n_head:])
        self._pad = (-data.shape[1]) % (2 * settings.pq_dims)
        data = _pad_columns(data[self._tail], self._pad)
        codes = data.shape[1] // settings.pq_dims
        base = faiss.IndexPQFastScan(data.shape[1], codes, 4, faiss.METRIC_INNER_PRODUCT)
        base.pq.cp.seed = seed
        index = faiss.IndexRefineFlat(base)
        index.k_factor = float(settings.refine_factor)
        if len(data):
            # One thread: the build takes about a second at 100k items, and faiss's OpenMP
            # threads on a busy 2-core machine made it several times slower (they spin-wait).
            with _omp_threads(1):
                index.train(data)
                index.add(data)
        return index

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The index's ``k`` best items per query: ids ``(n, k)`` int64 (``-1`` where it found
        fewer) and their exact inner products (float32, ``-inf`` for ``-1``), best first,
        ties by the lower id."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        k = min(k, len(self._members))
        if len(queries) == 0 or k <= 0:
            return np.full((len(queries), max(k, 0)), -1, np.int64), np.full((len(queries), max(k, 0)), -np.inf,
                                                                           np.float32)
        if self.settings.index == "hnsw":
                # efSearch bounds the candidate list; below k the graph cannot return k items.
            self._index.hnsw.efSearch = max(self.settings.ef_search, k)
        elif self.settings.index == "ivf":
            self._index.nprobe = min(self.settings.nprobe, self._index.nlist)
        elif self.settings.index == "pq":
            self._index.k_factor = float(self.settings.refine_factor)
        sent = augment_queries(queries) if self._augmented else _pad_columns(queries, self._pad)
        if self._index.ntotal:
            found, ids = self._search_chunks(sent, min(k, self._index.ntotal))
        else:  # pq with every item in the exact head
            found, ids = np.empty((len(sent), 0), np.float32), np.empty((len(sent), 0), np.int64)
        if self._tail is not None:
            found, ids = self._with_head(queries, found, np.where(ids >= 0, self._tail[np.maximum(ids, 0)], -1), k)
        valid = ids >= 0
        ids = np.where(valid, self._members[np.maximum(ids, 0)], -1)
        if self._augmented:  # faiss gave L2 distances: score the items, and order by score
            scores = np.einsum("ij,ikj->ik", queries, self.vectors[np.where(valid, ids, 0)]).astype(np.float32)
            rows = np.arange(len(ids))
        else:
            # faiss's own inner products (exact float32 dot products: IndexRefineFlat re-scores
            # the quantised candidates from the stored vectors), already best first; only rows
            # holding a tie are re-ordered, so ties go to the lower id. Re-scoring every row
            # in numpy cost more than the search itself (a (n, k, d) gather).
            scores = found.astype(np.float32, copy=False)
            rows = np.flatnonzero(np.any((scores[:, 1:] == scores[:, :-1]) & valid[:, 1:], axis=1))
        scores[~valid] = -np.inf
        if len(rows):
            sub_ids, sub_scores = ids[rows], scores[rows]
            order = np.lexsort((np.where(sub_ids >= 0, sub_ids, np.iinfo(np.int64).max), -sub_scores), axis=1)
            ids[rows] = np.take_along_axis(sub_ids, order, axis=1)
            scores[rows] = np.take_along_axis(sub_scores, order, axis=1)
        return ids, scores

    def _with_head(self, queries: np.ndarray, found: np.ndarray, ids: np.ndarray, k: int
                   ) -> tuple[np.ndarray, np.ndarray]:
        """The quantised index's best (``found`` scores, ``ids`` member positions) merged with the
        exactly scored head: the ``k`` best of both, best first."""
        if len(self._head):
            head_ids, head_scores = topk(queries @ self.vectors[self._members[self._head]].T, min(k, len(self._head)),
                                         num_threads=self.num_threads)
            found = np.hstack([np.where(ids >= 0, found, -np.inf), head_scores])
            ids = np.hstack([ids, np.where(head_ids >= 0, self._head[np.maximum(head_ids, 0)], -1)])
        order = np.argsort(-found, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(found, order, axis=1), np.take_along_axis(ids, order, axis=1)

    def _search_chunks(self, sent: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """faiss's search over chunks of queries on ``num_threads`` Python threads, one OpenMP
        thread each. faiss releases the GIL while it searches; its own OpenMP split was slower
        on a busy machine (every thread waits at the barrier for the slowest, spinning), and
        the chunks balance themselves. A chunk's results do not depend on the others."""
        faiss = _faiss()

        def one(lo: int) -> tuple[np.ndarray, np.ndarray]:
            faiss.omp_set_num_threads(1)  # this thread's OpenMP setting (a new thread has the default)
            return self._index.search(sent[lo:lo + _SEARCH_CHUNK], k)

        starts = range(0, len(sent), _SEARCH_CHUNK)
        if self.num_threads <= 1 or len(starts) == 1:
            with _omp_threads(1):
                return self._index.search(sent, k)
        with ThreadPoolExecutor(min(self.num_threads, len(starts))) as pool:
            parts = list(pool.map(one, starts))
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

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


def score_recall_at(approximate_scores: np.ndarray, exact_scores: np.ndarray, k: int, *, rtol: float = 1e-5) -> float:
    """Recall@k that counts ties as hits: the share of the first ``k`` approximate items whose
    exact score reaches the ``k``-th exact score (within ``rtol``), mean over rows with an
    exact list. :func:`recall_at` counts item ids, so among items that tie at the cut (equal
    vectors: item2item's items with the same tags) it counts the ones the exact path happened
    to keep; this one, like ann-benchmarks' recall, does not. Scores must be exact (as the
    index returns them), ``-inf`` for empty slots."""
    a, e = approximate_scores[:, :k], exact_scores[:, :k]
    sizes = np.isfinite(e).sum(axis=1)
    keep = sizes > 0
    if not keep.any():
        return 1.0
    cut = e[np.arange(len(e)), np.maximum(sizes - 1, 0)]
    hits = (np.isfinite(a) & (a >= cut[:, None] - rtol * np.abs(cut[:, None]))).sum(axis=1)
    return float(np.mean(np.minimum(hits[keep], sizes[keep]) / sizes[keep]))
