"""The re-ranking steps over a batch of users' candidate lists, vectorised across users.

A batch is :class:`Lists`: per user (row) the candidate items (``-1`` padded) and their
relevance. Every step is a :class:`Step`: it takes a batch and returns one (reordered, or with
items removed), so a chain is any sequence of steps, a user's own step included (the
extension point, as RecTools' re-rankers). The built-in chain (:func:`chain`) is:

1. :class:`Exclude` -- the global block list and each user's rejected items never appear;
2. :class:`Freshness` -- ``relevance += boost * 2^(-age / half_life)``;
3. :class:`PopularityPenalty` -- ``relevance -= penalty * popularity``, the popularity being
   ``log(1 + listeners) / log(1 + most listeners)`` in [0, 1] (0 for an item nobody listened
   to): it spreads the lists over the catalogue (coverage) where MMR only spreads each list;
4. :class:`Diversify` -- greedy MMR, ``lambda * relevance - (1 - lambda) * max cosine to the
   items already chosen``, optionally with at most ``cap`` items per attribute (a capped
   item is taken only when no uncapped one is left: where the candidates do not allow it);
5. :class:`ExposureFloor` -- at least ``m`` of the top ``k`` are new items (younger than
   ``new_days``, or never listened to), where the candidates allow it: the lowest-placed
   older items give their places to the best-placed new items from below ``k``.

Relevance starts as the ranker's score min-max scaled per user to [0, 1]; candidates that
only content proposes (new items, see :func:`with_content_candidates`) sit below every ranker
candidate, at ``[-1, -0.5]`` in the order of their content score, so only the boost, the
penalty, MMR or the floor lift them -- or, with ``content_weight`` w > 0, they compete with the
ranker's candidates at ``w * `` their content score scaled per user to [0, 1]. Each step is off
at its neutral setting (boost 0, penalty 0, lambda 1 and no cap, m 0, nothing blocked, weight 0).
Only numpy here: the serving process imports this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:  # the config model imports nothing of this module: editing it re-runs rerank alone
    from encore.reranking.config import CoverageCost, RerankConfig

EXCLUDED = -np.inf
"""Relevance of a removed candidate (its item is set to -1)."""


@dataclass(frozen=True)
class ItemSide:
    """What the steps know of every item, by item index.

    ``age_days``: days since release or first listen at the reference time (``nan`` unknown;
    0 for an item nobody has listened to yet); ``embeddings``: ``(n_items, d)`` L2-normalised
    vectors (zero rows: unknown) or None; ``attribute``: an int per item (e.g. its top tag;
    -1 none) or None; ``popularity``: ``(n_items,)`` in [0, 1] (:func:`popularity`) or None.
    """

    age_days: np.ndarray
    embeddings: np.ndarray | None = None
    attribute: np.ndarray | None = None
    popularity: np.ndarray | None = None

    def is_new(self, items: np.ndarray, new_days: float) -> np.ndarray:
        ages = np.where(items >= 0, self.age_days[np.maximum(items, 0)], np.nan)
        return np.nan_to_num(ages, nan=np.inf) < new_days


@dataclass(frozen=True)
class Settings:
    """One setting of every step (a point of the trade-off grid); plain values, so the serving
    bundle stores it as JSON. The neutral values switch a step off."""

    top_k: int = 50
    mmr_lambda: float = 1.0
    freshness_boost: float = 0.0
    freshness_half_life_days: float = 30.0
    cap_per_attribute: int | None = None
    exposure_m: int = 0
    exposure_k: int = 10
    new_days: float = 30.0
    popularity_penalty: float = 0.0
    content_weight: float = 0.0
    exposure_cap: float = 1.0
    """Share of the users' top ``exposure_k`` lists an item may appear in (1: no cap;
    :class:`encore.reranking.spread.ExposureCap`)."""
    content_max_rank: int = 0
    """New items the content generator ranks at most this high are placed at that rank (0: off;
    :func:`encore.reranking.spread.with_ranked_content`)."""
    content_min_rank: int = 1
    """The first place a placed new item may take (1: its content rank)."""
    coverage_slots: int = 0
    """Places at the bottom of the top ``exposure_k`` the coverage fill may give to items in nobody's
    top ``exposure_k`` (0: off; :class:`encore.reranking.spread.CoverageFill`)."""
    coverage_copies: int = 1
    """In how many top ``exposure_k`` lists the coverage fill puts an item (where the lists allow it):
    more than one where not every list is seen."""
    coverage_active_days: float | None = None
    """The coverage fill counts and fills only the lists of users whose last event is at most this
    many days old (those likely to see their lists); None: every user's."""
    coverage_active_first: bool = False
    """With ``coverage_active_days``: those users' lists are filled first (only theirs count), then
    every other list with the items still in nobody's top ``exposure_k``: a priority, not a filter."""
    coverage_cost: CoverageCost = "relevance"
    """What the coverage fill weighs a given-away place by: ``relevance`` (scaled per user) or
    ``chance``, the ranker's probability of a hit (:attr:`Lists.chance`), one scale for every user."""
    coverage_max_cost: float | None = None
    """The most one place the fill gives away may cost, in ``coverage_cost``'s units (the item at
    the place minus the one promoted into it); None: no limit (``coverage_slots`` alone bounds it)."""


