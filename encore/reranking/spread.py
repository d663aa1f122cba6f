"""Steps that spread the lists over the catalogue and place new items, across users.

:class:`ExposureCap` is the one step that looks at every user at once: a global cap on how many
users' top ``k`` lists an item may appear in (a share of the users), filled position by
position: in round ``r`` every user takes the best remaining candidate of its (already ordered)
list whose item still has room; where more users want an item than it has room for, the users
who give it the highest relevance get it (ties: the lower user index) and the others move on to
their next candidate. Each row keeps its order, less the items it was refused (``skipped``), so
a list is its ranked candidates in order with its skipped items removed -- which is how the
service reproduces it for one user (:class:`RemoveKeys` with the component's skipped pairs).
The cap binds only over a deep enough list: a user whose first ``k`` candidates are all full
takes from below them, so the component re-ranks the ranker's whole ``top_k`` (50) list.

:func:`with_ranked_content` places new items (content-only candidates) at the rank the content
generator gives them among all its items, as that generator's own list would show them.

Only numpy here (the serving process imports this module); kept apart from
:mod:`encore.reranking.steps`, which the config model imports (every component's fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from encore.reranking.steps import (
    EXCLUDED,
    ExposureFloor,
    ItemSide,
    Lists,
    Settings,
    Step,
    chain,
    with_content_candidates,
)


def _compact(lists: Lists, gone: np.ndarray) -> Lists:
    """``lists`` with the ``gone`` (n, width) cells removed, every row's order kept (holes last)."""
    items = np.where(gone, -1, lists.items)
    relevance = np.where(gone, EXCLUDED, lists.relevance)
    order = np.argsort(items < 0, axis=1, kind="stable")
    return Lists(users=lists.users, items=np.take_along_axis(items, order, 1),
                 relevance=np.take_along_axis(relevance, order, 1))


def cap_skips(lists: Lists, share: float, k: int) -> np.ndarray:
    """The ``(n, width)`` cells the exposure cap refuses (see the module): each item in at most
    ``ceil(share * n)`` rows' first ``k`` places, rows taken in their current column order.

    Vectorised over users: one pass per place and, within it, one pass per refusal depth (a user
    refused its candidate tries its next one); no loop over users.
    """
    n, width = lists.items.shape
    skipped = np.zeros((n, width), dtype=bool)
    if share >= 1.0 or n == 0 or width == 0:
        return skipped
    cap = max(1, int(np.ceil(share * n)))
    items = lists.items
    counts = np.zeros(int(items.max(initial=-1)) + 1, dtype=np.int64)
    pointer = np.zeros(n, dtype=np.int64)  # the next column each row considers
    for _ in range(min(k, width)):
        pending = np.flatnonzero(pointer < width)
        while pending.size:
            item = items[pending, pointer[pending]]
            hole = item < 0
            pointer[pending[hole]] += 1  # a removed candidate: nothing to place, try the next column
            users, item = pending[~hole], item[~hole]
            # Priority: what the user loses if refused (its relevance over its next candidate's):
            # per-user scaled relevance ties at 1 for every user's best item, the loss does not.
            here = lists.relevance[users, pointer[users]]
            after = np.where(pointer[users] + 1 < width,
                             lists.relevance[users, np.minimum(pointer[users] + 1, width - 1)], -np.inf)
            loss = np.where(np.isfinite(after), here - after, np.inf)
            order = np.lexsort((users, -loss, item))  # by item, the largest loss first
            users, item = users[order], item[order]
            first = np.r_[True, item[1:] != item[:-1]]
            within = np.arange(len(item)) - np.maximum.accumulate(np.where(first, np.arange(len(item)), 0))
            accept = within < cap - counts[item]
            np.add.at(counts, item[accept], 1)
            pointer[users[accept]] += 1  # placed: this row is done for this place
            refused = users[~accept]
            skipped[refused, pointer[refused]] = True
            pointer[refused] += 1
            retry = np.concatenate([refused, pending[hole]])
            pending = np.sort(retry[pointer[retry] < width])
    return skipped


@dataclass(frozen=True)
class ExposureCap:
    """The global exposure cap over a batch of **all** users (see the module); off at share 1."""

    share: float
    k: int

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if self.share >= 1.0:
            return lists
        return _compact(lists, cap_skips(lists, self.share, self.k))


