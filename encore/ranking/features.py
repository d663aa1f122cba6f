"""Ranker features for (user, item) candidate pairs, all vectorised.

Everything here is computed from what one *stage* may see (``base`` for the ranker's
training rows, ``train`` for test rows): that stage's interaction matrix, its leak-free
item tags, its fitted generator models. Labels never enter a feature.

Built-in feature groups (switchable with ``components.ranker.features``; a user's own group is a
:class:`~encore.ranking.feature_groups.FeatureGroup` subclass named as ``package.module:Class``):

``generator``  per generator or feature model g: ``g_score`` (g's own score of the pair,
               for every candidate, proposed by g or not), ``g_zscore`` (score standardised
               over the user's candidates), ``g_cosine`` (user/item factor cosine, factor
               models); per generator also ``g_rank`` (rank in g's list, NaN when not
               proposed) and ``g_proposed``; ``n_generators`` proposing the pair and its
               ``best_rank``.
``user``       ``user_n_items``, ``user_total_plays``, ``user_mean_log_plays``,
               ``user_tag_breadth`` (distinct tags over the user's items); with
               timestamps ``user_days_since_last``, ``user_history_days``,
               ``user_recent_items`` / ``user_recent_share`` (items played in the last
               ``recent_days`` of the stage).
``item``       ``item_listeners``, ``item_total_plays``, ``item_mean_log_plays``,
               ``item_n_tags``; with timestamps ``item_days_since_last``, ``item_age_days``,
               ``item_recent_listeners`` and ``item_trend`` (recent / all-time listeners);
               with timestamps and release dates ``item_days_since_release`` (negative for a
               release still to come, NaN unknown).
``user_item``  ``tag_cosine`` (user tag profile vs item tags, TF-IDF), ``colisten_top_max`` /
               ``colisten_top_mean`` (co-listening similarity of the item to the user's three
               most-played items, in a 64-d SVD embedding of listener vectors); with
               timestamps ``colisten_recent_max`` / ``_mean`` (the same to the user's three
               most recent items: the recent-window profile).
``social``     ``friends_listening`` (friends who play the item), ``friends_share``.

Memory: each group's ``__init__`` builds what is stage-wide (O(n_users + n_items + nnz)) once
per stage (:class:`FeatureTables`); the ranker calls :func:`build_features` on batches of whole
users, so nothing proportional to users x candidates is held beyond one batch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.decomposition import TruncatedSVD
from sklearn.preprocessing import normalize

from encore.arrays import lookup_pairs, pair_keys, positions_by_key, segment_starts
from encore.ranking.feature_groups import (
    SECONDS_PER_DAY,
    FeatureGroup,
    StageData,
    feature_group_class,
    ordered_groups,
)
from encore.recommenders.factorization import ImplicitFactorizationRecommender
from encore.recommenders.kernels import factor_pair_scores


# --------------------------------------------------------------------------- helpers
def within_user_zscore(users: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(value - user mean) / user std over the user's rows; rows sorted by user."""
    starts = segment_starts(users)
    counts = np.diff(np.r_[starts, len(users)])
    mean = np.repeat(np.add.reduceat(values, starts) / counts, counts)
    var = np.repeat(np.add.reduceat((values - mean) ** 2, starts) / counts, counts)
    return (values - mean) / np.sqrt(var + 1e-12)


def sorted_pairs_dot(users: np.ndarray, items: np.ndarray, left: sp.csr_matrix, right: sp.csr_matrix,
                     batch: int = 512) -> np.ndarray:
    """``left[users[j]] . right[items[j]]`` for pairs sorted by user.

    Densifies ``batch`` rows of ``left`` at a time and expands each pair into the stored
    entries of its ``right`` row, so the cost is the number of those entries — much
    cheaper than sparse row-by-row products when ``left`` rows are long (user profiles).
    """
    out = np.zeros(len(users), dtype=np.float64)
    unique = np.unique(users)
    for first in range(0, len(unique), batch):
        block_users = unique[first:first + batch]
        lo, hi = np.searchsorted(users, block_users[0]), np.searchsorted(users, block_users[-1], side="right")
        block = left[block_users].toarray()
        local = np.searchsorted(block_users, users[lo:hi])
        starts = right.indptr[items[lo:hi]]
        lengths = right.indptr[items[lo:hi] + 1] - starts
        pair = np.repeat(np.arange(hi - lo), lengths)
        offsets = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths) + np.arange(lengths.sum())
        values = right.data[offsets] * block[local[pair], right.indices[offsets]]
        out[lo:hi] = np.bincount(pair, weights=values, minlength=hi - lo)
    return out


