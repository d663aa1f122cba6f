"""ranker: CatBoost over the merged candidates of every generator, with user/item features.

Protocol (README, "Ranker"): generators fit on *base* propose candidates for the users
who have *target* items; those candidates, labelled by the target part and described by
features computed from base only, train the ranker. For test, the generators refit on
*train* = base + target (``refit_generators: true``, the default) propose candidates
again, features are computed from train, and the ranker orders them. Lists are completed
with popular items so every user gets ``top_k``; seen items are never recommended.

Generator instances with ``propose: false`` contribute features only: their saved models
score every candidate pair (``<instance>_score`` ...), they add no candidates.

Memory is bounded: both stages run over batches of whole users (merge candidates, build
features, label or score, keep the top-k, append to Parquet), their size derived from
``resources.memory_gib``; training keeps a seeded sample of users within
``components.ranker.train_max_rows``. Batching changes nothing (tests/test_ranker_batches.py).

Writes ``recommendations.parquet`` (user, item, score, rank for every user), ``model.cbm``,
``feature_importance.csv/.png`` and ``metrics.json`` (training and candidate diagnostics;
the test metrics are ``evaluate``'s, the serving bundle is ``register``'s).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.arrays import pair_keys
from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import EVAL_PART, PreparedData, Stage
from encore.evaluation.evaluator import Evaluator, frame_from_lists, lists_from_frame
from encore.io import ParquetSink, write_json
from encore.outputs import GeneratorOutput, RankerOutput
from encore.pipeline.catalogue import enabled
from encore.pipeline.component import Context, Result
from encore.progress import Progress
from encore.ranking.features import FeatureTables, StageData, build_features, merge_candidates
from encore.ranking.model import (
    TrainedRanker,
    complete_from_list,
    complete_with_popular,
    select_training_rows,
    top_k,
    train_ranker,
)
from encore.ranking.segment_policy import FALLBACK, SEGMENTS, SegmentPolicy, choose_policy, cold_users
from encore.recommenders import recommender_class
from encore.resources import rows_per_batch

NAME = "ranker"
log = logging.getLogger(__name__)

BYTES_PER_CANDIDATE_ROW = 1024
"""Peak bytes one candidate row costs while its batch is featurised (float32 features plus the
float64 intermediates of one feature group), measured on Last.fm 2K and synthetic 1M."""


def ranker_generators(config: EncoreConfig) -> list[str]:
    """The instances whose candidates are merged: ``components.ranker.generators``, or every
    enabled instance with ``propose: true``."""
    instances = config.components.generators
    proposing = [name for name, section in instances.items() if section.propose]
    wanted = config.components.ranker.generators or proposing
    unknown = [g for g in wanted if g not in instances]
    if unknown:
        raise ConfigError(f"components.ranker.generators: unknown generator instance(s) {unknown}; "
                          f"known: {list(instances)}")
    silent = [g for g in wanted if not instances[g].propose]
    if silent:
        raise ConfigError(f"components.ranker.generators: {silent} have propose: false (features only); "
                          "set propose: true to merge their candidates")
    chosen = [g for g in wanted if enabled(config, g)]
    if not chosen:
        raise ConfigError("components.ranker.generators: no enabled generator to take candidates from")
    return chosen


def feature_instances(config: EncoreConfig) -> list[str]:
    """Enabled instances with ``propose: false``: their scores are features, they propose nothing."""
    return [name for name, section in config.components.generators.items()
            if not section.propose and enabled(config, name)]


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    names = [*ranker_generators(config), *feature_instances(config)]
    fallback = config.components.ranker.fallback
    return ["prepare", *names, *([fallback] if fallback and fallback not in names else [])]


@dataclass
class RankingStage:
    """What one stage's batches are built from: the stage's data and models (``data``, its
    ``candidates`` empty until a batch fills them), the stage-wide feature tables, and where
    each proposing instance's candidates come from."""

    stage: Stage
    data: StageData
    tables: FeatureTables
    outputs: dict[str, GeneratorOutput]
    relevant: sp.csr_matrix
    """The part the stage is labelled by (target for base, test for train), (n_users, n_items)."""
    from_files: bool
    """Candidates read from the instances' files; False without refit: the base-fit models
    propose for test users from their train history."""

    @classmethod
    def load(cls, config: EncoreConfig, ctx: Context, prepared: PreparedData, stage: Stage) -> RankingStage:
        ranker = config.components.ranker
        model_stage = stage if (stage == "base" or ranker.refit_generators) else "base"
        instances = config.components.generators
        names = [*ranker_generators(config), *feature_instances(config)]
        outputs = {name: GeneratorOutput(ctx.inputs[name]) for name in names}
        models = {name: outputs[name].model(model_stage, recommender_class(instances[name].kind)) for name in names}
        data = StageData(user_items=prepared.user_items(stage), item_features=prepared.item_features(stage),
                         models=models, candidates={}, social=prepared.social(),
                         timestamps=prepared.timestamps(stage))
        return cls(stage=stage, data=data, tables=FeatureTables(data, list(ranker.features), ranker.recent_days),
                   outputs={name: outputs[name] for name in ranker_generators(config)},
                   relevant=prepared.relevant(stage), from_files=model_stage == stage)

    def candidates(self, users: np.ndarray, per_generator: int) -> dict[str, pd.DataFrame]:
        """Each proposing instance's top ``per_generator`` candidates for the sorted ``users``."""
        if self.from_files:
            return {name: out.candidates(self.stage, max_rank=per_generator, users=users)
                    for name, out in self.outputs.items()}
        frames = {}
        for name in self.outputs:
            ids, scores = self.data.models[name].recommend(users, self.data.user_items, per_generator)
            frames[name] = frame_from_lists(users, ids, scores)
        return frames

    def rows_per_user(self, n_users: int, per_generator: int) -> np.ndarray:
        """Upper bound of each user's candidate rows (the lists' lengths before merging)."""
        if not self.from_files:
            return np.full(n_users, per_generator * len(self.outputs), dtype=np.int64)
        return sum((out.candidate_counts(self.stage, n_users, per_generator) for out in self.outputs.values()),
                   start=np.zeros(n_users, dtype=np.int64))


