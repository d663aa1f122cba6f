"""Score recommendation lists of a prepared dataset the same way for every component.

Glue between :mod:`encore.data.prepared` and the pure functions of
:mod:`encore.evaluation.metrics`: which users are evaluated, against which part, and with which
training statistics (popularity, catalogue, item features) the beyond-accuracy metrics use.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.data.prepared import PreparedData, Stage
from encore.evaluation import metrics
from encore.evaluation.segments import ALL, COLD, COLD_ITEMS, SEGMENTS, USER_SEGMENTS, WARM

__all__ = ["SEGMENTS", "Evaluator", "Segment", "frame_from_lists", "lists_from_frame"]
# Evaluation segments (:data:`SEGMENTS`, declared in :mod:`encore.evaluation.segments`): every
# test user; users with history in the stage's training data (``warm``; train = base + target
# for the test stage); users without (``cold``); and the test pairs on items absent from
# training (``cold_items``: relevance restricted to those items, users with at least one such
# pair).


@dataclass(frozen=True)
class Segment:
    """Rows of :attr:`Evaluator.users` in a segment, and their relevant items in it."""

    name: str
    rows: np.ndarray
    relevant: sp.csr_matrix

    @property
    def n_users(self) -> int:
        return len(self.rows)


def lists_from_frame(frame: pd.DataFrame, users: np.ndarray, k: int) -> np.ndarray:
    """Long (user, item, rank) table -> ``(len(users), k)`` item array, -1 padded.

    ``rank`` starts at 1; rows of users not in ``users`` and ranks above ``k`` are ignored.
    """
    lists = np.full((len(users), k), -1, dtype=np.int64)
    row_of_user = np.full(int(max(users.max(initial=0), frame["user"].max() if len(frame) else 0)) + 1, -1)
    row_of_user[users] = np.arange(len(users))
    rows = row_of_user[frame["user"].to_numpy()]
    ranks = frame["rank"].to_numpy() - 1
    keep = (rows >= 0) & (ranks < k)
    lists[rows[keep], ranks[keep]] = frame["item"].to_numpy()[keep]
    return lists


def frame_from_lists(users: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """``(n, N)`` id/score arrays (-1 padded) -> long table user, item, score, rank (from 1)."""
    n, width = ids.shape
    valid = ids >= 0
    return pd.DataFrame({
        "user": np.repeat(users.astype(np.int32), width)[valid.ravel()],
        "item": ids[valid].astype(np.int32),
        "score": scores[valid].astype(np.float32),
        "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n)[valid.ravel()],
    })


@dataclass
class Evaluator:
    """Evaluates lists for the users of the part a ``stage`` fit is scored against.

    ``stage="train"`` evaluates on test (the headline numbers); ``stage="base"`` on the
    ranker target part.
    """

    prepared: PreparedData
    stage: Stage
    ks: tuple[int, ...]

    @cached_property
    def users(self) -> np.ndarray:
        return self.prepared.eval_users(self.stage)

    @cached_property
    def relevant(self) -> sp.csr_matrix:
        return self.prepared.relevant(self.stage)[self.users]

    @cached_property
    def _train(self) -> sp.csr_matrix:
        return self.prepared.user_items(self.stage)

    @cached_property
    def item_user_counts(self) -> np.ndarray:
        return self.prepared.item_listeners(self.stage)

    @cached_property
    def item_features(self) -> sp.csr_matrix | None:
        features = self.prepared.item_features(self.stage)
        return features if features.nnz else None

    @cached_property
    def segments(self) -> dict[str, Segment]:
        """Every segment of :data:`SEGMENTS`, vectorised (an empty segment has no rows)."""
        warm = np.diff(self._train.indptr)[self.users] > 0
        # Items nobody has in training: their test pairs are the cold-item segment.
        cold_item = sp.diags((self.item_user_counts == 0).astype(np.float32), format="csr")
        relevant_cold_items = sp.csr_matrix(self.relevant @ cold_item)
        relevant_cold_items.eliminate_zeros()
        cold_item_rows = np.flatnonzero(np.diff(relevant_cold_items.indptr) > 0)
        all_rows = np.arange(len(self.users))
        return {
            ALL: Segment(ALL, all_rows, self.relevant),
            WARM: Segment(WARM, np.flatnonzero(warm), self.relevant[np.flatnonzero(warm)]),
            COLD: Segment(COLD, np.flatnonzero(~warm), self.relevant[np.flatnonzero(~warm)]),
            COLD_ITEMS: Segment(COLD_ITEMS, cold_item_rows, relevant_cold_items[cold_item_rows]),
        }

    def scored_as(self, segment: str) -> str:
        """``"all"`` when ``segment`` holds every test user with all their relevant items (warm
        on a per-user holdout): its numbers are those of ``all``, so they are computed once."""
        whole = segment in USER_SEGMENTS and self.segments[segment].n_users == len(self.users)
        return ALL if whole else segment

    def user_segment(self) -> np.ndarray:
        """``"warm"`` or ``"cold"`` per row of :attr:`users` (the per-user table's column)."""
        return np.where(np.diff(self._train.indptr)[self.users] > 0, WARM, COLD)

    def evaluate(self, lists: np.ndarray, segment: str = "all") -> dict[str, float]:
        """All metrics at every k for ``(len(users), K)`` lists aligned with :attr:`users`,
        over the users (and, for ``cold_items``, the relevant items) of ``segment``."""
        seg = self.segments[segment]
        if seg.n_users == 0:
            raise ValueError(f"segment {segment!r} has no test users")
        return metrics.evaluate(
            lists[seg.rows], seg.relevant, self.ks,
            item_user_counts=self.item_user_counts,
            n_train_users=int(np.diff(self._train.indptr).astype(bool).sum()),
            train_items=np.flatnonzero(self.item_user_counts),
            item_features=self.item_features,
        )

    def per_user(self, lists: np.ndarray, metric: str, segment: str = "all") -> np.ndarray:
        """Per-user values of ``metric`` ("ndcg@10") for paired comparisons, over the rows of
        ``segment`` (in :attr:`users` order)."""
        name, _, k = metric.partition("@")
        seg = self.segments[segment]
        return metrics.per_user_metric(lists[seg.rows], seg.relevant, name, int(k))

    def candidate_recall(self, lists: np.ndarray) -> float:
        return metrics.candidate_recall(lists, self.relevant)
