"""Retrieval of the best items by inner product of vectors: exact, or approximate (ANN, faiss).

:class:`RetrievalConfig` is the ``retrieval`` / ``ann`` settings of a generator instance whose
scores are inner products (ALS, BPR, item2item, a kind exposing factors);
:class:`InnerProductIndex` answers top-N queries over item vectors with the already-heard items
filtered exactly. See docs/retrieval.md.
"""

from .config import AnnConfig, Retrieval
from .index import InnerProductIndex, recall_at, score_recall_at

__all__ = ["AnnConfig", "InnerProductIndex", "Retrieval", "recall_at", "score_recall_at"]