@dataclass
class Batch:
    """One batch of users' candidate pairs (sorted by user, then item), features and labels."""

    pairs: pd.DataFrame
    features: pd.DataFrame
    y: np.ndarray


def labelled_batch(stage: RankingStage, prepared: PreparedData, users: np.ndarray, per_generator: int) -> Batch:
    """Candidate pairs of ``users`` (sorted), their features, and labels from the stage's eval part."""
    candidates = stage.candidates(users, per_generator)
    data = replace(stage.data, candidates=candidates)
    pairs = merge_candidates(candidates, users)
    features = build_features(pairs, data, stage.tables)
    relevant = stage.relevant[users].tocoo()
    keys = pair_keys(pairs["user"].to_numpy(), pairs["item"].to_numpy(), prepared.n_items)
    y = np.isin(keys, pair_keys(users[relevant.row], relevant.col, prepared.n_items))
    return Batch(pairs=pairs, features=features, y=y.astype(np.int8))


def user_batches(users: np.ndarray, rows: np.ndarray, max_rows: int) -> Iterator[np.ndarray]:
    """Consecutive runs of the sorted ``users`` whose ``rows`` add up to at most ``max_rows``
    (a user with more rows than that is a batch of its own)."""
    if len(users) == 0:
        return
    ends = np.cumsum(rows[users])
    first = 0
    while first < len(users):
        limit = (ends[first - 1] if first else 0) + max_rows
        last = max(first + 1, int(np.searchsorted(ends, limit, side="right")))
        yield users[first:last]
        first = last


def training_users(users: np.ndarray, rows: np.ndarray, budget: int | None, seed: int) -> np.ndarray:
    """A seeded random sample of ``users`` whose candidate rows fit ``budget`` (all of them if
    they fit, or if there is no budget), sorted."""
    if budget is None or rows[users].sum() <= budget:
        return users
    order = np.random.default_rng(seed).permutation(users)
    fits = np.cumsum(rows[order]) <= budget
    return np.sort(order[fits])


def training_set(config: EncoreConfig, ctx: Context, prepared: PreparedData,
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, float]]:
    """The ranker's training rows (features, labels, users), built batch by batch from the
    base stage's candidates of (a budgeted sample of) the ranker-target users."""
    ranker = config.components.ranker
    seed = config.components.ranker.random_seed(config.experiment.seed)
    stage = RankingStage.load(config, ctx, prepared, "base")
    rows = stage.rows_per_user(prepared.n_users, ranker.candidates_per_generator)
    target_users = prepared.eval_users("base")
    users = training_users(target_users, rows, ranker.train_max_rows, seed)
    if len(users) < len(target_users):
        log.info("ranker: training on %d of %d target users (train_max_rows %d, seed %d)",
                 len(users), len(target_users), ranker.train_max_rows, seed)
    x, y, groups = [], [], []
    positives = 0
    batches = list(user_batches(users, rows, rows_per_batch(config.resources, BYTES_PER_CANDIDATE_ROW)))
    with Progress("ranker training features", len(users)) as shown:
        for batch_users in batches:
            batch = labelled_batch(stage, prepared, batch_users, ranker.candidates_per_generator)
            positives += int(batch.y.sum())
            row_users = batch.pairs["user"].to_numpy()
            keys = pair_keys(row_users, batch.pairs["item"].to_numpy(), prepared.n_items)
            keep = select_training_rows(row_users, keys, batch.y, ranker, seed)
            x.append(batch.features[keep])
            y.append(batch.y[keep])
            groups.append(row_users[keep])
            shown.advance(len(batch_users))
    target_in_sample = int(np.isin(prepared.part("target")["user"].to_numpy(), users).sum())
    row_users = np.concatenate(groups)
    trained_users = np.unique(row_users)
    info = {"train_sampled_users": float(len(users)), "train_target_users": float(len(target_users)),
            "train_batches": float(len(batches)),
            "train_cold_users": float(cold_users(prepared.user_items("base"), trained_users).sum()),
            "target_candidate_recall": positives / max(target_in_sample, 1)}
    return pd.concat(x, ignore_index=True), np.concatenate(y), row_users, info


