"""Seeded, music-like synthetic data of any size (fully vectorised numpy).

The generative story, chosen to exercise what real listening data has:

* **Items** ("artists") belong to one of ``n_clusters`` taste clusters of uneven size and
  have a Zipf-like popularity ``1 / rank^popularity_exponent`` over a random ranking, so
  a few items take a large share of plays (the top 1% hold roughly a quarter of the
  interactions at the default exponent 1.0).
* **Tags**: each cluster has four characteristic tags (the first unique to it while there
  are enough tags); each item gets 1-5 tags, ~80% from its cluster, the rest from a
  Zipf-like global tag distribution -> ``item_tags`` (weights in [0.1, 1]). About 10% of
  the (user, item) pairs also carry 1-2 of the item's tags as the user's own tagging ->
  ``user_item_tags`` (like Last.fm 2K).
* **Users** have 1-3 favourite clusters (drawn by cluster popularity) and a loyalty
  (Beta(6, 2), mean 0.75): each listen comes from a favourite cluster with that
  probability (item by popularity within the cluster), else from global popularity.
  Activity is log-normal, so a few users are much more active; every user listens to at
  least one item.
* **Weights** are play counts: heavy-tailed (ceil of a log-normal, x1.5 in favourite
  clusters), >= 1.
* **Timestamps**: each user is active in a window (10-100% of ``start``..``end``) and
  listens uniformly within it; a pair's timestamp is the listen that created it.
* **Social**: ~3 outgoing links per user (Poisson), 80% to users sharing the primary
  cluster; made symmetric (both directions listed, like Last.fm 2K), no self-links.

Listens are drawn with replacement and deduplicated, keeping the first ``n_interactions``
distinct (user, item) pairs; near full density that may end below ``n_interactions`` -
the actual count is ``stats["n_interactions"]`` (the request is
``stats["n_interactions_requested"]``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from scripts.core.data.common import SideTable, build_dataset
from scripts.core.data.config import SyntheticConfig
from scripts.core.data.types import MusicDataset

log = logging.getLogger(__name__)

_GENRES = (
    "rock", "pop", "electronic", "indie", "hip-hop", "jazz", "metal", "alternative", "classical",
    "folk", "punk", "soul", "blues", "ambient", "techno", "house", "reggae", "country", "r&b",
    "post-rock", "shoegaze", "synthpop", "trip-hop", "death metal", "black metal", "grunge",
    "new wave", "dubstep", "drum and bass", "funk", "disco", "k-pop", "j-rock", "latin",
    "singer-songwriter", "experimental", "industrial", "emo", "hardcore", "progressive rock",
)

_CLUSTER_TAGS = 4
_MAX_ROUNDS = 20


def _zipf(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Zipf-like weights ``1/rank^exponent`` over a random ranking of ``n`` things (sum 1)."""
    weights = 1.0 / (rng.permutation(n) + 1.0) ** exponent
    return weights / weights.sum()


def _labels(prefix: str, n: int) -> np.ndarray:
    width = len(str(max(n - 1, 0)))
    return np.char.add(prefix, np.char.zfill(np.arange(n).astype(str), width)).astype(object)