def sparse_lookup(matrix: sp.csr_matrix, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``matrix[rows[j], cols[j]]`` for every j, without densifying."""
    coo = matrix.tocoo()
    keys = pair_keys(coo.row, coo.col, matrix.shape[1])
    return lookup_pairs(pair_keys(rows, cols, matrix.shape[1]), keys, coo.data.astype(np.float64), fill=0.0)


def _row_reduce(matrix: sp.csr_matrix, ufunc: np.ufunc, empty: float) -> np.ndarray:
    """Per-row reduction over stored values (``empty`` for rows without any)."""
    counts = np.diff(matrix.indptr)
    out = np.full(matrix.shape[0], empty, dtype=np.float64)
    nonempty = counts > 0
    if matrix.nnz:
        out[nonempty] = ufunc.reduceat(matrix.data.astype(np.float64), matrix.indptr[:-1][nonempty])
    return out


def top_played_items(user_items: sp.csr_matrix, n: int) -> np.ndarray:
    """``(n_users, n)`` most-played items per user, -1 padded; vectorised over the CSR rows."""
    coo = user_items.tocoo()
    position = positions_by_key(coo.row, -coo.data)
    top = np.full((user_items.shape[0], n), -1, dtype=np.int64)
    keep = position < n
    top[coo.row[keep], position[keep]] = coo.col[keep]
    return top


def colistening_embeddings(user_items: sp.csr_matrix, n_components: int = 64) -> np.ndarray:
    """L2-normalised float32 ``(n_items, d)`` SVD embedding of the items' normalised listener
    vectors, so that dot products approximate co-listening cosines (seeded: deterministic)."""
    listeners = normalize((user_items > 0).astype(np.float32).T.tocsr())
    d = max(1, min(n_components, min(listeners.shape) - 1))
    return normalize(TruncatedSVD(n_components=d, random_state=0).fit_transform(listeners)).astype(np.float32)


def most_recent_items(timestamps: sp.csr_matrix, n: int) -> np.ndarray:
    """``(n_rows, n)`` most recently played items per row, -1 padded."""
    return top_played_items(timestamps, n)


def _colistening(top: np.ndarray, items: np.ndarray, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Max and mean co-listening cosine of each pair's item to the row's ``top`` items."""
    sims = np.empty(top.shape)
    for j in range(top.shape[1]):  # a few columns, not a per-user loop
        sims[:, j] = factor_pair_scores(embeddings, embeddings, np.maximum(top[:, j], 0), items)
    present = top >= 0
    filled = np.where(present, sims, 0.0)
    top_max = np.where(present, sims, -np.inf).max(axis=1).clip(min=0.0)
    return top_max, filled.sum(axis=1) / np.maximum(present.sum(axis=1), 1)



# --------------------------------------------------------------------------- feature groups
class GeneratorFeatures(FeatureGroup):
    """Every generator and feature model's view of the pair: score, within-user z-score, factor
    cosine; a proposing instance's rank and whether it proposed; how many proposed, best rank."""

    name = "generator"

    def __init__(self, data: StageData) -> None:
        super().__init__(data)
        # Factor norms of the factor models, for the ``g_cosine`` features: once per stage
        # (normalising the factors per batch cost O(n_users) a batch, quadratic overall).
        self.factor_norms = {
            name: (np.linalg.norm(model.user_factors, axis=1).astype(np.float64),
                   np.linalg.norm(model.item_factors, axis=1).astype(np.float64))
            for name, model in data.models.items()
            if hasattr(model, "user_factors") and hasattr(model, "item_factors")}

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> dict[str, np.ndarray]:
        keys = pair_keys(users, items, data.n_items)
        feats: dict[str, np.ndarray] = {}
        ranks = []
        for name, model in data.models.items():
            score = np.asarray(model.score_pairs(users, items, data.user_items), dtype=np.float64)
            score = np.where(np.isfinite(score), score, np.nan)
            feats[f"{name}_score"] = score
            feats[f"{name}_zscore"] = within_user_zscore(users, np.nan_to_num(score))
            if name in self.factor_norms:
                # implicit's models score a pair by the factor dot product already: reuse it.
                dot = score if isinstance(model, ImplicitFactorizationRecommender) else factor_pair_scores(
                    np.asarray(model.user_factors), np.asarray(model.item_factors), users, items)
                user_norm, item_norm = self.factor_norms[name]
                norms = user_norm[users] * item_norm[items]
                feats[f"{name}_cosine"] = np.divide(dot, norms, out=np.zeros(len(users)), where=norms > 0)
            if name not in data.candidates:  # a feature model: scores only, it proposes nothing
                continue
            listed = data.candidates[name]
            rank = lookup_pairs(keys, pair_keys(listed["user"].to_numpy(), listed["item"].to_numpy(),
                                                data.n_items), listed["rank"].to_numpy(np.float64))
            feats[f"{name}_rank"] = rank
            feats[f"{name}_proposed"] = (~np.isnan(rank)).astype(np.float64)
            ranks.append(rank)
        stacked = np.vstack(ranks)
        feats["n_generators"] = (~np.isnan(stacked)).sum(axis=0).astype(np.float64)
        feats["best_rank"] = np.where(feats["n_generators"] > 0, np.nanmin(np.where(
            np.isnan(stacked), np.inf, stacked), axis=0), np.nan)
        return feats


class UserFeatures(FeatureGroup):
    """The user's activity: items, plays, tag breadth; with timestamps, recency of the profile."""

    name = "user"

    def __init__(self, data: StageData) -> None:
        super().__init__(data)
        self.item_has_tag = (data.item_features > 0).astype(np.float32).tocsr()

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> dict[str, np.ndarray]:
        """Per-pair user columns for pairs sorted by user (computed on the batch's distinct users)."""
        unique, inverse = np.unique(users, return_inverse=True)
        x = data.user_items[unique]
        n_items = np.diff(x.indptr).astype(np.float64)
        total = np.asarray(x.sum(axis=1)).ravel()
        log_total = np.asarray(x.log1p().sum(axis=1)).ravel()
        breadth = np.diff(((x > 0).astype(np.float32) @ self.item_has_tag).tocsr().indptr)
        feats = {
            "user_n_items": n_items,
            "user_total_plays": total,
            "user_mean_log_plays": log_total / np.maximum(n_items, 1),
            "user_tag_breadth": breadth.astype(np.float64),
        }
        if data.timestamps is not None:
            ts = data.timestamps[unique]
            last = _row_reduce(ts, np.maximum, np.nan)
            first = _row_reduce(ts, np.minimum, np.nan)
            feats["user_days_since_last"] = (data.now - last) / SECONDS_PER_DAY
            feats["user_history_days"] = (last - first) / SECONDS_PER_DAY
            # The user's recent-window activity: how much of the profile is current.
            recent = np.diff((ts >= data.now - data.recent_seconds).astype(np.int8).tocsr().indptr)
            feats["user_recent_items"] = recent.astype(np.float64)
            feats["user_recent_share"] = recent / np.maximum(n_items, 1)
        return {name: values[inverse] for name, values in feats.items()}


class ItemFeatures(FeatureGroup):
    """The item's audience: listeners, plays, tags; with timestamps, its age and trend
    (per-item columns computed once per stage, looked up per pair)."""

    name = "item"

    def __init__(self, data: StageData) -> None:
        super().__init__(data)
        x = data.user_items.tocsc()
        listeners = np.diff(x.indptr).astype(np.float64)
        self.columns = {
            "item_listeners": listeners,
            "item_total_plays": np.asarray(x.sum(axis=0)).ravel(),
            "item_mean_log_plays": np.asarray(x.log1p().sum(axis=0)).ravel() / np.maximum(listeners, 1),
            "item_n_tags": np.diff(data.item_features.tocsr().indptr).astype(np.float64),
        }
        if data.timestamps is not None:
            now = data.now
            by_item = data.timestamps.T.tocsr()
            self.columns["item_days_since_last"] = (now - _row_reduce(by_item, np.maximum, np.nan)) / SECONDS_PER_DAY
            self.columns["item_age_days"] = (now - _row_reduce(by_item, np.minimum, np.nan)) / SECONDS_PER_DAY
            # Trend: listeners active on the item in the recent window, and their share of all-time
            # listeners (a rising item has a high share; an old favourite a low one).
            recent = np.diff((by_item >= now - data.recent_seconds).astype(np.int8).tocsr().indptr
                             ).astype(np.float64)
            self.columns["item_recent_listeners"] = recent
            self.columns["item_trend"] = recent / np.maximum(listeners, 1)
            if data.item_release is not None:
                # From the release schedule, not from listens: an item nobody has heard yet still
                # has an age, and one released after the labelling window can never be a positive
                # (without it a stage's new items mix both, and the ranker learns the mixture).
                self.columns["item_days_since_release"] = (now - data.item_release) / SECONDS_PER_DAY

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> dict[str, np.ndarray]:
        return {name: values[items] for name, values in self.columns.items()}


class UserItemFeatures(FeatureGroup):
    """How the item fits the user's profile: tag cosine, co-listening similarity to the user's
    most-played (and, with timestamps, most recent) items."""

    name = "user_item"

    def __init__(self, data: StageData) -> None:
        super().__init__(data)
        tags = data.item_features.tocsr().astype(np.float64)
        idf = np.log((1 + tags.shape[0]) / (1 + np.diff(tags.tocsc().indptr))) + 1
        self.item_tags = normalize(tags @ sp.diags(idf)).tocsr()
        self.embeddings = colistening_embeddings(data.user_items)

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> dict[str, np.ndarray]:
        unique, inverse = np.unique(users, return_inverse=True)
        x = data.user_items[unique]
        # Tag profile: TF-IDF item tags, users as the log-play-weighted sum of their items'.
        profiles = normalize(x.log1p().astype(np.float64) @ self.item_tags).tocsr()
        feats = {"tag_cosine": sorted_pairs_dot(inverse, items, profiles, self.item_tags)}
        # Co-listening similarity of the candidate to the user's most-played items, in a 64-d
        # SVD embedding of the items' listener vectors: exact sparse cosines cost O(listeners)
        # per pair, which does not scale to millions of candidate pairs.
        feats["colisten_top_max"], feats["colisten_top_mean"] = _colistening(
            top_played_items(x, 3)[inverse], items, self.embeddings)
        if data.timestamps is not None:  # ... and to what the user played last
            feats["colisten_recent_max"], feats["colisten_recent_mean"] = _colistening(
                most_recent_items(data.timestamps[unique], 3)[inverse], items, self.embeddings)
        return feats


class SocialFeatures(FeatureGroup):
    """Friends who play the item (social graph data only)."""

    name = "social"
    needs = ("social",)

    def __init__(self, data: StageData) -> None:
        super().__init__(data)
        assert data.social is not None
        self.friends = (data.social > 0).astype(np.float32).tocsr()
        self.listened = (data.user_items > 0).astype(np.float32).tocsr()

    def compute(self, users: np.ndarray, items: np.ndarray, data: StageData) -> dict[str, np.ndarray]:
        unique, inverse = np.unique(users, return_inverse=True)
        friends = self.friends[unique]
        listening = (friends @ self.listened).tocsr()  # the batch's rows only
        n_friends = np.asarray(friends.sum(axis=1)).ravel()[inverse]
        count = sparse_lookup(listening, inverse, items)
        return {"friends_listening": count, "friends_share": count / np.maximum(n_friends, 1)}


class FeatureTables:
    """The selected groups of one stage, each with its stage-wide tables built once (not once
    per batch), in column order (:func:`~encore.ranking.feature_groups.ordered_groups`). A group
    whose ``needs`` the stage lacks (no social graph, say) is left out: it would add no column."""

    def __init__(self, data: StageData, groups: list[str]) -> None:
        self.groups = ordered_groups(list(groups))
        self.builders: list[FeatureGroup] = []
        for name in self.groups:
            cls = feature_group_class(name)
            if all(getattr(data, need) is not None for need in cls.needs):
                self.builders.append(cls(data))


def build_features(pairs: pd.DataFrame, data: StageData, tables: FeatureTables) -> pd.DataFrame:
    """Feature table aligned with ``pairs`` (rows sorted by user), groups ``tables.groups``.

    Call it on batches of whole users: every value depends only on the pair, its user's rows
    and the stage-wide ``tables``, so batching changes nothing.
    """
    users = pairs["user"].to_numpy(np.int64)
    items = pairs["item"].to_numpy(np.int64)
    feats: dict[str, np.ndarray] = {}
    for group in tables.builders:
        columns = group.compute(users, items, data)
        clash = sorted(set(columns) & set(feats))
        if clash:
            raise ValueError(f"components.ranker.features: group '{group.name or type(group).__name__}' "
                             f"computes columns another group already did: {clash}")
        for name, values in columns.items():
            values = np.asarray(values)
            if values.shape != (len(users),):
                raise ValueError(f"components.ranker.features: group '{group.name or type(group).__name__}' "
                                 f"column '{name}' has shape {values.shape}, expected ({len(users)},)")
            # float32 as each group arrives: holding every group in float64 doubled peak memory.
            feats[name] = values.astype(np.float32)
    if not feats:
        raise ValueError("components.ranker.features: no feature group selected")
    return pd.DataFrame(feats, copy=False)
