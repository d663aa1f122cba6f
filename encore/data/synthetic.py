"""Seeded, music-like synthetic data of any size (fully vectorised numpy).

The generative story, calibrated so that the pipeline's generators rank as on Last.fm 2K
(ALS ~ EASE ~ item-kNN well above popularity, tag content and friends in between; docs/data.md,
"Synthetic data"). Names in capitals are this module's constants, the rest
:class:`SyntheticConfig` fields.

* **Hierarchy**: ``n_clusters`` genres of uneven size (Dirichlet(2) shares) are split into
  ``S = round(n_items / scene_size)`` scenes (artist neighbourhoods; at least one per genre,
  sizes Dirichlet(4) around ``scene_size``, each with at least one artist); every artist
  belongs to one scene. Within a genre the scenes lie on a ring (neighbours = related scenes).
* **Popularity** is Zipf-like at both levels: a scene weighs ``1 / rank^(SCENE_EXPONENT a)``
  over a random ranking of the scenes, an artist ``1 / rank^a`` within its scene
  (``a = popularity_exponent``); the product, summed to 1, is the artist's popularity. At the
  defaults the top 1% of artists hold 26% (300k set) to 33% (1M set) of the interactions
  (Last.fm 2K: 32%).
* **Release and trend**: ``new_release_share`` of the artists are released at a uniform
  time in ``[start, end)``, the rest are back catalogue (always there). A drawn listen of a
  released artist at time ``t`` is kept with probability 0 before the release and
  ``TREND_FLOOR + (1 - TREND_FLOOR) 2^(-(t - release) / trend_half_life_days)`` after, so its
  listens crowd the months after release and recency-weighted popularity wins on a time split.
  The release times are the dataset's ``item_release`` (catalogue metadata: NaT for the back
  catalogue).
* **Users** have a log-normal(0, 1) activity (the share of the listens they draw), an active
  window (10-100% of ``start..end`` at a random place; listen times uniform within it), a
  loyalty ~ Beta with mean ``loyalty`` (concentration 12), a primary genre (by genre
  popularity) and ``1 + Poisson(user_scenes - 1)`` scenes plus one per ``scene_size``
  expected listens (heavy users range wider). The first is a home scene of the primary genre
  (by scene popularity); each other one is, with probability ``RING_SHARE``, a ring
  neighbour of home (offset ~ Normal(0, NEIGHBOURHOOD sqrt(#scenes)), rounded), with
  ``GENRE_FOCUS - RING_SHARE`` a scene of the primary genre by popularity, else any scene by
  popularity. A user's scenes get Exp(1) weights.
* **A listen** of a user is, with the user's loyalty, an artist of one of their scenes
  (scene by weight, artist by popularity within it); otherwise, half and half, an artist of
  their primary genre or of the whole catalogue by popularity (exploration, charts). Its
  time is uniform in the user's window; the trend may drop it (above).
* **Interactions**: every user listens at least once (retried until the trend keeps one);
  the rest are drawn per round as Multinomial(draws, activity) listens and deduplicated
  incrementally: each round draws only for the shortfall (scaled by the last round's yield)
  and keeps pairs not yet present (a sorted key array, merged, never rebuilt), a random
  subset if there are more than needed. Near full density the rounds give up below
  ``n_interactions``: the actual count is ``stats["n_interactions"]`` (the request
  ``stats["n_interactions_requested"]``). A pair's timestamp is the listen that created it.
* **Weights** are play counts: ``ceil(LogNormal(PLAYS_LOG_MEAN, PLAYS_LOG_SD))``, x2 for
  listens inside the user's scenes (median ~140, heavy-tailed like Last.fm 2K's 260).
* **Tags**: tag ``g`` (< ``n_clusters``; named after real genres) is genre ``g``'s; every
  scene has ``SCENE_TAGS`` = 3 tags from the others, the first a different one per scene
  while there are enough, the others Zipf-like (shared descriptors). An artist gets its
  genre tag with probability ``0.3 + 0.6 s`` and each of its scene's tags with ``0.3 + 0.65 s``
  (``s`` = 1 for a scene's most popular artist down to 0 for its least: little-known artists
  are tagged by few), at least its scene's first tag, and one Zipf-like noisy tag from all
  tags with 0.25: 1-5 tags, ``item_tags`` weights ``U(0.1, 1) (0.5 + s) / 1.5`` (like tagging
  counts). Tag content thus finds same-scene artists, the better-known first. About 10% of
  the (user, item) pairs carry 1-2 of the item's tags as the user's own tagging
  (``user_item_tags``, like Last.fm 2K).
* **Social**: ``Poisson(3)`` outgoing links per user; with ``SOCIAL_SAME`` = 0.8 to a random
  follower of one of the source's scenes (scene by the source's weights), else to anyone;
  made symmetric (both directions listed, like Last.fm 2K), no self-links.

:func:`item_structure` returns the hidden genre, scene, popularity and release of every
artist (for analysis and tests).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from encore.data.dataset import MusicDataset
from encore.data.parsing import SideTable, build_dataset

if TYPE_CHECKING:  # the config declares this loader (dataset_config imports it): types only here
    from encore.data.dataset_config import SyntheticConfig

log = logging.getLogger(__name__)

_GENRES = (
    "rock", "pop", "electronic", "indie", "hip-hop", "jazz", "metal", "alternative", "classical",
    "folk", "punk", "soul", "blues", "ambient", "techno", "house", "reggae", "country", "r&b",
    "post-rock", "shoegaze", "synthpop", "trip-hop", "death metal", "black metal", "grunge",
    "new wave", "dubstep", "drum and bass", "funk", "disco", "k-pop", "j-rock", "latin",
    "singer-songwriter", "experimental", "industrial", "emo", "hardcore", "progressive rock",
)

_SCENE_TAGS = 3
_MAX_ROUNDS = 20
_GENRE_FOCUS = 0.7      # share of a user's scenes inside their primary genre
_RING_SHARE = 0.4       # share of a user's other scenes near home on the genre's ring
_TREND_FLOOR = 0.2      # a released artist's long-run availability relative to its peak
_SOCIAL_SAME = 0.8      # share of friendship links to users sharing a scene
_SCENE_EXPONENT = 1.0   # scenes' Zipf exponent relative to popularity_exponent
_PLAYS_LOG_MEAN = 4.5   # play counts: ceil(log-normal) (x2 in-scene): median ~140 (Last.fm 2K: 260)
_PLAYS_LOG_SD = 1.3
_NEIGHBOURHOOD = 1.5    # sd (in scenes, x sqrt(scenes followed)) of a user's scenes around home


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like weights ``1/rank^exponent`` over a random ranking of ``n`` things (sum 1)."""
    weights = 1.0 / (rng.permutation(n) + 1.0) ** exponent
    return weights / weights.sum()