class _ClusterSampler:
    """Draw items by popularity, globally or within a given cluster (inverse-CDF search)."""

    def __init__(self, cluster: np.ndarray, popularity: np.ndarray, n_clusters: int):
        self.order = np.argsort(cluster, kind="stable")
        sorted_cluster = cluster[self.order]
        p = popularity[self.order]
        counts = np.bincount(cluster, minlength=n_clusters)
        self.ends = np.cumsum(counts)
        totals = np.bincount(cluster, weights=popularity, minlength=n_clusters)
        cum = np.cumsum(p)
        before = np.repeat(cum[self.ends - counts] - p[self.ends - counts], counts)
        # Keys c + (within-cluster CDF) are increasing, so one searchsorted serves all clusters.
        self.keys = sorted_cluster + (cum - before) / totals[sorted_cluster]
        self.global_cdf = np.cumsum(popularity)
        self.global_cdf /= self.global_cdf[-1]

    def within(self, clusters: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        pos = np.searchsorted(self.keys, clusters + rng.random(len(clusters)), side="right")
        return self.order[np.minimum(pos, self.ends[clusters] - 1)]

    def overall(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.minimum(np.searchsorted(self.global_cdf, rng.random(n), side="right"), len(self.global_cdf) - 1)


def generate_synthetic(cfg: SyntheticConfig) -> MusicDataset:
    """Generate a seeded music-like :class:`MusicDataset` (see the module docstring)."""
    rng = np.random.default_rng(cfg.random_state)
    n_users, n_items, n_tags, n_clusters = cfg.n_users, cfg.n_items, cfg.n_tags, cfg.n_clusters

    # Items: clusters of uneven size (each non-empty), Zipf-like popularity.
    share = rng.dirichlet(np.full(n_clusters, 2.0))
    item_cluster = rng.permutation(
        np.r_[np.arange(n_clusters), rng.choice(n_clusters, size=n_items - n_clusters, p=share)]
    )
    popularity = _zipf(n_items, cfg.popularity_exponent, rng)
    sampler = _ClusterSampler(item_cluster, popularity, n_clusters)
    cluster_pop = np.bincount(item_cluster, weights=popularity, minlength=n_clusters)

    # Users: favourite clusters, loyalty, activity.
    n_fav = rng.integers(1, 4, size=n_users)
    favourites = rng.choice(n_clusters, size=(n_users, 3), p=cluster_pop / cluster_pop.sum())
    loyalty = rng.beta(6.0, 2.0, size=n_users)
    activity = rng.lognormal(0.0, 1.0, size=n_users)
    activity /= activity.sum()
    window = rng.uniform(0.1, 1.0, size=n_users)
    window_start = rng.random(n_users) * (1.0 - window)

    def listens(users: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        fav = rng.random(len(users)) < loyalty[users]
        items = sampler.overall(len(users), rng)
        pick = (rng.random(int(fav.sum())) * n_fav[users[fav]]).astype(np.int64)
        items[fav] = sampler.within(favourites[users[fav], pick], rng)
        return items, fav

    # Draw listens (every user at least once), dedupe pairs keeping draw order, top up.
    target = cfg.n_interactions
    users = np.r_[np.arange(n_users), rng.choice(n_users, size=int(target * 1.15) + 16, p=activity)]
    items, fav = listens(users)
    for _ in range(_MAX_ROUNDS):
        key = users.astype(np.int64) * n_items + items
        _, first = np.unique(key, return_index=True)
        if len(first) >= target:
            break
        extra = rng.choice(n_users, size=2 * (target - len(first)) + 16, p=activity)
        extra_items, extra_fav = listens(extra)
        users, items, fav = np.r_[users, extra], np.r_[items, extra_items], np.r_[fav, extra_fav]
    keep = np.sort(first)[:target]
    users, items, fav = users[keep], items[keep], fav[keep]
    if len(keep) < target:
        log.info("synthetic: %d distinct pairs instead of %d (data too dense)", len(keep), target)

    plays = np.ceil(rng.lognormal(0.8, 1.1, size=len(users)) * np.where(fav, 1.5, 1.0))
    t0 = pd.Timestamp(cfg.start).value
    t1 = pd.Timestamp(cfg.end).value
    frac = window_start[users] + rng.random(len(users)) * window[users]
    timestamps = (t0 + frac * (t1 - t0)).astype(np.int64).view("datetime64[ns]")
    interactions = pd.DataFrame({"user": users, "item": items, "weight": plays, "timestamp": timestamps})

    # Tags: characteristic tags per cluster, 1-5 tags per item.
    tag_pop = _zipf(n_tags, 0.8, rng)
    cluster_tags = rng.choice(n_tags, size=(n_clusters, _CLUSTER_TAGS), p=tag_pop)
    cluster_tags[:, 0] = (
        rng.permutation(n_tags)[:n_clusters] if n_tags >= n_clusters else rng.integers(0, n_tags, n_clusters)
    )
    per_item = rng.integers(1, 6, size=n_items)
    tag_item = np.repeat(np.arange(n_items), per_item)
    tag = rng.choice(n_tags, size=len(tag_item), p=tag_pop)
    own = rng.random(len(tag_item)) < 0.8
    tag[own] = cluster_tags[item_cluster[tag_item[own]], rng.integers(0, _CLUSTER_TAGS, int(own.sum()))]
    item_tags = pd.DataFrame({"item": tag_item, "tag": tag, "weight": rng.uniform(0.1, 1.0, len(tag))})
    item_tags = item_tags.drop_duplicates(["item", "tag"]).sort_values(["item", "tag"]).reset_index(drop=True)

    # Users' own tags on ~10% of their pairs: 1-2 of the item's tags.
    starts = np.searchsorted(item_tags["item"].to_numpy(), np.arange(n_items))
    counts = np.bincount(item_tags["item"].to_numpy(), minlength=n_items)
    tagged = np.flatnonzero(rng.random(len(users)) < 0.1)
    tagged = np.repeat(tagged, rng.integers(1, 3, size=len(tagged)))
    tagged_items = items[tagged]
    pos = starts[tagged_items] + (rng.random(len(tagged)) * counts[tagged_items]).astype(np.int64)
    user_item_tags = pd.DataFrame(
        {"user": users[tagged], "item": tagged_items, "tag": item_tags["tag"].to_numpy()[pos]}
    ).drop_duplicates()

    # Social: ~3 links per user, mostly within the primary cluster; symmetric.
    primary = favourites[:, 0]
    by_cluster = np.argsort(primary, kind="stable")
    c_counts = np.bincount(primary, minlength=n_clusters)
    c_starts = np.cumsum(c_counts) - c_counts
    source = np.repeat(np.arange(n_users), rng.poisson(3.0, size=n_users))
    friend = rng.integers(0, n_users, size=len(source))
    same = rng.random(len(source)) < 0.8
    c = primary[source[same]]
    friend[same] = by_cluster[c_starts[c] + (rng.random(len(c)) * c_counts[c]).astype(np.int64)]
    links = pd.DataFrame({"user": np.r_[source, friend], "friend": np.r_[friend, source]})
    links = links.loc[links["user"] != links["friend"]].drop_duplicates()

    tag_names = _labels("tag_", n_tags)
    tag_names[: min(n_tags, len(_GENRES))] = _GENRES[: min(n_tags, len(_GENRES))]
    item_ids = np.arange(n_items, dtype=np.int64)
    dataset = build_dataset(
        "synthetic",
        interactions,
        interactions_file="synthetic",
        item_catalog=pd.Index(item_ids),
        item_names=pd.Series(_labels("artist_", n_items), index=item_ids),
        tag_catalog=pd.Series(tag_names, index=np.arange(n_tags, dtype=np.int64)),
        item_tags=SideTable(item_tags, file="synthetic item_tags"),
        user_item_tags=SideTable(user_item_tags, file="synthetic user_item_tags"),
        social=SideTable(links, file="synthetic social"),
        stats={"n_interactions_requested": target},
    )
    dataset.stats["n_interactions"] = len(dataset.interactions)
    return dataset
