"""Fold-in from a two-tower model in the service: a listener the model never saw gets an embedding
from their stored listens, scored against the model's item embeddings, without a refit.

``register`` writes ``foldin.npz`` into the bundle when the ranker uses a ``twotower`` instance
(that instance's train-stage model: the item embeddings and the user tower's history weights,
:meth:`encore.recommenders.twotower.TwoTowerRecommender.fold_in_state`). The embedding is the
function the kind's own ``fold_in`` computes (:func:`encore.foldin.fold_in_embeddings`, numpy
only: the service imports neither torch nor the training stack); the service's history of a user
is their stored listens, each listen one play.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import csr_matrix

from encore.foldin import FOLD_IN_WEIGHTS, fold_in_embeddings
from encore.serving.blend import Ranked


@dataclass(frozen=True)
class EmbeddingFoldIn:
    """One bundle's two-tower fold-in over the served item indexes."""

    source: str
    """The generator instance the arrays came from (for ``/health``)."""
    weights: dict[str, np.ndarray]
    """The :data:`~encore.foldin.FOLD_IN_WEIGHTS` (model item order)."""
    item_factors: np.ndarray
    """``(n_model_items, k)`` item embeddings, unit length."""
    model_item: np.ndarray
    """``(n_served_items,)``: each served item's index in the model, -1 where it has none."""
    served_item: np.ndarray
    """``(n_model_items,)``: each model item's served index."""

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], codes: pd.Index) -> EmbeddingFoldIn:
        """``arrays`` as ``EncoreServingModel.load_bundle`` read ``foldin.npz``; ``codes`` the served
        item ids in index order (they include every model item: the bundle's ``items`` table)."""
        served = codes.get_indexer(pd.Index(arrays["item_id"].astype(str)))
        if (served < 0).any():
            raise ValueError(f"foldin.npz names {int((served < 0).sum())} items the bundle does not serve")
        model_item = np.full(len(codes), -1, dtype=np.int64)
        model_item[served] = np.arange(len(served))
        return cls(source=str(arrays["source"]), weights={key: arrays[key] for key in FOLD_IN_WEIGHTS},
                   item_factors=arrays["item_factors"], model_item=model_item, served_item=served.astype(np.int64))

    def embedding(self, history: np.ndarray) -> np.ndarray:
        """``(k,)`` embedding of a listener from ``history`` (served item indexes, one per listen)."""
        items = self.model_item[np.asarray(history, dtype=np.int64)]
        items = items[items >= 0]
        row = csr_matrix((np.ones(len(items), dtype=np.float32), (np.zeros(len(items), dtype=np.int64), items)),
                         shape=(1, len(self.served_item)))
        row.sum_duplicates()  # a repeated listen is one more play
        return fold_in_embeddings(row, self.weights)[0]

    def rank(self, history: np.ndarray, limit: int, source: str) -> Ranked:
        """The best ``limit`` items for a listener with ``history`` (cosine of the fold-in embedding and
        the item embeddings), listened items removed, ties by served index."""
        scores = self.item_factors @ self.embedding(history)
        heard = self.model_item[np.unique(history)]
        scores[heard[heard >= 0]] = -np.inf
        limit = min(limit, int(np.isfinite(scores).sum()))
        if limit <= 0:
            return Ranked.empty(source)
        top = np.argpartition(-scores, limit - 1)[:limit]
        items, values = self.served_item[top], scores[top].astype(np.float64)
        order = np.lexsort((items, -values))
        return Ranked(items[order], values[order], source)