def _labels(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width)).astype(object)


def _nonempty_groups(n_members: int, n_groups: int, share: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Assign ``n_members`` things to ``n_groups`` groups drawn by ``share``, each group non-empty."""
    extra = rng.choice(n_groups, size=n_members - n_groups, p=share)
    return rng.permutation(np.r_[np.arange(n_groups), extra])


class _GroupSampler:
    """Draw members by weight within given groups, or over all members (inverse-CDF search).

    One ``searchsorted`` serves all groups: the keys ``group + within-group CDF`` increase.
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray, n_groups: int):
        self.order = np.argsort(group, kind="stable")
        sorted_group = group[self.order]
        w = weight[self.order].astype(np.float64)
        counts = np.bincount(group, minlength=n_groups)
        self.ends = np.cumsum(counts)
        self.starts = self.ends - counts
        totals = np.bincount(group, weights=weight, minlength=n_groups)
        self.nonempty = totals > 0
        cum = np.cumsum(w)
        before = np.repeat(cum[self.starts] - w[self.starts], counts)
        self.keys = sorted_group + (cum - before) / np.where(self.nonempty, totals, 1.0)[sorted_group]
        self.global_cdf = cum / cum[-1] if len(cum) and cum[-1] > 0 else cum

    def within(self, groups: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One member per entry of ``groups`` (groups must be non-empty)."""
        pos = np.searchsorted(self.keys, groups + rng.random(len(groups)), side="right")
        return self.order[np.clip(pos, self.starts[groups], self.ends[groups] - 1)]

    def overall(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` members by weight over all groups."""
        pos = np.searchsorted(self.global_cdf, rng.random(n), side="right")
        return self.order[np.minimum(pos, len(self.global_cdf) - 1)]


class _World:
    """Artists, scenes and users of one generated dataset; draws listens for any users."""

    def __init__(self, cfg: SyntheticConfig, rng: np.random.Generator):
        self.rng = rng
        n_users, n_items, n_genres = cfg.n_users, cfg.n_items, cfg.n_clusters
        n_scenes = int(np.clip(round(n_items / cfg.scene_size), n_genres, n_items))
        self.n_scenes = n_scenes
        a = cfg.popularity_exponent

        # Genres -> scenes -> artists; Zipf-like popularity at both levels.
        genre_share = rng.dirichlet(np.full(n_genres, 2.0))
        self.scene_genre = _nonempty_groups(n_scenes, n_genres, genre_share, rng)
        self.item_scene = _nonempty_groups(n_items, n_scenes, rng.dirichlet(np.full(n_scenes, 4.0)), rng)
        scene_pop = _zipf(n_scenes, _SCENE_EXPONENT * a, rng)
        by_scene = np.lexsort((rng.random(n_items), self.item_scene))
        scene_counts = np.bincount(self.item_scene, minlength=n_scenes)
        rank = np.empty(n_items, dtype=np.float64)
        rank[by_scene] = np.arange(n_items) - np.repeat(np.cumsum(scene_counts) - scene_counts, scene_counts)
        # 1 for a scene's most popular artist .. ~0 for its least (how well-tagged it is).
        self.standing = 1.0 - rank / np.maximum(scene_counts[self.item_scene] - 1, 1)
        within = 1.0 / (rank + 1.0) ** a
        within /= np.bincount(self.item_scene, weights=within, minlength=n_scenes)[self.item_scene]
        self.popularity = scene_pop[self.item_scene] * within
        self.item_genre = self.scene_genre[self.item_scene]
        self.scene_items = _GroupSampler(self.item_scene, self.popularity, n_scenes)
        self.genre_items = _GroupSampler(self.item_genre, self.popularity, n_genres)
        genre_scenes = _GroupSampler(self.scene_genre, scene_pop, n_genres)

        # Release times (fractions of start..end; back catalogue = -inf) and trend half-life.
        span_days = (pd.Timestamp(cfg.end) - pd.Timestamp(cfg.start)).days
        self.release = np.where(rng.random(n_items) < cfg.new_release_share, rng.random(n_items), -np.inf)
        self.half_life = cfg.trend_half_life_days / max(span_days, 1)

        # Users: activity, window, loyalty, primary genre, scenes (more for heavy users).
        activity = rng.lognormal(0.0, 1.0, size=n_users)
        self.activity = activity / activity.sum()
        self.window = rng.uniform(0.1, 1.0, size=n_users)
        self.window_start = rng.random(n_users) * (1.0 - self.window)
        concentration = 12.0
        self.loyalty = rng.beta(cfg.loyalty * concentration, (1.0 - cfg.loyalty) * concentration, size=n_users)
        self.primary = rng.choice(n_genres, size=n_users, p=np.bincount(self.scene_genre, scene_pop, n_genres))
        expected = self.activity * cfg.n_interactions
        n_own = 1 + rng.poisson(cfg.user_scenes - 1.0, size=n_users) + (expected // cfg.scene_size).astype(np.int64)
        n_own = np.minimum(n_own, n_scenes)
        member_user = np.repeat(np.arange(n_users), n_own)
        # A home scene in the primary genre (by popularity); the others mostly its neighbours
        # on the genre's ring of scenes (heavy users range further), the rest anywhere.
        home = genre_scenes.within(self.primary, rng)
        by_genre = np.argsort(self.scene_genre, kind="stable")
        g_counts = np.bincount(self.scene_genre, minlength=n_genres)
        g_starts = np.cumsum(g_counts) - g_counts
        ring_pos = np.empty(n_scenes, dtype=np.int64)
        ring_pos[by_genre] = np.arange(n_scenes) - np.repeat(g_starts, g_counts)
        spread = _NEIGHBOURHOOD * np.sqrt(n_own[member_user])
        offset = np.rint(rng.normal(0.0, 1.0, len(member_user)) * spread).astype(np.int64)
        g = self.primary[member_user]
        member_scene = by_genre[g_starts[g] + (ring_pos[home[member_user]] + offset) % g_counts[g]]
        kind = rng.random(len(member_user))
        charted = np.flatnonzero((kind >= _RING_SHARE) & (kind < _GENRE_FOCUS))
        member_scene[charted] = genre_scenes.within(g[charted], rng)
        anywhere = kind >= _GENRE_FOCUS
        member_scene[anywhere] = genre_scenes.overall(int(anywhere.sum()), rng)
        member_scene[np.cumsum(n_own) - n_own] = home
        self.member_user, self.member_scene = member_user, member_scene
        self.user_scenes = _GroupSampler(member_user, rng.exponential(1.0, len(member_user)), n_users)

    def listens(self, users: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """One listen per entry of ``users``: items, times (fractions), in-scene flags, kept flags.

        A listen is not kept when it falls before the artist's release or is thinned out by
        the artist's decaying trend.
        """
        rng = self.rng
        n = len(users)
        in_scene = rng.random(n) < self.loyalty[users]
        items = np.empty(n, dtype=np.int64)
        side = rng.random(n)
        charts = np.flatnonzero(~in_scene & (side < 0.5))
        items[charts] = self.genre_items.overall(len(charts), rng)
        explore = np.flatnonzero(~in_scene & (side >= 0.5))
        items[explore] = self.genre_items.within(self.primary[users[explore]], rng)
        scene_rows = self.user_scenes.within(users[in_scene], rng)
        items[in_scene] = self.scene_items.within(self.member_scene[scene_rows], rng)
        t = self.window_start[users] + rng.random(n) * self.window[users]
        age = t - self.release[items]
        with np.errstate(invalid="ignore", over="ignore"):
            keep_p = np.where(age < 0, 0.0, _TREND_FLOOR + (1 - _TREND_FLOOR) * np.exp2(-age / self.half_life))
        kept = rng.random(n) < np.where(np.isinf(age), 1.0, keep_p)
        return items, t, in_scene, kept


def _draw_interactions(world: _World, n_users: int, n_items: int, target: int) -> tuple[np.ndarray, ...]:
    """Distinct (user, item) pairs in draw order: one per user first, then by activity.

    Each round draws only for the shortfall (scaled by the last round's yield) and keeps the
    new pairs not seen before: a sorted array of the kept keys is merged, never rebuilt.
    """
    rng = world.rng
    chunks: list[tuple[np.ndarray, ...]] = []
    seen = np.empty(0, dtype=np.int64)

    def add(users: np.ndarray, limit: int) -> np.ndarray:
        """Draw one listen per entry of ``users``; keep up to ``limit`` new pairs; their users."""
        nonlocal seen
        items, t, in_scene, kept = world.listens(users)
        users, items, t, in_scene = users[kept], items[kept], t[kept], in_scene[kept]
        key = users.astype(np.int64) * n_items + items
        uniq, first = np.unique(key, return_index=True)
        if len(seen):  # sorted queries: searchsorted walks ``seen`` once
            pos = np.minimum(np.searchsorted(seen, uniq), len(seen) - 1)
            new = seen[pos] != uniq
            uniq, first = uniq[new], first[new]
        if len(first) > limit:  # a random subset, as a shuffled draw order would keep
            pick = np.sort(rng.choice(len(first), size=limit, replace=False))
            uniq, first = uniq[pick], first[pick]
        fresh = np.sort(first)
        if len(fresh):
            chunks.append((users[fresh], items[fresh], t[fresh], in_scene[fresh]))
            seen = np.insert(seen, np.searchsorted(seen, uniq), uniq)
        return users[fresh]

    # Every user once (retrying the listens a trend thinned out), then the bulk by activity.
    lacking = np.arange(n_users)
    for _ in range(10 * _MAX_ROUNDS):
        lacking = np.setdiff1d(lacking, add(lacking, len(lacking)), assume_unique=True)
        if not len(lacking):
            break
    if len(lacking):  # only with extremely thin trends: keep such users' next listen regardless
        items, t, in_scene, _ = world.listens(lacking)
        chunks.append((lacking, items, t, in_scene))
        new = np.sort(lacking.astype(np.int64) * n_items + items)
        seen = np.insert(seen, np.searchsorted(seen, new), new)
    count = len(seen)

    yield_rate = 0.6
    for _ in range(_MAX_ROUNDS):
        need = target - count
        if need <= 0:
            break
        size = int(min(need / max(yield_rate, 0.01) * 1.1 + 16, 20 * target + 1000))
        # Listens per user ~ Multinomial(size, activity), drawn sorted by user (fast lookups).
        per_user = rng.multinomial(size, world.activity)
        got = len(add(np.repeat(np.arange(n_users), per_user), need))
        log.debug("synthetic top-up: %d draws -> %d new pairs", size, got)
        count += got
        yield_rate = got / size
        if got < 0.001 * need:
            break
    users, items, t, in_scene = (np.concatenate(parts) for parts in zip(*chunks, strict=True))
    return users, items, t, in_scene


def item_structure(cfg: SyntheticConfig) -> pd.DataFrame:
    """The hidden truth behind ``generate_synthetic(cfg)``'s artists, for analysis and tests.

    One row per item id: ``genre``, ``scene``, ``popularity`` (the static weight, sum 1)
    and ``release`` (NaT for the back catalogue). Rebuilt from the same seed, so it matches
    the generated dataset exactly (the world is drawn first from the generator's stream).
    """
    world = _World(cfg, np.random.default_rng(cfg.random_state))
    return pd.DataFrame(
        {
            "genre": world.item_genre,
            "scene": world.item_scene,
            "popularity": world.popularity,
            "release": _release_times(world, cfg),
        },
        index=pd.RangeIndex(cfg.n_items, name="item"),
    )


def _release_times(world: _World, cfg: SyntheticConfig) -> pd.DatetimeIndex:
    """Every artist's release time (NaT for the back catalogue)."""
    t0, t1 = pd.Timestamp(cfg.start).value, pd.Timestamp(cfg.end).value
    return pd.to_datetime(np.where(np.isinf(world.release), np.nan, t0 + world.release * (t1 - t0)))


def generate_synthetic(cfg: SyntheticConfig) -> MusicDataset:
    """Generate a seeded music-like :class:`MusicDataset` (see the module docstring)."""
    rng = np.random.default_rng(cfg.random_state)
    n_users, n_items, n_tags, n_genres = cfg.n_users, cfg.n_items, cfg.n_tags, cfg.n_clusters
    world = _World(cfg, rng)

    target = cfg.n_interactions
    users, items, frac, in_scene = _draw_interactions(world, n_users, n_items, target)
    if len(users) < target:
        log.info("synthetic: %d distinct pairs instead of %d (data too dense)", len(users), target)
    plays = np.ceil(rng.lognormal(_PLAYS_LOG_MEAN, _PLAYS_LOG_SD, size=len(users)) * np.where(in_scene, 2.0, 1.0))
    t0 = pd.Timestamp(cfg.start).value
    t1 = pd.Timestamp(cfg.end).value
    timestamps = np.minimum(t0 + frac * (t1 - t0), t1 - 1).astype(np.int64).view("datetime64[ns]")
    interactions = pd.DataFrame({"user": users, "item": items, "weight": plays, "timestamp": timestamps})

    # Tags: genre tags first, three tags per scene from the rest, one noisy global tag.
    genre_tag = np.arange(n_genres) % n_tags
    pool = np.arange(n_genres, n_tags) if n_tags > n_genres else np.arange(n_tags)
    scene_tags = pool[rng.choice(len(pool), size=(world.n_scenes, _SCENE_TAGS), p=_zipf(len(pool), 0.8, rng))]
    scene_tags[:, 0] = pool[rng.permutation(world.n_scenes) % len(pool)]
    item_ids = np.arange(n_items)
    candidates = np.column_stack([
        genre_tag[world.item_genre],
        scene_tags[world.item_scene],
        rng.choice(n_tags, size=n_items, p=_zipf(n_tags, 0.8, rng)),
    ])
    # A scene's popular artists carry its full tag set, its tail only part of it (like Last.fm,
    # where little-known artists are tagged by few users); the noisy tag is equally likely.
    standing = world.standing[:, None]
    p_include = np.c_[0.3 + 0.6 * standing, np.repeat(0.3 + 0.65 * standing, _SCENE_TAGS, axis=1),
                      np.full((n_items, 1), 0.25)]
    include = rng.random(candidates.shape) < p_include
    include[:, 1] |= ~include.any(axis=1)
    tag_item = np.broadcast_to(item_ids[:, None], candidates.shape)[include]
    tag = candidates[include]
    # Weights (like tagging counts): higher on better-known artists.
    weight = rng.uniform(0.1, 1.0, len(tag)) * (0.5 + world.standing[tag_item]) / 1.5
    item_tags = pd.DataFrame({"item": tag_item, "tag": tag, "weight": weight})
    item_tags = item_tags.drop_duplicates(["item", "tag"]).sort_values(["item", "tag"]).reset_index(drop=True)

    # Users' own tags on ~10% of their pairs: 1-2 of the item's tags.
    tag_items = item_tags["item"].to_numpy()
    starts = np.searchsorted(tag_items, item_ids)
    counts = np.bincount(tag_items, minlength=n_items)
    tagged = np.flatnonzero(rng.random(len(users)) < 0.1)
    tagged = np.repeat(tagged, rng.integers(1, 3, size=len(tagged)))
    tagged_items = items[tagged]
    pos = starts[tagged_items] + (rng.random(len(tagged)) * counts[tagged_items]).astype(np.int64)
    user_item_tags = pd.DataFrame(
        {"user": users[tagged], "item": tagged_items, "tag": item_tags["tag"].to_numpy()[pos]}
    ).drop_duplicates()

    # Social: ~3 links per user, mostly to users who follow one of the source's scenes; symmetric.
    source = np.repeat(np.arange(n_users), rng.poisson(3.0, size=n_users))
    friend = rng.integers(0, n_users, size=len(source))
    same = np.flatnonzero(rng.random(len(source)) < _SOCIAL_SAME)
    scene = world.member_scene[world.user_scenes.within(source[same], rng)]
    followers = _GroupSampler(world.member_scene, np.ones(len(world.member_scene)), world.n_scenes)
    friend[same] = world.member_user[followers.within(scene, rng)]
    links = pd.DataFrame({"user": np.r_[source, friend], "friend": np.r_[friend, source]})
    links = links.loc[links["user"] != links["friend"]].drop_duplicates()

    tag_names = _labels("tag_", n_tags)
    tag_names[: min(n_tags, len(_GENRES))] = _GENRES[: min(n_tags, len(_GENRES))]
    item_index = np.arange(n_items, dtype=np.int64)
    dataset = build_dataset(
        "synthetic",
        interactions,
        interactions_file="synthetic",
        item_catalog=pd.Index(item_index),
        item_names=pd.Series(_labels("artist_", n_items), index=item_index),
        item_release=pd.Series(_release_times(world, cfg), index=item_index),
        tag_catalog=pd.Series(tag_names, index=np.arange(n_tags, dtype=np.int64)),
        item_tags=SideTable(item_tags, file="synthetic item_tags"),
        user_item_tags=SideTable(user_item_tags, file="synthetic user_item_tags"),
        social=SideTable(links, file="synthetic social"),
        stats={"n_interactions_requested": target},
    )
    dataset.stats["n_interactions"] = len(dataset.interactions)
    return dataset
