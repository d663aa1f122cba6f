"""Two-tower fold-in with numpy alone: a user's embedding from their listening history, no refit.

Shared by the ``twotower`` kind (:meth:`encore.recommenders.twotower.TwoTowerRecommender.fold_in`)
and the service (:mod:`encore.serving.foldin`), which must not import the training stack
(``encore.recommenders``, torch): both compute the same function of the same exported weights.

The user tower's history path: the bag of the user's items weighted by ``log1p(plays)`` (each row
summing to 1), mapped through the tower's linear layer and L2-normalised::

    embedding = normalise((weights @ history) @ bag_weight.T + bag_bias)

with ``history`` ``(n_items, k)``, ``bag_weight`` ``(k, k)`` and ``bag_bias`` ``(k,)``, the arrays
:data:`FOLD_IN_WEIGHTS` names in a fitted model's ``weights_``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from scipy.sparse import csr_matrix

FOLD_IN_WEIGHTS = ("w.history.weight", "w.bag.weight", "w.bag.bias")
"""The network weights fold-in reads (names as in the model's ``.npz``)."""


def l2_normalised(matrix: np.ndarray) -> np.ndarray:
    """Rows of ``matrix`` ``(n, k)`` scaled to unit length (zero rows stay zero), float32."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return (matrix / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)


def history_weights(user_items: csr_matrix) -> csr_matrix:
    """``log1p(plays)``, each row summing to 1 (a heavy listener's 10,000 plays of one artist do
    not drown the rest of their bag)."""
    weights = user_items.astype(np.float32, copy=True)
    weights.data = np.log1p(weights.data)
    sums = np.asarray(weights.sum(axis=1)).ravel()
    weights.data /= np.repeat(np.maximum(sums, 1e-12), np.diff(weights.indptr)).astype(np.float32)
    return weights


def fold_in_embeddings(user_items: csr_matrix, weights: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(n, k)`` unit-length embeddings of the ``n`` history rows of ``user_items`` ``(n, n_items)``
    (play counts) from the :data:`FOLD_IN_WEIGHTS` of ``weights`` (module doc)."""
    history, bag_weight, bag_bias = (weights[key] for key in FOLD_IN_WEIGHTS)
    bag = np.asarray(history_weights(user_items) @ history, dtype=np.float32)
    return l2_normalised(bag @ bag_weight.T + bag_bias)
