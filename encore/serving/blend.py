"""How the service builds one list: item-to-item scores from a listening history, and the blend.

Everything works on integer item indices of a :class:`~encore.serving.blended_model.ServedModel`.
One request is one user, so these functions see one user's lists (at most ``k`` + the
offline top-k + a few hundred neighbours), never a loop over users.

**The blend rule** (:func:`interleave`). Two ranked candidate lists, *online* (similar items of
the user's latest listens, or fold-in) and *offline* (the ranker's list, or the popular list
for a user the ranker does not know), share the ``k`` slots: slot ``i`` (0-based) is given to
the online list while it has filled fewer than ``ceil((i + 1) * online_share)`` slots,
otherwise to the offline list; when one list runs out the other takes the slot. An item is
taken once (the first list to reach it wins and names the ``source``), items the user just
played are never taken, and a list still short of ``k`` is completed from the popular list.
``online_share`` = 0.5 alternates online, offline, online...; 1.0 puts all online candidates
first; 0.0 ignores them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Ranked:
    """A ranked candidate list: item indices (best first), their scores, one source name."""

    items: np.ndarray
    scores: np.ndarray
    source: str

    @staticmethod
    def empty(source: str) -> Ranked:
        return Ranked(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64), source)


def csr_positions(indptr: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Flat positions of the entries of ``rows`` in a CSR layout, row after row (vectorised)."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    if lengths.sum() == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def neighbour_scores(indptr: np.ndarray, neighbours: np.ndarray, similarity: np.ndarray, history: np.ndarray,
                     limit: int, source: str) -> Ranked:
    """Item-to-item fold-in: score(j) = sum over listened items i of sim(i, j).

    Why this fold-in: the similar-items table already ships in every bundle (the serving
    contract of the pyfunc stays as it is) and a new listener needs no model refit: a user's
    history is a sparse vector and the table a sparse item-item matrix, so their product is
    the user's scores (the same item-based scoring as item-kNN). Listened items are removed;
    the best ``limit`` are returned, ties by item index.
    """
    history = np.unique(history)
    if len(history) == 0:
        return Ranked.empty(source)
    pos = csr_positions(indptr, history)
    if len(pos) == 0:
        return Ranked.empty(source)
    cand, inverse = np.unique(neighbours[pos], return_inverse=True)
    scores = np.bincount(inverse, weights=similarity[pos], minlength=len(cand))
    keep = ~np.isin(cand, history)
    cand, scores = cand[keep], scores[keep]
    if len(cand) > limit:
        top = np.argpartition(-scores, limit - 1)[:limit]
        cand, scores = cand[top], scores[top]
    order = np.lexsort((cand, -scores))
    return Ranked(cand[order], scores[order], source)


@dataclass(frozen=True)
class Blended:
    """The final list: item indices, scores and the source of each entry."""

    items: np.ndarray
    scores: np.ndarray
    sources: list[str]


def interleave(online: Ranked, offline: Ranked, popular: Ranked, k: int, online_share: float,
               exclude: np.ndarray) -> Blended:
    """Blend ``online`` and ``offline`` into ``k`` unique items (rule in the module docstring),
    skipping ``exclude`` (what the user just played), completed from ``popular``."""
    taken: set[int] = {int(i) for i in exclude}
    items: list[int] = []
    scores: list[float] = []
    sources: list[str] = []
    cursors = [0, 0, 0]
    lists = (online, offline, popular)

    def take_from(which: int) -> bool:
        ranked = lists[which]
        while cursors[which] < len(ranked.items):
            j = cursors[which]
            cursors[which] += 1
            item = int(ranked.items[j])
            if item not in taken:
                taken.add(item)
                items.append(item)
                scores.append(float(ranked.scores[j]))
                sources.append(ranked.source)
                return True
        return False

    n_online = 0
    while len(items) < k:
        slot = len(items)
        want_online = n_online < math.ceil((slot + 1) * online_share - 1e-9)
        first, second = (0, 1) if want_online else (1, 0)
        if take_from(first):
            n_online += first == 0
        elif take_from(second):
            n_online += second == 0
        else:
            break
    while len(items) < k and take_from(2):  # short of k: popular items complete the list
        pass
    return Blended(np.asarray(items, dtype=np.int64), np.asarray(scores, dtype=np.float64), sources)
