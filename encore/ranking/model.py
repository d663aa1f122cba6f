"""The CatBoost ranking model: training on labelled candidates, scoring, top-k lists.

Rows are (user, item) candidate pairs sorted by user (CatBoost needs each user's rows
together for group-wise metrics); ``y`` is 1 when the pair is in the labelling part.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from catboost import CatBoostClassifier, CatBoostRanker, Pool

from encore.arrays import hashed_uniform, pair_keys, positions_by_key, positions_in_groups, segment_starts
from encore.config.experiment import RankerConfig

log = logging.getLogger(__name__)

VALIDATION_METRIC = "NDCG:top=10;type=Base"


@dataclass
class TrainedRanker:
    model: CatBoostClassifier | CatBoostRanker
    feature_names: list[str]
    iterations: int
    validation_ndcg: float | None
    n_rows: int
    n_users: int
    n_positives: int

    def score(self, features: pd.DataFrame) -> np.ndarray:
        if isinstance(self.model, CatBoostClassifier):
            return self.model.predict_proba(features[self.feature_names])[:, 1]
        return self.model.predict(features[self.feature_names])

    def importance(self) -> pd.DataFrame:
        # PredictionValuesChange needs no data, for either loss (YetiRank's default would).
        values = self.model.get_feature_importance(type="PredictionValuesChange")
        return (pd.DataFrame({"feature": self.feature_names, "importance": values})
                .sort_values("importance", ascending=False, ignore_index=True))


def _new_model(config: RankerConfig, iterations: int, seed: int, early_stopping: bool) -> Any:
    params: dict[str, Any] = {
        "iterations": iterations,
        "learning_rate": config.learning_rate,
        "depth": config.depth,
        "l2_leaf_reg": config.l2_leaf_reg,
        "random_seed": seed,
        "thread_count": config.thread_count,
        "verbose": 0,
        "allow_writing_files": False,
    }
    if early_stopping:
        params |= {"early_stopping_rounds": config.early_stopping_rounds, "eval_metric": VALIDATION_METRIC,
                   "use_best_model": True}
    if config.loss == "YetiRank":
        return CatBoostRanker(loss_function="YetiRank", **params)
    return CatBoostClassifier(loss_function="Logloss", **params)


def select_training_rows(users: np.ndarray, keys: np.ndarray, y: np.ndarray, config: RankerConfig,
                         seed: int) -> np.ndarray:
    """Boolean mask: rows of users with a positive, negatives optionally subsampled per user.

    ``keys`` identify the rows' (user, item) pairs: the sample is drawn from a hash of the
    pair and the seed, so it is the same however the users are batched.
    """
    starts = segment_starts(users)
    counts = np.diff(np.r_[starts, len(users)])
    positives = np.add.reduceat(y, starts) if len(y) else np.zeros(0, dtype=y.dtype)
    keep = np.repeat(positives > 0, counts)
    if config.negatives_per_positive is not None:
        # Random order of each user's negatives; keep the first N x positives of them.
        position = positions_by_key(users, np.where(y == 1, -1.0, hashed_uniform(keys, seed)))
        quota = np.repeat(positives * (1 + config.negatives_per_positive), counts)
        keep &= (y == 1) | (position < quota)
    return keep


def train_ranker(x: pd.DataFrame, y: np.ndarray, users: np.ndarray, config: RankerConfig,
                 *, seed: int) -> TrainedRanker:
    """Fit the ranker on every given row (choose them with :func:`select_training_rows`); with
    early stopping, pick the tree count on a validation slice of users, then refit on all
    users with that count (so every labelled user is used)."""
    x = x.reset_index(drop=True)
    if y.sum() == 0:
        raise ValueError("no candidate of any ranker user is a target item: candidate recall is zero")
    iterations = config.iterations
    validation_ndcg = None
    if config.early_stopping:
        unique = np.unique(users)
        rng = np.random.default_rng(seed)
        val_users = rng.choice(unique, size=max(1, int(len(unique) * config.validation_fraction)), replace=False)
        is_val = np.isin(users, val_users)
        model = _new_model(config, config.iterations, seed, early_stopping=True)
        model.fit(Pool(x[~is_val], y[~is_val], group_id=users[~is_val]),
                  eval_set=Pool(x[is_val], y[is_val], group_id=users[is_val]))
        iterations = int(model.get_best_iteration()) + 1
        # From the per-iteration history: get_best_score() is empty for YetiRank.
        validation_ndcg = float(model.get_evals_result()["validation"][VALIDATION_METRIC][iterations - 1])
        log.info("ranker: early stopping chose %d trees (validation NDCG@10 %.4f)", iterations, validation_ndcg)
    model = _new_model(config, iterations, seed, early_stopping=False)
    model.fit(Pool(x, y, group_id=users))
    return TrainedRanker(model=model, feature_names=list(x.columns), iterations=iterations,
                         validation_ndcg=validation_ndcg, n_rows=len(y), n_users=int(np.unique(users).size),
                         n_positives=int(y.sum()))


def top_k(users: np.ndarray, items: np.ndarray, scores: np.ndarray, k: int) -> pd.DataFrame:
    """Best ``k`` items per user by score: long table user, item, score, rank (from 1)."""
    order = np.lexsort((-scores, users))
    users, items, scores = users[order], items[order], scores[order]
    position = positions_in_groups(users)
    keep = position < k
    return pd.DataFrame({"user": users[keep].astype(np.int32), "item": items[keep].astype(np.int32),
                         "score": scores[keep].astype(np.float32), "rank": (position[keep] + 1).astype(np.int32)})


def complete_with_popular(recs: pd.DataFrame, users: np.ndarray, popular: np.ndarray, seen_keys: np.ndarray,
                          n_items: int, k: int) -> pd.DataFrame:
    """Fill every user in ``users`` up to ``k`` items with popular ones they have not seen.

    ``popular`` is item ids most popular first; ``seen_keys`` are user*n_items+item keys of
    the users' history. Filled rows get ranks after the ranker's and score NaN.
    """
    have = recs.groupby("user").size().reindex(users, fill_value=0).to_numpy()
    short = users[have < k]
    if len(short) == 0:
        return recs
    need_max = k + int(np.bincount((seen_keys // n_items)[np.isin(seen_keys // n_items, short)]).max(initial=0))
    pool = popular[: min(len(popular), need_max + k)]
    fill_users = np.repeat(short, len(pool))
    fill_items = np.tile(pool, len(short))
    keys = pair_keys(fill_users, fill_items, n_items)
    taken = pair_keys(recs["user"].to_numpy(), recs["item"].to_numpy(), n_items)
    ok = ~np.isin(keys, seen_keys) & ~np.isin(keys, taken)
    fill_users, fill_items = fill_users[ok], fill_items[ok]
    position = positions_in_groups(fill_users)
    base = pd.Series(have, index=users).reindex(fill_users).to_numpy()
    rank = base + position + 1
    keep = rank <= k
    filled = pd.DataFrame({"user": fill_users[keep].astype(np.int32), "item": fill_items[keep].astype(np.int32),
                           "score": np.full(keep.sum(), np.nan, np.float32), "rank": rank[keep].astype(np.int32)})
    return pd.concat([recs, filled], ignore_index=True).sort_values(["user", "rank"], ignore_index=True)


def complete_from_list(recs: pd.DataFrame, listed: pd.DataFrame, n_items: int, k: int) -> pd.DataFrame:
    """Fill the users of ``recs`` up to ``k`` items from their own ``listed`` lists (user, item,
    rank: e.g. a fallback generator's, seen items already excluded), in ``listed``'s order,
    skipping items already recommended. Users of ``listed`` absent from ``recs`` get it whole."""
    size = int(max(recs["user"].to_numpy().max(initial=-1), listed["user"].to_numpy().max(initial=-1))) + 1
    have = np.bincount(recs["user"].to_numpy(), minlength=size)
    fill = listed.sort_values(["user", "rank"], kind="stable")
    keys = pair_keys(fill["user"].to_numpy(), fill["item"].to_numpy(), n_items)
    fill = fill[~np.isin(keys, pair_keys(recs["user"].to_numpy(), recs["item"].to_numpy(), n_items))]
    fill_users = fill["user"].to_numpy()
    rank = have[fill_users] + positions_in_groups(fill_users) + 1
    keep = rank <= k
    items = fill["item"].to_numpy()[keep]
    filled = pd.DataFrame({"user": fill_users[keep].astype(np.int32), "item": items.astype(np.int32),
                           "score": np.full(keep.sum(), np.nan, np.float32), "rank": rank[keep].astype(np.int32)})
    return pd.concat([recs, filled], ignore_index=True).sort_values(["user", "rank"], ignore_index=True)
