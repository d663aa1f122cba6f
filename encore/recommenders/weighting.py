"""Confidence / term weighting of sparse count matrices.

Two orientations occur in this package:

* interactions ``user_items`` ``(n_users, n_items)``: :func:`weight_user_items` treats each
  *item* as a document whose terms are its listeners (implicit's Last.fm example weights
  ``item_users`` with BM25), so play counts become listener-relative confidences;
* item side information ``item_features`` ``(n_items, n_features)``: :func:`weight_documents`
  treats each *row* as a document (an item) and each column as a term (tag, genre ...).

All functions return a new float32 CSR matrix with the same shape and sparsity pattern.
"""

from __future__ import annotations

from typing import Literal, Self, get_args

import numpy as np
from implicit.nearest_neighbours import bm25_weight as _implicit_bm25
from implicit.nearest_neighbours import tfidf_weight as _implicit_tfidf
from scipy.sparse import csr_matrix, spmatrix

InteractionWeighting = Literal["bm25", "log1p", "none"]
DocumentWeighting = Literal["tfidf", "bm25", "none"]


def _check_choice(value: str, literal: object, what: str) -> None:
    choices = get_args(literal)
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")


def _as_csr32(X: spmatrix) -> csr_matrix:
    out = csr_matrix(X, dtype=np.float32, copy=False)
    out.sort_indices()
    return out


def bm25_weight(X: spmatrix, K1: float = 100.0, B: float = 0.8) -> csr_matrix:
    """BM25-weight the rows (documents) of ``X`` ``(n_documents, n_terms)``.

    Thin wrapper around :func:`implicit.nearest_neighbours.bm25_weight` returning float32 CSR:
    ``w = x (K1 + 1) / (K1 * length_norm[row] + x) * idf[col]`` with
    ``idf = log(n_documents) - log1p(df)``.
    """
    return _as_csr32(_implicit_bm25(X, K1=K1, B=B))


def tfidf_weight(X: spmatrix) -> csr_matrix:
    """TF-IDF-weight the rows (documents) of ``X`` ``(n_documents, n_terms)``.

    Wrapper around :func:`implicit.nearest_neighbours.tfidf_weight`:
    ``w = sqrt(x) * (log(n_documents) - log1p(df))``, float32 CSR.
    """
    return _as_csr32(_implicit_tfidf(X))


def log1p_weight(X: spmatrix) -> csr_matrix:
    """``log1p`` of every stored value (dampens heavy-tailed play counts)."""
    out = csr_matrix(X, dtype=np.float32, copy=True)
    np.log1p(out.data, out=out.data)
    out.sort_indices()
    return out


class InteractionWeighter:
    """A fitted confidence transform of ``user_items`` ``(n_users, n_items)`` rows.

    ``"bm25"`` treats each *item* as a document whose terms are its listeners, exactly as
    ``implicit.nearest_neighbours.bm25_weight(user_items.T, K1, B).T`` (implicit's Last.fm
    recipe)::

        w[u, i] = x (K1 + 1) / (K1 * length_norm[i] + x) * idf[u]
        length_norm[i] = (1 - B) + B * plays[i] / mean(plays)    # plays[i]: item's total, at fit
        idf[u] = log(n_items) - log1p(n_items_played_by(u))

    ``length_norm`` is learned at :meth:`fit`; ``idf`` depends only on the row itself, so
    :meth:`transform` can weight any block of history rows (new users, or the rows of a
    score batch) consistently with the training matrix. ``"log1p"`` and ``"none"`` are
    stateless.
    """

    def __init__(self, scheme: InteractionWeighting = "bm25", K1: float = 100.0, B: float = 0.8):
        _check_choice(scheme, InteractionWeighting, "weighting")
        self.scheme = scheme
        self.K1 = K1
        self.B = B
        self.length_norm_: np.ndarray | None = None

    def fit(self, user_items: spmatrix) -> Self:
        """Learn the per-item BM25 length normalisation (no-op for other schemes)."""
        if self.scheme == "bm25":
            plays = np.asarray(user_items.sum(axis=0), dtype=np.float64).ravel()
            mean = plays.mean() if plays.size and plays.mean() > 0 else 1.0
            self.length_norm_ = (1.0 - self.B) + self.B * plays / mean
        return self

    def transform(self, user_items: spmatrix) -> csr_matrix:
        """Weighted copy of ``user_items`` rows ``(n_rows, n_items)``, float32 CSR."""
        if self.scheme == "log1p":
            return log1p_weight(user_items)
        out = csr_matrix(user_items, dtype=np.float32, copy=True)
        out.sort_indices()
        if self.scheme == "none":
            return out
        if self.length_norm_ is None:
            raise RuntimeError("InteractionWeighter('bm25') must be fitted before transform")
        if out.shape[1] != len(self.length_norm_):
            raise ValueError(f"expected {len(self.length_norm_)} item columns, got {out.shape[1]}")
        per_row = np.diff(out.indptr)
        idf = np.log(out.shape[1]) - np.log1p(per_row)
        x = out.data.astype(np.float64)
        w = x * (self.K1 + 1.0) / (self.K1 * self.length_norm_[out.indices] + x)
        out.data = (w * np.repeat(idf, per_row)).astype(np.float32)
        return out

    def fit_transform(self, user_items: spmatrix) -> csr_matrix:
        return self.fit(user_items).transform(user_items)

    def get_state(self) -> dict[str, np.ndarray]:
        """Fitted arrays for a model's ``.npz`` (empty for stateless schemes)."""
        return {} if self.length_norm_ is None else {"weighting_length_norm": self.length_norm_}

    def set_state(self, state: dict[str, np.ndarray]) -> Self:
        if "weighting_length_norm" in state:
            self.length_norm_ = np.asarray(state["weighting_length_norm"], dtype=np.float64)
        return self


def weight_user_items(
    user_items: spmatrix, weighting: InteractionWeighting, K1: float = 100.0, B: float = 0.8
) -> csr_matrix:
    """Confidence transform of a whole ``user_items`` ``(n_users, n_items)`` → float32 CSR.

    Shorthand for ``InteractionWeighter(weighting, K1, B).fit_transform(user_items)``:
    ``"bm25"`` weights each item's listener vector (documents = items, terms = users), as
    in implicit's Last.fm benchmark; ``"log1p"`` compresses play counts; ``"none"`` copies.
    """
    return InteractionWeighter(weighting, K1=K1, B=B).fit_transform(user_items)


def weight_documents(X: spmatrix, weighting: DocumentWeighting) -> csr_matrix:
    """Weight an item-feature matrix ``(n_items, n_features)``; rows are documents."""
    _check_choice(weighting, DocumentWeighting, "weighting")
    if weighting == "tfidf":
        return tfidf_weight(X)
    if weighting == "bm25":
        # Defaults for short documents (a few tags per item), not implicit's K1=100 for plays.
        return bm25_weight(X, K1=1.2, B=0.75)
    return csr_matrix(X, dtype=np.float32, copy=True)
