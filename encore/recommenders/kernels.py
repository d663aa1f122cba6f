"""The vectorised helpers every recommender shares: input checks, pair scoring, BLAS thread
limits, ``.npz`` serialisation; top-N selection and masking (:mod:`encore.retrieval.topn`).

Orientation and padding conventions: see :mod:`encore.recommenders.base`.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

import numpy as np
import threadpoolctl
from scipy.sparse import csc_matrix, csr_matrix, issparse

from encore.arrays import row_sums
from encore.retrieval.topn import (  # re-exported: the top-N selection lives with retrieval
    compact,
    drop_self,
    is_seen,
    mask_seen,
    mask_seen_sparse,
    seen_flat_indices,
    topk,
    topk_sparse,
)

__all__ = [
    "PathOrFile", "as_ids", "check_user_items", "compact", "drop_self", "factor_pair_scores",
    "history_pair_scores", "is_seen", "mask_seen", "mask_seen_sparse", "npz_bytes", "seen_flat_indices",
    "single_threaded_blas", "topk", "topk_sparse",
]

PathOrFile = str | os.PathLike[str] | IO[bytes]

_PAIR_CHUNK = 65_536
"""Pairs scored per chunk in the pair-scoring helpers (bounds temporary memory)."""
_FACTOR_CHUNK = 8_192
"""Pairs per chunk of factor dot products: small enough for the gathered rows to stay in cache."""


# ---------------------------------------------------------------------------------------
# input checks
# ---------------------------------------------------------------------------------------


def check_user_items(user_items: Any, n_items: int | None = None) -> csr_matrix:
    """Return ``user_items`` as a float32 CSR matrix, copying only when it must.

    Raises ValueError when the matrix is not 2-D sparse, or when ``n_items`` is given and
    the column count differs (a transposed ``item_users`` matrix is the usual culprit).
    """
    if not issparse(user_items) or user_items.ndim != 2:
        raise ValueError(f"user_items must be a 2-D scipy.sparse matrix, got {type(user_items).__name__}")
    if user_items.format != "csr":
        user_items = user_items.tocsr()
    if user_items.dtype != np.float32:
        user_items = user_items.astype(np.float32)
    if n_items is not None and user_items.shape[1] != n_items:
        raise ValueError(
            f"user_items has {user_items.shape[1]} columns but the model was fitted on {n_items} "
            "items; pass a (n_users, n_items) matrix"
        )
    return csr_matrix(user_items) if not isinstance(user_items, csr_matrix) else user_items


def as_ids(ids: Any) -> np.ndarray:
    """A 1-D int64 array of ids (scalars become length-1 arrays)."""
    return np.atleast_1d(np.asarray(ids, dtype=np.int64)).ravel()


# ---------------------------------------------------------------------------------------
# pair scoring for models of the form  score(u, i) = sum_j H[u, j] * S[j, i]
# ---------------------------------------------------------------------------------------


def history_pair_scores(
    history: csr_matrix,
    similarity: np.ndarray | csr_matrix | csc_matrix,
    users: np.ndarray,
    items: np.ndarray,
    chunk: int = _PAIR_CHUNK,
) -> np.ndarray:
    """``(history @ similarity)[users[p], items[p]]`` for every pair p, without the dense product.

    Parameters
    ----------
    history:
        ``(n_users, n_sources)`` CSR, e.g. weighted plays (sources = items) or the social
        graph (sources = friends).
    similarity:
        ``(n_sources, n_items)`` dense array or sparse matrix.
    users, items:
        ``(n_pairs,)`` int arrays.

    Dense ``similarity``: for each pair we gather ``similarity[j, item]`` over the user's
    history items ``j`` (flat CSR arrays) and reduce with ``bincount`` — work proportional to
    the pairs' total history length. Sparse ``similarity``: the sparse product of the pairs'
    users' rows with it, in chunks of users of at most ``_PRODUCTS`` multiply-adds, and the
    pairs looked up in its sorted keys (a binary search per pair, not per history entry).
    """
    users, items = as_ids(users), as_ids(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
    if issparse(similarity):
        return _sparse_history_pair_scores(history, csr_matrix(similarity, dtype=np.float64), users, items)
    out = np.zeros(len(users), dtype=np.float32)
    for start in range(0, len(users), chunk):
        u, it = users[start : start + chunk], items[start : start + chunk]
        block = history[u]
        pair_of_nnz = np.repeat(np.arange(len(u)), np.diff(block.indptr))
        if len(pair_of_nnz) == 0:
            continue
        contrib = block.data.astype(np.float64) * similarity[block.indices, it[pair_of_nnz]]
        out[start : start + len(u)] = np.bincount(pair_of_nnz, weights=contrib, minlength=len(u))
    return out


_PRODUCTS = 1 << 24
"""Most multiply-adds (history entries x similarity row lengths) one sparse chunk computes."""


def _sparse_history_pair_scores(history: csr_matrix, similarity: csr_matrix, users: np.ndarray,
                                items: np.ndarray) -> np.ndarray:
    order = np.argsort(users, kind="stable")
    pair_users, pair_items = users[order], items[order]
    uniq, starts = np.unique(pair_users, return_index=True)
    starts = np.r_[starts, len(pair_users)]
    rows = history[uniq].astype(np.float64)
    ends = np.cumsum(row_sums(rows, np.diff(similarity.indptr)[rows.indices]))
    n_items = similarity.shape[1]
    out = np.zeros(len(users), dtype=np.float32)
    first = 0
    while first < len(uniq):
        limit = (ends[first - 1] if first else 0) + _PRODUCTS
        last = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
        block = (rows[first:last] @ similarity).tocsr()
        block.sort_indices()
        # CSR order with sorted indices: the (row, item) keys are already ascending.
        table = np.repeat(np.arange(last - first, dtype=np.int64), np.diff(block.indptr)) * n_items + block.indices
        lo, hi = starts[first], starts[last]
        local = np.repeat(np.arange(last - first, dtype=np.int64), np.diff(starts[first:last + 1]))
        keys = local * n_items + pair_items[lo:hi]
        pos = np.minimum(np.searchsorted(table, keys), max(len(table) - 1, 0))
        found = table[pos] == keys if len(table) else np.zeros(len(keys), dtype=bool)
        values = np.zeros(hi - lo, dtype=np.float64)
        values[found] = block.data[pos[found]]
        out[order[lo:hi]] = values
        first = last
    return out


def factor_pair_scores(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    users: np.ndarray,
    items: np.ndarray,
    chunk: int = _FACTOR_CHUNK,
) -> np.ndarray:
    """Row-wise dot products ``user_factors[users[p]] . item_factors[items[p]]`` (float32).

    Gathered in chunks small enough to stay in cache (``np.take``): 4x faster than 65k-row
    fancy-indexed blocks, the same values.
    """
    users, items = as_ids(users), as_ids(items)
    if users.shape != items.shape:
        raise ValueError(f"users and items must have the same length, got {len(users)} and {len(items)}")
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), chunk):
        sl = slice(start, start + chunk)
        out[sl] = np.einsum("ij,ij->i", np.take(user_factors, users[sl], axis=0),
                            np.take(item_factors, items[sl], axis=0))
    return out


# ---------------------------------------------------------------------------------------
# BLAS thread limits
# ---------------------------------------------------------------------------------------

_CONTROLLER: threadpoolctl.ThreadpoolController | None = None


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread inside the block.

    implicit's models warn ("OpenBLAS is configured to use N threads") when constructed
    with a multi-threaded BLAS, and BLAS threads fight implicit's own threads. A cached
    :class:`threadpoolctl.ThreadpoolController` makes this ~20 µs instead of the ~1.5 ms
    of ``threadpool_limits`` (which rescans the loaded libraries every time). It is built
    on first use, i.e. after the implicit-backed module imported implicit and its BLAS.
    """
    global _CONTROLLER
    if _CONTROLLER is None:
        _CONTROLLER = threadpoolctl.ThreadpoolController()
    with _CONTROLLER.limit(limits=1, user_api="blas"):
        yield