def settings_grid(own: RerankConfig, top_k: int) -> list[Settings]:
    """Every setting of ``components.rerank``'s trade-off grid, the neutral one first when it is in
    the grid (here, not on the config model: every component's reuse key holds the config's code)."""
    shared = {"top_k": top_k, "freshness_half_life_days": own.freshness_half_life_days,
              "cap_per_attribute": own.cap_per_attribute, "exposure_k": own.exposure_k, "new_days": own.new_days}
    points = itertools.product(sorted(set(own.lambdas), reverse=True), sorted(set(own.freshness_boosts)),
                               sorted(set(own.popularity_penalties)), sorted(set(own.content_weights)),
                               sorted(set(own.exposure_ms)), sorted(set(own.exposure_caps), reverse=True),
                               sorted(set(own.content_max_ranks)), sorted(set(own.content_min_ranks)),
                               sorted(set(own.coverage_slots)), sorted(set(own.coverage_copies)),
                               sorted(set(own.coverage_active_days), key=lambda days: (days is not None, days)),
                               sorted(set(own.coverage_active_first)), sorted(set(own.coverage_costs), reverse=True),
                               sorted(set(own.coverage_max_costs), key=lambda cost: (cost is not None, cost)))
    grid: dict[Settings, None] = {}  # in order, each setting once
    no_content = own.content_from is None or own.content_candidates == 0
    for lam, boost, penalty, weight, m, cap, rank, first, slots, copies, active, active_first, cost, most in points:
        if active_first and active is None:
            continue  # without an activity limit there is nobody to fill first: the plain fill's setting
        # Values a setting cannot act on take the neutral one, so the grid holds it once and no
        # per-user pass runs twice for the same lists: MMR without vectors, new items' weight and
        # rank without new items, the first place of a rank placement that is off.
        lam = 1.0 if own.embeddings_from is None else lam
        weight, rank = (0.0, 0) if no_content else (weight, rank)
        first = 1 if rank == 0 else first
        if slots == 0:
            # Without a fill its own settings change nothing: one unfilled setting stands for them
            # all, whatever copies, activity limits, costs and limits the grid lists.
            copies, active, active_first, cost, most = 1, None, False, "relevance", None
        grid[Settings(mmr_lambda=lam, freshness_boost=boost, popularity_penalty=penalty, content_weight=weight,
                      exposure_m=m, exposure_cap=cap, content_max_rank=rank, content_min_rank=first,
                      coverage_slots=slots, coverage_copies=copies, coverage_active_days=active,
                      coverage_active_first=active_first, coverage_cost=cost, coverage_max_cost=most, **shared)] = None
    return list(grid)


@dataclass(frozen=True)
class Lists:
    """A batch: ``users`` (n,), ``items`` (n, width) with -1 padding, ``relevance`` (n, width) and,
    optionally, ``chance`` (n, width): the ranker's probability that the cell's item is a hit
    (Logloss), nan where the ranker did not score it (a fallback list, a completion, a content
    candidate). The steps reorder it with the items and never change it: what the ranker believes
    of an item does not depend on where a step puts it."""

    users: np.ndarray
    items: np.ndarray
    relevance: np.ndarray
    chance: np.ndarray | None = None

    def take(self, order: np.ndarray) -> Lists:
        """Rows reordered column-wise by ``order`` (n, width') of column indices."""
        return replace(self, items=np.take_along_axis(self.items, order, 1),
                       relevance=np.take_along_axis(self.relevance, order, 1),
                       chance=None if self.chance is None else np.take_along_axis(self.chance, order, 1))

    def with_cells(self, items: np.ndarray, relevance: np.ndarray, chance: np.ndarray | None) -> Lists:
        """The same users with new cells (``chance`` kept only where this batch has one)."""
        return Lists(users=self.users, items=items, relevance=relevance,
                     chance=None if self.chance is None else chance)


