"""Steps that spread the lists over the catalogue and place new items, across users.

Two steps look at every user at once; the service reproduces each for one user from the
component's record of what it did:

- :class:`ExposureCap`: a global cap on how many users' top ``k`` lists an item may appear in
  (a share of the users), filled position by position: in round ``r`` every user takes the best
  remaining candidate of its (already ordered) list whose item still has room; where more users
  want an item than it has room for, those who lose most by a refusal get it (ties: the lower
  user index) and the others move on to their next candidate. Each row keeps its order, less the
  items it was refused, so a list is its ranked candidates in order with its refused items
  removed (:class:`RemoveKeys`). The cap binds only over a deep enough list: a user whose first
  ``k`` candidates are all full takes from below them, so the component re-ranks the ranker's
  whole ``top_k`` (50) list.
- :class:`CoverageFill`: the last places of the top ``k`` given to items in nobody's top ``k``
  (one list per item, or ``copies``), where that costs least (:func:`fill_cells`); a list is its
  ordered candidates with the promoted ones moved up (:class:`PromoteKeys`).

:func:`with_ranked_content` places new items (content-only candidates) at the rank the content
generator gives them among all its items, as that generator's own list would show them.

Only numpy here (the serving process imports this module); kept apart from
:mod:`encore.reranking.steps`, which the config model imports (every component's fingerprint).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from encore.reranking.steps import (
    BLOCK_ROWS,
    EXCLUDED,
    ExposureFloor,
    ItemSide,
    Lists,
    Settings,
    Step,
    chain,
    promote,
    with_content_candidates,
)

if TYPE_CHECKING:
    from encore.reranking.config import CoverageCost


def _compact(lists: Lists, gone: np.ndarray) -> Lists:
    """``lists`` with the ``gone`` (n, width) cells removed, every row's order kept (holes last)."""
    items = np.where(gone, -1, lists.items)
    relevance = np.where(gone, EXCLUDED, lists.relevance)
    return lists.with_cells(items, relevance, lists.chance).take(np.argsort(items < 0, axis=1, kind="stable"))


def _rank_within(keys: np.ndarray) -> np.ndarray:
    """Each element's place (from 0) within its run of equal ``keys`` (sorted)."""
    index = np.arange(len(keys))
    first = np.r_[True, keys[1:] != keys[:-1]] if len(keys) else np.zeros(0, dtype=bool)
    return index - np.maximum.accumulate(np.where(first, index, 0))


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
            accept = _rank_within(item) < cap - counts[item]
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


def movable_places(lists: Lists, side: ItemSide, k: int, slots: int, new_days: float | None) -> np.ndarray:
    """``(n, k)``: the top ``k`` places the coverage fill may give away: the last ``slots`` valid
    ones, less the new items' (younger than ``new_days``) when the exposure floor is on
    (``new_days`` not None): the fill runs after the floor and never undoes it."""
    k = min(k, lists.items.shape[1])
    places = (lists.items[:, :k] >= 0) & (np.arange(k) >= k - slots)
    return places if new_days is None else places & ~side.is_new(lists.items[:, :k], new_days)