# ---------------------------------------------------------------------------------------
# (de)serialisation helpers: .npz only, never pickle
# ---------------------------------------------------------------------------------------


def npz_bytes(save: Any) -> np.ndarray:
    """Run a ``save(fileobj)`` function into memory and return the bytes as a uint8 array.

    Used to embed implicit's own ``.npz`` model format inside ours (one file per model).
    """
    buf = io.BytesIO()
    save(buf)
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


NPZ_COMPRESSLEVEL = 1
"""zlib level of saved models. Level 1 keeps ~98% of the default level 6's saving on Encore's
float32 factors, similarity tables and embeddings (Last.fm 2K: 14.0 -> 9.4 MB itemknn, 17.7 ->
10.9 MB item2item, 4.9 -> 4.0 MB ALS) in a fifth of the time (docs/benchmarks.md, "Outputs")."""


def save_npz_compressed(path: PathOrFile, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez_compressed`` at :data:`NPZ_COMPRESSLEVEL`: a zip of ``.npy`` members (what
    ``np.load`` reads), never pickled. numpy's own picks zlib's default level 6, ~5x slower."""
    with zipfile.ZipFile(_npz_path(path), "w", compression=zipfile.ZIP_DEFLATED,
                         compresslevel=NPZ_COMPRESSLEVEL) as archive:
        for name, array in arrays.items():
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, np.asanyarray(array), allow_pickle=False)


def _npz_path(path: PathOrFile) -> PathOrFile:
    # np.savez appends ".npz" to names without it; do the same on load.
    if isinstance(path, str | os.PathLike):
        path = os.fspath(path)
        if not path.endswith(".npz"):
            path += ".npz"
    return path