def rank_users(trained: TrainedRanker, config: EncoreConfig, ctx: Context, prepared: PreparedData,
               sink: ParquetSink, *, stage: Stage = "train", users: np.ndarray | None = None,
               policy: SegmentPolicy | None = None) -> dict[str, float]:
    """Top-k lists for ``users`` (default: every user) from ``stage``'s candidates, batch by batch
    into ``sink``: the ranker's, or the fallback's where ``policy`` says so for the user's segment;
    completed with the fallback's list (when configured), then the stage's popular items, never
    with a seen item. Returns the candidate recall on the stage's eval part (test for train)."""
    ranker = config.components.ranker
    policy = policy or SegmentPolicy()
    fallback = config.components.ranker.fallback
    ranking = RankingStage.load(config, ctx, prepared, stage)
    rows = ranking.rows_per_user(prepared.n_users, ranker.candidates_per_generator)
    history = prepared.user_items(stage)
    popular = np.argsort(-prepared.item_listeners(stage), kind="stable")
    evaluated = np.zeros(prepared.n_users, dtype=bool)
    evaluated[prepared.eval_users(stage)] = True
    users = np.arange(prepared.n_users, dtype=np.int64) if users is None else users
    found, fallback_users = 0, 0
    batches = list(user_batches(users, rows, rows_per_batch(config.resources, BYTES_PER_CANDIDATE_ROW)))
    with Progress(f"ranker ranking ({stage})", len(users)) as shown:
        for batch_users in batches:
            batch = labelled_batch(ranking, prepared, batch_users, ranker.candidates_per_generator)
            pair_users = batch.pairs["user"].to_numpy()
            found += int(batch.y[evaluated[pair_users]].sum())
            recs = top_k(pair_users, batch.pairs["item"].to_numpy(), trained.score(batch.features), ranker.top_k)
            if fallback is not None:
                listed = GeneratorOutput(ctx.inputs[fallback]).candidates(stage, max_rank=ranker.top_k,
                                                                           users=batch_users)
                served = batch_users[policy.uses_fallback(cold_users(history, batch_users))]
                fallback_users += len(served)
                recs = pd.concat([recs[~np.isin(recs["user"].to_numpy(), served)],
                                  listed[np.isin(listed["user"].to_numpy(), served)]], ignore_index=True)
                recs = complete_from_list(recs, listed, prepared.n_items, ranker.top_k)
            seen = history[batch_users].tocoo()
            seen_keys = pair_keys(batch_users[seen.row], seen.col, prepared.n_items)
            sink.write(complete_with_popular(recs, batch_users, popular, seen_keys, prepared.n_items, ranker.top_k))
            shown.advance(len(batch_users))
    n_relevant = len(prepared.part(EVAL_PART[stage]))
    return {"candidate_recall": found / max(n_relevant, 1), "rank_batches": float(len(batches)),
            "fallback_users": float(fallback_users)}


def validated_policy(trained: TrainedRanker, config: EncoreConfig, ctx: Context, prepared: PreparedData,
                     users: np.ndarray, trained_cold_users: int, workdir: Path) -> SegmentPolicy:
    """Per segment, the ranker's or the fallback's base-stage lists for the held-out target
    ``users``, whichever scores the primary metric higher against their target items."""
    fallback = config.components.ranker.fallback
    assert fallback is not None
    primary = config.evaluation.primary_metric
    k = int(primary.partition("@")[2])
    with ParquetSink(workdir / ".validation.parquet") as sink:
        rank_users(trained, config, ctx, prepared, sink, stage="base", users=users)
    ranked = pd.read_parquet(workdir / ".validation.parquet")
    (workdir / ".validation.parquet").unlink()
    target = Evaluator(prepared, "base", (k,))
    rows = np.searchsorted(target.users, users)
    ranker_values = target.per_user(lists_from_frame(ranked, target.users, k), primary)[rows]
    listed = GeneratorOutput(ctx.inputs[fallback]).candidates("base", max_rank=k)
    fallback_values = target.per_user(lists_from_frame(listed, target.users, k), primary)[rows]
    policy = choose_policy(cold_users(prepared.user_items("base"), users), ranker_values, fallback_values,
                           trained_cold_users)
    for segment in SEGMENTS:
        log.info("ranker policy: %s users get the %s list (%s)", segment, policy.choice[segment],
                 policy.reason[segment])
    return policy