class Step(Protocol):
    """A re-ranking step: a batch in, a batch out (same users, same or fewer valid items)."""

    def __call__(self, lists: Lists, side: ItemSide) -> Lists: ...


def scaled(items: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Scores min-max scaled per row to [0, 1] over the valid items with a score (a constant row
    gives 1). A valid item without one (nan: the ranker's completion from popular items, an item
    the service's blend put in) takes the relevance of the nearest scored item above it, 1 where
    none is: it keeps the place its list gave it, and the scored items keep their scale."""
    valid = items >= 0
    scored = valid & np.isfinite(scores)
    low = np.where(scored, scores, np.inf).min(axis=1, keepdims=True)
    high = np.where(scored, scores, -np.inf).max(axis=1, keepdims=True)
    spread = high > low
    out = np.where(spread, (np.where(scored, scores, 0.0) - np.where(spread, low, 0.0))
                   / np.where(spread, high - low, 1.0), 1.0)
    above = np.maximum.accumulate(np.where(scored, np.arange(items.shape[1]), -1), axis=1)
    out = np.where(above >= 0, np.take_along_axis(out, np.maximum(above, 0), axis=1), 1.0)
    return np.where(valid, out, EXCLUDED)


def lists_from_scores(users: np.ndarray, items: np.ndarray, scores: np.ndarray,
                      chance: np.ndarray | None = None) -> Lists:
    """The ranker's lists as a batch: relevance = the scores scaled per user (:func:`scaled`);
    ``chance`` (n, width; nan: unknown) as :attr:`Lists.chance`."""
    items = np.asarray(items, dtype=np.int64)
    return Lists(users=np.asarray(users, dtype=np.int64), items=items,
                 relevance=scaled(items, np.asarray(scores, dtype=np.float64)),
                 chance=None if chance is None else np.where(items >= 0, np.asarray(chance, dtype=np.float64), np.nan))


def popularity(listeners: np.ndarray) -> np.ndarray:
    """``log(1 + listeners) / log(1 + max listeners)`` per item, in [0, 1] (all 0 when nobody
    listened): the log keeps the long tail apart, which a linear share would squash to 0."""
    logs = np.log1p(np.asarray(listeners, dtype=np.float64))
    top = logs.max(initial=0.0)
    return logs / top if top > 0 else np.zeros_like(logs)


def with_content_candidates(lists: Lists, items: np.ndarray, scores: np.ndarray, weight: float = 0.0) -> Lists:
    """``lists`` with content-only candidates appended per user (``items``/``scores`` (n, c),
    -1 padded). With ``weight`` 0 at relevance ``[-1, -0.5]`` by content score: below every ranker
    candidate; with ``weight`` w > 0 at ``w * `` the content score scaled per user to [0, 1], on
    the ranker candidates' [0, 1] scale: the best new item ties a ranker candidate of relevance w.
    An item already in a user's list is not added again."""
    items = np.asarray(items, dtype=np.int64)
    if items.shape[1] == 0:
        return lists
    twice = (items[:, :, None] == lists.items[:, None, :]).any(axis=2) & (items >= 0)
    items = np.where(twice, -1, items)
    content = scaled(items, np.asarray(scores, dtype=np.float64))
    relevance = np.where(items >= 0, weight * content if weight > 0 else content * 0.5 - 1.0, EXCLUDED)
    unknown = None if lists.chance is None else np.concatenate([lists.chance, np.full(items.shape, np.nan)], axis=1)
    return lists.with_cells(np.concatenate([lists.items, items], axis=1),
                            np.concatenate([lists.relevance, relevance], axis=1), unknown)


@dataclass(frozen=True)
class Exclude:
    """Remove ``blocked`` items (global) and each user's ``rejected`` items: ``rejected`` is a
    sorted array of ``user * n_items + item`` keys (:func:`rejection_keys`)."""

    blocked: np.ndarray
    rejected: np.ndarray
    n_items: int

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        keys = lists.users[:, None] * self.n_items + lists.items
        gone = np.isin(lists.items, self.blocked) | np.isin(keys, self.rejected)
        gone &= lists.items >= 0
        return replace(lists, items=np.where(gone, -1, lists.items),
                       relevance=np.where(gone, EXCLUDED, lists.relevance))


def rejection_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """Sorted unique ``user * n_items + item`` keys of (user, item) rejections."""
    return np.unique(np.asarray(users, dtype=np.int64) * n_items + np.asarray(items, dtype=np.int64))


@dataclass(frozen=True)
class Freshness:
    """``relevance += boost * 2^(-age / half_life)``; unknown ages get nothing."""

    boost: float
    half_life_days: float

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if self.boost == 0:
            return lists
        ages = np.where(lists.items >= 0, side.age_days[np.maximum(lists.items, 0)], np.nan)
        bonus = np.nan_to_num(self.boost * np.exp2(-np.maximum(ages, 0) / self.half_life_days), nan=0.0)
        return replace(lists, relevance=np.where(lists.items >= 0, lists.relevance + bonus, EXCLUDED))


@dataclass(frozen=True)
class PopularityPenalty:
    """``relevance -= penalty * popularity`` (:attr:`ItemSide.popularity`); off at 0 or without
    popularity. Per user and stateless (unlike a cap on an item's exposure across users), so the
    service applies it to one request exactly as the component to a batch."""

    penalty: float

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        if self.penalty == 0 or side.popularity is None:
            return lists
        pop = side.popularity[np.maximum(lists.items, 0)]
        return replace(lists, relevance=np.where(lists.items >= 0, lists.relevance - self.penalty * pop, EXCLUDED))


@dataclass(frozen=True)
class Diversify:
    """Greedy MMR order of every row with an optional per-attribute cap; without either, a
    stable sort by relevance. Removed candidates go last."""

    mmr_lambda: float = 1.0
    cap: int | None = None

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        n, width = lists.items.shape
        valid = lists.items >= 0
        use_mmr = self.mmr_lambda < 1.0 and side.embeddings is not None
        use_cap = self.cap is not None and side.attribute is not None
        if not (use_mmr or use_cap):
            return lists.take(np.argsort(-lists.relevance, axis=1, kind="stable"))
        safe = np.maximum(lists.items, 0)
        if use_mmr:
            vectors = np.where(valid[:, :, None], side.embeddings[safe], 0.0)
            similarity = vectors @ vectors.transpose(0, 2, 1)  # batched BLAS: (users, width, width) cosines
        attribute = np.where(valid, side.attribute[safe], -1) if use_cap else None
        rows = np.arange(n)
        taken = ~valid  # removed candidates are never chosen by the loop; they go last
        closest = np.zeros((n, width))
        counts = np.zeros((n, width), dtype=np.int64)  # items already chosen with each candidate's attribute
        order = np.zeros((n, width), dtype=np.int64)
        lam = self.mmr_lambda if use_mmr else 1.0
        for step in range(width):
            value = lam * lists.relevance - (1.0 - lam) * closest
            if use_cap:
                # A capped candidate ranks below every uncapped one, never out of the list.
                value = np.where((counts >= self.cap) & (attribute >= 0), value - 1e9, value)
            value = np.where(taken, -np.inf, value)
            pick = np.argmax(value, axis=1)
            # Rows with nothing left pick a removed column: the first not yet placed.
            exhausted = taken[rows, pick]
            if exhausted.any():
                pick = np.where(exhausted, np.argmax(~_placed(order, step, width), axis=1), pick)
            order[:, step] = pick
            taken[rows, pick] = True
            if use_mmr:
                closest = np.maximum(closest, np.where(valid[rows, pick][:, None], similarity[rows, pick], 0.0))
            if use_cap:
                chosen = attribute[rows, pick]
                counts += (attribute == chosen[:, None]) & (chosen[:, None] >= 0)
        return lists.take(order)


def _placed(order: np.ndarray, step: int, width: int) -> np.ndarray:
    placed = np.zeros((order.shape[0], width), dtype=bool)
    np.put_along_axis(placed, order[:, :step], True, axis=1)
    return placed


@dataclass(frozen=True)
class ExposureFloor:
    """At least ``m`` new items in the top ``k`` of every (ordered) row, where it has them: the
    best-placed new items from below ``k`` take, top to bottom, the places of the lowest-placed
    older items in the top ``k``; everything else keeps its order."""

    m: int
    k: int
    new_days: float

    def __call__(self, lists: Lists, side: ItemSide) -> Lists:
        width = lists.items.shape[1]
        k = min(self.k, width)
        if self.m <= 0 or k == 0:
            return lists
        new = side.is_new(lists.items, self.new_days)
        top_new = new[:, :k].sum(axis=1)
        below = np.cumsum(new[:, k:], axis=1)  # rank (from 1) of each new item below k
        need = np.minimum(np.maximum(min(self.m, k) - top_new, 0), below[:, -1] if width > k else 0)
        # Older items in the top k, counted from the bottom: those with count <= need give way.
        older = ~new[:, :k]
        from_bottom = np.cumsum(older[:, ::-1], axis=1)[:, ::-1]
        gives_way = older & (from_bottom <= need[:, None])
        return promote(lists, gives_way, new[:, k:] & (below <= need[:, None]), k)


def promote(lists: Lists, gives_way: np.ndarray, promoted: np.ndarray, k: int) -> Lists:
    """Move the ``promoted`` cells below ``k`` (``(n, width - k)``, as many per row as
    ``gives_way`` has) into the places of the ``gives_way`` cells of the top ``k`` (``(n, k)``),
    top to bottom in their order; the displaced items go right after the top ``k``, in their
    order; everything else keeps its place."""
    n, width = lists.items.shape
    # Stable: sort keys put each promoted item at the place of the gives-way item with the same
    # rank (top to bottom), and the displaced items right after the top k, in their order.
    position = np.arange(width, dtype=np.float64)[None, :].repeat(n, axis=0)
    gives_rank = np.cumsum(gives_way, axis=1)  # 1.. top to bottom
    slot_of = np.sort(np.where(gives_way, position[:, :k], np.inf), axis=1)  # the gives-way places, top to bottom
    promoted_rank = np.where(promoted, np.cumsum(promoted, axis=1), 0)
    key = position.copy()
    key[:, :k] = np.where(gives_way, k - 0.5 + gives_rank * 1e-6, key[:, :k])
    target = np.take_along_axis(slot_of, np.minimum(np.maximum(promoted_rank - 1, 0), k - 1), axis=1)
    key[:, k:] = np.where(promoted, target, key[:, k:])
    return lists.take(np.argsort(key, axis=1, kind="stable"))


def chain(settings: Settings, *, blocked: np.ndarray, rejected: np.ndarray, n_items: int) -> list[Step]:
    """The built-in steps for one setting, in order."""
    return [Exclude(np.asarray(blocked, dtype=np.int64), np.asarray(rejected, dtype=np.int64), n_items),
            Freshness(settings.freshness_boost, settings.freshness_half_life_days),
            PopularityPenalty(settings.popularity_penalty),
            Diversify(settings.mmr_lambda, settings.cap_per_attribute),
            ExposureFloor(settings.exposure_m, settings.exposure_k, settings.new_days)]


BLOCK_ROWS = 16384
"""Rows a step across every user sorts at a time where each row's work is its own (the fill's
promotion, the cut to ``top_k``): their sort keys and orders are several times the lists' size."""


def rerank(lists: Lists, side: ItemSide, steps: Sequence[Step], top_k: int,
           block_rows: int = BLOCK_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """Run ``steps`` over ``lists``; the first ``top_k`` items per row (-1 padded) and their
    final relevance, cut ``block_rows`` rows at a time."""
    for step in steps:
        lists = step(lists, side)
    n = lists.items.shape[0]
    items, relevance = np.full((n, top_k), -1, dtype=lists.items.dtype), np.full((n, top_k), np.nan)
    for start in range(0, n, block_rows):
        rows = slice(start, start + block_rows)
        kept = lists.items[rows, :top_k]
        # Removed items sort last in every step but the floor's, which only swaps valid ones: compact.
        order = np.argsort(kept < 0, axis=1, kind="stable")
        items[rows, :kept.shape[1]] = np.take_along_axis(kept, order, 1)
        relevance[rows, :kept.shape[1]] = np.take_along_axis(
            np.where(kept >= 0, lists.relevance[rows, :top_k], np.nan), order, 1)
    return items, relevance