def fill_cells(lists: Lists, slots: int, k: int, movable: np.ndarray | None = None,
               active: np.ndarray | None = None, copies: int = 1, counted: np.ndarray | None = None,
               cost: np.ndarray | None = None, max_cost: float | None = None) -> np.ndarray:
    """The ``(n, width)`` cells below ``k`` the coverage fill promotes (see :class:`CoverageFill`).

    Over every row at once, up to ``slots`` rounds, each over the rows' next ``movable`` place
    (``(n, k)``; None: every valid one) from the bottom of the top ``k``, of the ``active`` rows
    (``(n,)``; None: every row; only their top ``k`` count as covering an item, or those of the
    ``counted`` rows where given): a row may give
    its item at that place away when the item stays in ``copies`` top ``k`` lists (at most
    ``count - copies`` of an item's holders, those who rate it lowest); such a row takes its
    best-placed candidate below ``k`` that is in fewer than ``copies`` top ``k`` lists. Where more
    rows want an item than it lacks lists, it goes to those that lose least (their relevance at
    the place minus the item's; ties to the lower row) and the others try their next candidate.
    A row that may not give its item away, or has no candidate left, stops. ``cost`` (n, width)
    replaces the relevance in both comparisons (the item's holders, the rows' losses): the
    ranker's hit probabilities (:attr:`Lists.chance`); an item the ranker did not score (nan: a
    fallback list's, a completion, a content candidate) counts as probability 0 -- the places the
    fill may give away stay those of :func:`movable_places`, which the service knows. With
    ``max_cost`` a row takes only a candidate that costs at most that much (the item at the place
    minus the candidate, in relevance or ``cost``) and passes over the others: the fill spends
    places only where they are cheap, in any list. One numpy pass per round and candidate depth;
    no loop over users.
    """
    n, width = lists.items.shape
    cells = np.zeros((n, width), dtype=bool)
    k = min(k, width)
    if slots <= 0 or n == 0 or width <= k:
        return cells
    items = lists.items
    active = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
    top = items[active if counted is None else np.asarray(counted, dtype=bool), :k]
    movable = (items[:, :k] >= 0 if movable is None else movable) & active[:, None]
    def value(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
        """What the cells are worth: their relevance, or their ``cost`` with nan (unscored) as 0,
        gathered cell by cell rather than copied whole (an (n, width) array less at a time)."""
        if cost is None:
            return lists.relevance[rows, columns]
        return np.nan_to_num(cost[rows, columns], nan=0.0)

    counts = np.bincount(top[top >= 0], minlength=int(items.max(initial=-1)) + 1)
    # Each row's movable places, bottom first (-1: none left).
    places = np.sort(np.where(movable, np.arange(k), -1), axis=1)[:, ::-1]
    pointer = np.full(n, k, dtype=np.int64)  # the next candidate below k each row considers
    active = active.copy()  # rows still filling
    for round_ in range(min(slots, k)):
        place = places[:, round_]
        holders = np.flatnonzero(active & (place >= 0))
        active[place < 0] = False
        slot = items[holders, place[holders]]
        order = np.lexsort((holders, value(holders, place[holders]), slot))
        holders, slot = holders[order], slot[order]
        may = _rank_within(slot) < counts[slot] - copies
        active[holders[~may]] = False
        pending = holders[may]
        while pending.size:
            item = items[pending, pointer[pending]]
            loss = value(pending, place[pending]) - value(pending, pointer[pending])
            free = (item >= 0) & (counts[np.maximum(item, 0)] < copies)
            if max_cost is not None:
                free &= loss <= max_cost
            users, item, loss = pending[free], item[free], loss[free]
            order = np.lexsort((users, loss, item))  # by item, the cheapest row first
            users, item = users[order], item[order]
            win = _rank_within(item) < copies - counts[item]
            winners = users[win]
            cells[winners, pointer[winners]] = True
            np.add.at(counts, item[win], 1)
            np.subtract.at(counts, items[winners, place[winners]], 1)
            pointer[pending] += 1
            # A row with no candidate left stops, a winner that took its last one too.
            active[pending[pointer[pending] >= width]] = False
            rest = pending[~np.isin(pending, winners)]
            pending = rest[pointer[rest] < width]
    return cells


def promote_cells(lists: Lists, cells: np.ndarray, k: int, movable: np.ndarray,
                  block_rows: int = BLOCK_ROWS) -> Lists:
    """The valid ``cells`` below ``k`` moved, in their order, into each row's lowest ``movable``
    places of the top ``k`` (no more than it has), the items there going right after the top ``k``.
    ``block_rows`` rows at a time, into new whole arrays."""
    n, width = lists.items.shape
    k = min(k, width)
    items, relevance = np.empty_like(lists.items), np.empty_like(lists.relevance)
    chance = None if lists.chance is None else np.empty_like(lists.chance)
    for start in range(0, n, block_rows):
        rows = slice(start, start + block_rows)
        part = Lists(users=lists.users[rows], items=lists.items[rows], relevance=lists.relevance[rows],
                     chance=None if lists.chance is None else lists.chance[rows])
        below = cells[rows, k:] & (part.items[:, k:] >= 0)
        count = np.minimum(below.sum(axis=1), movable[rows].sum(axis=1))[:, None]
        below &= np.cumsum(below, axis=1) <= count
        gives_way = movable[rows] & (np.cumsum(movable[rows, ::-1], axis=1)[:, ::-1] <= count)
        moved = promote(part, gives_way, below, k)
        items[rows], relevance[rows] = moved.items, moved.relevance
        if chance is not None:
            chance[rows] = moved.chance
    return Lists(users=lists.users, items=items, relevance=relevance, chance=chance)


@dataclass(frozen=True)
class CoverageFill:
    """Up to ``slots`` of the last places of every top ``k`` given to items in nobody's top ``k``,
    over a batch of **all** users (:func:`fill_cells`); off at 0. Catalogue coverage counts an
    item once, so one list showing it is enough: the fill buys coverage where it costs least
    (the bottom places, the row that loses least), where a popularity penalty or a cap moves
    every list. With ``new_days`` (the exposure floor on), new items keep their places
    (:func:`movable_places`); with ``active_users``, only their lists count and are filled."""

    slots: int
    k: int
    new_days: float | None = None
    active_users: np.ndarray | None = None
    """The users whose lists count and are filled (sorted); None: every user's."""
    copies: int = 1
    """In how many top ``k`` lists the fill puts an item (where the lists allow it)."""
    active_first: bool = False
    """The ``active_users``' lists are filled first, then every other list with the items still in
    nobody's top ``k`` (every list counts then): the active users only go first."""
    cost: CoverageCost = "relevance"
    """What a given-away place is weighed by: the per-user scaled ``relevance``, or ``chance``, the
    ranker's hit probability (:attr:`Lists.chance`, which the batch must carry): one scale for every
    user, so the fill gives places away where the ranker expects fewest hits lost."""
    max_cost: float | None = None
    """The most one given-away place may cost (:func:`fill_cells`); None: no limit."""

    def cells(self, lists: Lists, side: ItemSide) -> np.ndarray:
        """The ``(n, width)`` cells the fill promotes (:func:`fill_cells`): one pass, or with
        ``active_first`` two over disjoint rows, the second over the lists the first left."""
        return self._cells(lists, side, self.movable(lists, side))

    def movable(self, lists: Lists, side: ItemSide) -> np.ndarray:
        """The places the fill may give away (:func:`movable_places`)."""
        return movable_places(lists, side, self.k, self.slots, self.new_days)

    def _cost(self, lists: Lists) -> np.ndarray | None:
        if self.cost == "relevance":
            return None
        if lists.chance is None:
            raise ValueError("the coverage fill weighs places by chance, but the lists carry no ranker probabilities")
        return lists.chance

    def _cells(self, lists: Lists, side: ItemSide, movable: np.ndarray) -> np.ndarray:
        active = None if self.active_users is None else np.isin(lists.users, self.active_users)
        cells = fill_cells(lists, self.slots, self.k, movable, active, self.copies, cost=self._cost(lists),
                           max_cost=self.max_cost)
        if not self.active_first or active is None:
            return cells
        # The other rows, counting every list's top k as it stands after the first pass; each row
        # is filled in one pass only, so the two passes' cells are those of the original rows.
        first = promote_cells(lists, cells, self.k, movable)
        rest = fill_cells(first, self.slots, self.k, self.movable(first, side), ~active, self.copies,
                          counted=np.ones(len(active), dtype=bool), cost=self._cost(first), max_cost=self.max_cost)
        return cells | rest

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if self.slots <= 0:
            return lists
        movable = self.movable(lists, side)
        return promote_cells(lists, self._cells(lists, side, movable), self.k, movable)


@dataclass(frozen=True)
class PromoteKeys:
    """Each row's ``user * n_items + item`` ``keys`` (sorted) found below ``k`` moved into the
    lowest movable places of its top ``k`` (:func:`movable_places`): the service's form of
    :class:`CoverageFill` (the cells the component's fill promoted)."""

    keys: np.ndarray
    n_items: int
    k: int
    slots: int
    new_days: float | None = None

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if not len(self.keys):
            return lists
        cells = np.isin(lists.users[:, None] * self.n_items + lists.items, self.keys) & (lists.items >= 0)
        return promote_cells(lists, cells, self.k, movable_places(lists, side, self.k, self.slots, self.new_days))


def _floor_days(settings: Settings) -> float | None:
    """The age below which the fill leaves an item in place: the floor's ``new_days`` when it is on."""
    return settings.new_days if settings.exposure_m > 0 else None


def full_chain(settings: Settings, *, blocked: np.ndarray, rejected: np.ndarray, n_items: int,
               capped: np.ndarray | None = None, promoted: np.ndarray | None = None,
               active_users: np.ndarray | None = None) -> list[Step]:
    """:func:`~encore.reranking.steps.chain` with the steps across users after the ordering steps:
    the global exposure cap before the floor and the coverage fill after it (:class:`ExposureCap`,
    :class:`CoverageFill`, over the batch given: every user) or, with ``capped`` and ``promoted``
    keys, their per-user forms (:class:`RemoveKeys`, :class:`PromoteKeys`: the service, one user).
    ``active_users``: the fill's (:attr:`Settings.coverage_active_days`; None: every user)."""
    steps = chain(settings, blocked=blocked, rejected=rejected, n_items=n_items)
    at = next(i for i, step in enumerate(steps) if isinstance(step, ExposureFloor))
    floor, days, k = steps[at], _floor_days(settings), settings.exposure_k
    if capped is None:
        across = [ExposureCap(settings.exposure_cap, k), floor,
                  CoverageFill(settings.coverage_slots, k, days, active_users, settings.coverage_copies,
                               settings.coverage_active_first, settings.coverage_cost,
                               settings.coverage_max_cost)]
    else:
        keys = np.asarray(promoted if promoted is not None else [], dtype=np.int64)
        across = [RemoveKeys(np.asarray(capped, dtype=np.int64), n_items), floor,
                  PromoteKeys(keys, n_items, k, settings.coverage_slots, days)]
    return [*steps[:at], *across, *steps[at + 1:]]


def split_at_cap(steps: Sequence[Step]) -> tuple[list[Step], list[Step]]:
    """The steps before the cap (per user: run batch by batch) and from it on (across users)."""
    at = next((i for i, step in enumerate(steps) if isinstance(step, ExposureCap | RemoveKeys)), len(steps))
    return list(steps[:at]), list(steps[at:])


def served_keys(lists: Lists, side: ItemSide, settings: Settings, n_items: int,
                active_users: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """What the steps across users did to the batch ``lists`` (every user, before the cap), as the
    service's sorted ``user * n_items + item`` keys: the cells the cap refused and those the fill
    promoted (:class:`RemoveKeys` and :class:`PromoteKeys` reproduce them per user)."""
    none = np.zeros(0, dtype=np.int64)
    cap, floor, fill = split_at_cap(full_chain(settings, blocked=none, rejected=none, n_items=n_items,
                                               active_users=active_users))[1][:3]
    assert isinstance(cap, ExposureCap) and isinstance(fill, CoverageFill)  # full_chain's order: cap, floor, fill
    refused = cap_skips(lists, cap.share, cap.k)
    floored = floor(_compact(lists, refused), side)
    promoted = fill.cells(floored, side)
    return (np.sort(lists.users[np.nonzero(refused)[0]] * n_items + lists.items[refused]),
            np.sort(floored.users[np.nonzero(promoted)[0]] * n_items + floored.items[promoted]))


def with_ranked_content(lists: Lists, items: np.ndarray, scores: np.ndarray, ranks: np.ndarray | None,
                        settings: Settings) -> Lists:
    """:func:`~encore.reranking.steps.with_content_candidates`, then, with ``content_max_rank`` r
    > 0, every new item the content generator ranks at ``rank <= r`` (``ranks`` (n, c), from 1,
    among all its items) placed at that rank: just above the ranker candidate there (its
    relevance + 1e-9; below the row's last candidate: that one's relevance - 1e-9), so the list
    shows it where the generator's own list does. With ``content_min_rank`` p > 1 the j-th placed
    item of a row (from 0, in rank order) lands at ``max(rank, p + j)``: the ranker's first p - 1
    stay on top. Rows keep their ranker candidates' order. Give it the ranker's lists after the
    exclusions (the chain's first step): a blocked or rejected item then holds no place that a new
    item's rank counts."""
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
    lists = lists.with_cells(np.where(moved, -1, lists.items), np.where(moved, EXCLUDED, lists.relevance),
                             lists.chance)
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