def run(config: EncoreConfig, ctx: Context) -> Result:
    ranker = config.components.ranker
    ks = tuple(config.evaluation.ks)
    if ranker.top_k < max(ks):
        raise ConfigError(f"components.ranker.top_k ({ranker.top_k}) must be at least the largest k ({max(ks)})")
    prepared = PreparedData(ctx.inputs["prepare"])
    out = RankerOutput(ctx.output)
    timings: dict[str, float] = {}

    seed = config.components.ranker.random_seed(config.experiment.seed)
    started = time.perf_counter()
    x, y, users, info = training_set(config, ctx, prepared)
    timings["features_train_seconds"] = time.perf_counter() - started
    policy, policy_info = SegmentPolicy(), {}
    if ranker.fallback is not None:
        # Choose per segment on held-out target users with a trial ranker trained on the same
        # rows minus theirs, then train the served ranker on every target user.
        started = time.perf_counter()
        targets = prepared.eval_users("base")
        rng = np.random.default_rng(seed)
        held_out = np.sort(rng.choice(targets, size=max(1, int(len(targets) * ranker.policy_fraction)),
                                      replace=False))
        trial_rows = ~np.isin(users, held_out)
        trial = train_ranker(x[trial_rows], y[trial_rows], users[trial_rows], ranker, seed=seed)
        trial_cold = int(cold_users(prepared.user_items("base"), np.unique(users[trial_rows])).sum())
        policy = validated_policy(trial, config, ctx, prepared, held_out, trial_cold, out.path)
        policy_info = policy.metrics() | {"policy_validation_users": float(len(held_out))}
        timings["policy_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    trained = train_ranker(x, y, users, ranker, seed=seed)
    timings["fit_seconds"] = time.perf_counter() - started
    del x, y, users
    trained.model.save_model(str(out.path / out.MODEL))
    if ranker.fallback and info["train_cold_users"] == 0 and policy.choice["cold"] != FALLBACK:
        # Never serve cold users scores from a model that saw none.
        policy = replace(policy, choice=policy.choice | {"cold": FALLBACK},
                         reason=policy.reason | {"cold": "the served ranker was trained on no cold user"})

    started = time.perf_counter()
    with ParquetSink(out.path / out.RECOMMENDATIONS) as sink:
        info |= rank_users(trained, config, ctx, prepared, sink, policy=policy)
    timings["rank_seconds"] = time.perf_counter() - started
    info |= policy_info

    importance = trained.importance()
    importance.to_csv(out.path / out.IMPORTANCE, index=False)
    _plot_importance(importance, out.path / out.IMPORTANCE_PLOT)
    results = info | timings | {
        "trees": float(trained.iterations), "train_rows": float(trained.n_rows),
        "train_users": float(trained.n_users), "train_positives": float(trained.n_positives),
        "n_features": float(len(trained.feature_names)),
    }
    if trained.validation_ndcg is not None:
        results["validation_ndcg@10"] = trained.validation_ndcg
    write_json(out.path / out.METRICS, results)
    write_json(out.path / out.POLICY, {"fallback": ranker.fallback, "choice": policy.choice,
                                       "reason": policy.reason, "validation": policy.validation})
    log.info("ranker: %d trees on %d rows of %d users, %d features; candidate recall on test %.3f",
             trained.iterations, trained.n_rows, trained.n_users, len(trained.feature_names),
             info["candidate_recall"])
    return Result(metrics=results, artifacts=[out.RECOMMENDATIONS, out.METRICS, out.POLICY, out.IMPORTANCE,
                                              out.IMPORTANCE_PLOT, out.MODEL],
                  tags={f"encore.policy.{segment}": policy.choice[segment] for segment in SEGMENTS})


def _plot_importance(importance: pd.DataFrame, path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    top = importance.head(30).iloc[::-1]
    figure = Figure(figsize=(7, max(3, 0.25 * len(top))))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.barh(top["feature"], top["importance"])
    axes.set_xlabel("CatBoost feature importance")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


if __name__ == "__main__":
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    sys.exit(component_main(NAME, description=__doc__ or ""))