@dataclass(frozen=True)
class RemoveKeys:
    """Remove each row's ``user * n_items + item`` ``keys`` (sorted), keeping the order: the
    service's form of :class:`ExposureCap` (the cells the component's cap refused)."""

    keys: np.ndarray
    n_items: int

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if not len(self.keys):
            return lists
        gone = np.isin(lists.users[:, None] * self.n_items + lists.items, self.keys) & (lists.items >= 0)
        return _compact(lists, gone)


def full_chain(settings: Settings, *, blocked: np.ndarray, rejected: np.ndarray, n_items: int,
               capped: np.ndarray | None = None) -> list[Step]:
    """:func:`~encore.reranking.steps.chain` with the exposure cap after the ordering steps and
    before the floor: the global cap (:class:`ExposureCap`, over the batch given: every user) or,
    with ``capped`` keys, their removal (:class:`RemoveKeys`: the service, one user)."""
    steps = chain(settings, blocked=blocked, rejected=rejected, n_items=n_items)
    floor = next(i for i, step in enumerate(steps) if isinstance(step, ExposureFloor))
    cap: Step = (ExposureCap(settings.exposure_cap, settings.exposure_k) if capped is None
                 else RemoveKeys(np.asarray(capped, dtype=np.int64), n_items))
    return [*steps[:floor], cap, *steps[floor:]]


def split_at_cap(steps: Sequence[Step]) -> tuple[list[Step], list[Step]]:
    """The steps before the cap (per user: run batch by batch) and from it on (across users)."""
    at = next((i for i, step in enumerate(steps) if isinstance(step, ExposureCap | RemoveKeys)), len(steps))
    return list(steps[:at]), list(steps[at:])


def with_ranked_content(lists: Lists, items: np.ndarray, scores: np.ndarray, ranks: np.ndarray | None,
                        settings: Settings) -> Lists:
    """:func:`~encore.reranking.steps.with_content_candidates`, then, with ``content_max_rank`` r
    > 0, every new item the content generator ranks at ``rank <= r`` (``ranks`` (n, c), from 1,
    among all its items) placed at that rank: just above the ranker candidate there (its
    relevance + 1e-9; below the row's last candidate: that one's relevance - 1e-9), so the list
    shows it where the generator's own list does. With ``content_min_rank`` p > 1 the j-th placed
    item of a row (from 0, in rank order) lands at ``max(rank, p + j)``: the ranker's first p - 1
    stay on top. Rows keep their ranker candidates' order."""
    r = settings.content_max_rank
    width = lists.items.shape[1]
    items = np.asarray(items, dtype=np.int64)
    if r <= 0 or ranks is None or items.shape[1] == 0:
        return with_content_candidates(lists, items, scores, settings.content_weight)
    ranks = np.asarray(ranks, dtype=np.int64)
    # A new item the generators' merged pool already gave the ranker sits where the ranker put it
    # (low: no listens); one the content generator ranks within r leaves that place for its rank.
    moved = ((lists.items[:, :, None] == np.where((ranks >= 1) & (ranks <= r), items, -2)[:, None, :]).any(axis=2)
             & (lists.items >= 0))
    lists = Lists(users=lists.users, items=np.where(moved, -1, lists.items),
                  relevance=np.where(moved, EXCLUDED, lists.relevance))
    out = with_content_candidates(lists, items, scores, settings.content_weight)
    ranked = np.sort(np.where(lists.items >= 0, lists.relevance, -np.inf), axis=1)[:, ::-1]  # best first
    n_valid = (lists.items >= 0).sum(axis=1)
    content = out.items[:, width:]
    use = (content >= 0) & (ranks >= 1) & (ranks <= r) & (n_valid[:, None] > 0)
    # The j-th placed new item of a row (rank order) goes above ranker candidate max(rank, p + j)
    # - 1 - j: the j placed before it already sit above, so it lands exactly there. Equal
    # relevances keep the column (rank) order in the stable sorts that follow.
    before = np.cumsum(use, axis=1) - use
    at = np.clip(np.maximum(ranks - 1 - before, settings.content_min_rank - 1), 0, None)
    above = at < n_valid[:, None]
    base = np.take_along_axis(ranked, np.minimum(at, width - 1), axis=1)
    last = np.take_along_axis(ranked, np.maximum(n_valid - 1, 0)[:, None], axis=1)
    placed = np.where(above, base + 1e-9, last - 1e-9)
    relevance = out.relevance.copy()
    relevance[:, width:] = np.where(use, placed, relevance[:, width:])
    return replace(out, relevance=relevance)
