"""The ranking stage's engine: candidates merged from the generators, their features and
labels batch by batch, the training set, and ranked top-k lists (docs/ranker.md, "Ranker").

:func:`training_set` builds the ranker's training rows from the base stage; :func:`rank_users`
writes the top-k lists of a stage; :func:`held_out_policy` (with :func:`validated_policy`)
chooses, per segment, the ranker's or the fallback's lists on the users :func:`held_out_ranker`'s
trial model never trained on (which rerank may also choose its setting on). Each works over batches of whole
users (memory bounded by ``resources.memory_gib``); batching changes nothing
(tests/test_ranker_batches.py).

``inputs`` is where each upstream output lives, by component name (the runner's
``Context.inputs``): this module reads outputs, it knows nothing of the runner. The component
(:mod:`encore.components.ranker`) composes these calls and writes the outputs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.arrays import pair_keys
from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import EVAL_PART, PreparedData, Stage
from encore.evaluation.evaluator import Evaluator, frame_from_lists, lists_from_frame
from encore.io import ParquetSink
from encore.outputs import GeneratorOutput
from encore.progress import Progress
from encore.ranking.feature_groups import StageData, latest_timestamp
from encore.ranking.features import FeatureTables, build_features
from encore.ranking.model import (
    TrainedRanker,
    complete_from_list,
    complete_with_popular,
    select_training_rows,
    top_k,
    train_ranker,
)
from encore.ranking.segment_policy import SEGMENTS, SegmentPolicy, choose_policy, cold_users
from encore.recommenders import recommender_class
from encore.resources import rows_per_batch
from encore.threads import available_cores, map_in_order

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
    chosen = [g for g in wanted if instances[g].enabled]
    if not chosen:
        raise ConfigError("components.ranker.generators: no enabled generator to take candidates from")
    return chosen


def feature_instances(config: EncoreConfig) -> list[str]:
    """Enabled instances with ``propose: false``: their scores are features, they propose nothing."""
    return [name for name, section in config.components.generators.items()
            if not section.propose and section.enabled]


def ranker_inputs(config: EncoreConfig) -> list[str]:
    """The outputs the ranking stage reads: prepare, the proposing and feature-only instances,
    and the fallback."""
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
    def load(cls, config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
             stage: Stage) -> RankingStage:
        ranker = config.components.ranker
        model_stage = stage if (stage == "base" or ranker.refit_generators) else "base"
        instances = config.components.generators
        names = [*ranker_generators(config), *feature_instances(config)]
        outputs = {name: GeneratorOutput(inputs[name]) for name in names}
        models = {name: outputs[name].model(model_stage, recommender_class(instances[name].kind)) for name in names}
        timestamps = prepared.timestamps(stage)
        data = StageData(user_items=prepared.user_items(stage), item_features=prepared.item_features(stage),
                         models=models, candidates={}, social=prepared.social(), timestamps=timestamps,
                         now=latest_timestamp(timestamps), recent_days=ranker.recent_days,
                         item_release=prepared.item_release_seconds())
        return cls(stage=stage, data=data, tables=FeatureTables(data, list(ranker.features)),
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


def merge_candidates(candidates: Mapping[str, pd.DataFrame], users: np.ndarray) -> pd.DataFrame:
    """Union of every generator's (user, item) candidates for ``users``, sorted by user then item
    (the columns keep the lists' dtypes), from one sort of int64 pair keys."""
    frames = list(candidates.values())
    pair_users = np.concatenate([f["user"].to_numpy() for f in frames]) if frames else np.zeros(0, np.int64)
    pair_items = np.concatenate([f["item"].to_numpy() for f in frames]) if frames else np.zeros(0, np.int64)
    keep = np.isin(pair_users, users)
    width = int(pair_items.max(initial=-1)) + 1
    keys = np.sort(pair_keys(pair_users[keep], pair_items[keep], width))
    keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys  # sorted unique: np.unique hashes first
    return pd.DataFrame({"user": (keys // max(width, 1)).astype(pair_users.dtype),
                         "item": (keys % max(width, 1)).astype(pair_items.dtype)})


def labelled_batch(stage: RankingStage, prepared: PreparedData, users: np.ndarray, per_generator: int) -> Batch:
    """Candidate pairs of ``users`` (sorted), their features, and labels from the stage's eval part."""
    candidates = stage.candidates(users, per_generator)
    data = replace(stage.data, candidates=candidates)
    pairs = merge_candidates(candidates, users)
    # A batch of users without candidates (no history in the stage) has no features to build.
    features = build_features(pairs, data, stage.tables) if len(pairs) else pd.DataFrame(index=pairs.index)
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


def training_set(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
                 ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray, dict[str, float]]:
    """The ranker's training rows (features, labels, users), built batch by batch from the
    base stage's candidates of (a budgeted sample of) the ranker-target users."""
    ranker = config.components.ranker
    seed = config.components.ranker.random_seed(config.experiment.seed)
    stage = RankingStage.load(config, inputs, prepared, "base")
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


def with_item_names(recs: pd.DataFrame, raw_ids: np.ndarray, names: np.ndarray) -> pd.DataFrame:
    """``recs`` (``item`` = item index) with the item's raw id and display name beside it, so
    ``recommendations.parquet`` reads by artist name; a take per batch, after the ranking."""
    items = recs["item"].to_numpy()
    return recs.assign(item_id=raw_ids[items], name=names[items])


def rank_users(trained: TrainedRanker, config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
               sink: ParquetSink, *, stage: Stage = "train", users: np.ndarray | None = None,
               policy: SegmentPolicy | None = None) -> dict[str, float]:
    """Top-k lists for ``users`` (default: every user) from ``stage``'s candidates, batch by batch
    into ``sink``: the ranker's, or the fallback's where ``policy`` says so for the user's segment;
    completed with the fallback's list (when configured), then the stage's popular items, never
    with a seen item. Returns the candidate recall on the stage's eval part (test for train)."""
    ranker = config.components.ranker
    policy = policy or SegmentPolicy()
    fallback = config.components.ranker.fallback
    ranking = RankingStage.load(config, inputs, prepared, stage)
    rows = ranking.rows_per_user(prepared.n_users, ranker.candidates_per_generator)
    history = prepared.user_items(stage)
    popular = np.argsort(-prepared.item_listeners(stage), kind="stable")
    evaluated = np.zeros(prepared.n_users, dtype=bool)
    evaluated[prepared.eval_users(stage)] = True
    users = np.arange(prepared.n_users, dtype=np.int64) if users is None else users
    raw_ids, names = prepared.items["raw_id"].astype(str).to_numpy(), prepared.items["name"].astype(str).to_numpy()

    def ranked(batch_users: np.ndarray) -> tuple[pd.DataFrame, int, int]:
        """One batch's final lists, its candidates' hits on the eval part, and its fallback users."""
        batch = labelled_batch(ranking, prepared, batch_users, ranker.candidates_per_generator)
        pair_users = batch.pairs["user"].to_numpy()
        found = int(batch.y[evaluated[pair_users]].sum())
        scores = trained.score(batch.features) if len(pair_users) else np.zeros(0, dtype=np.float32)
        recs = top_k(pair_users, batch.pairs["item"].to_numpy(), scores, ranker.top_k)
        served = batch_users[:0]
        if fallback is not None:
            listed = GeneratorOutput(inputs[fallback]).candidates(stage, max_rank=ranker.top_k, users=batch_users)
            served = batch_users[policy.uses_fallback(cold_users(history, batch_users))]
            recs = pd.concat([recs[~np.isin(recs["user"].to_numpy(), served)],
                              listed[np.isin(listed["user"].to_numpy(), served)]], ignore_index=True)
            recs = complete_from_list(recs, listed, prepared.n_items, ranker.top_k)
        seen = history[batch_users].tocoo()
        seen_keys = pair_keys(batch_users[seen.row], seen.col, prepared.n_items)
        recs = complete_with_popular(recs, batch_users, popular, seen_keys, prepared.n_items, ranker.top_k)
        return with_item_names(recs, raw_ids, names), found, len(served)

    # Batches on every core (numpy, scipy and CatBoost release the GIL), each of 1/threads of
    # the budget's rows so that the batches in flight hold what one batch did; their lists are
    # written in batch order, so the file does not depend on the thread count.
    threads = available_cores()
    batches = list(user_batches(users, rows, max(1, rows_per_batch(config.resources, BYTES_PER_CANDIDATE_ROW)
                                                 // threads)))
    found, fallback_users = 0, 0
    with Progress(f"ranker ranking ({stage})", len(users)) as shown:
        for batch_users, (recs, batch_found, batch_fallback) in zip(
                batches, map_in_order(ranked, batches, threads), strict=True):
            sink.write(recs)
            found += batch_found
            fallback_users += batch_fallback
            shown.advance(len(batch_users))
    n_relevant = len(prepared.part(EVAL_PART[stage]))
    return {"candidate_recall": found / max(n_relevant, 1), "rank_batches": float(len(batches)),
            "fallback_users": float(fallback_users)}


def validated_policy(trained: TrainedRanker, config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData,
                     users: np.ndarray, trained_cold_users: int, workdir: Path) -> SegmentPolicy:
    """Per segment, the ranker's or the fallback's base-stage lists for the held-out target
    ``users``, whichever scores the primary metric higher against their target items."""
    fallback = config.components.ranker.fallback
    assert fallback is not None
    primary = config.evaluation.primary_metric
    k = int(primary.partition("@")[2])
    with ParquetSink(workdir / ".validation.parquet") as sink:
        rank_users(trained, config, inputs, prepared, sink, stage="base", users=users)
    ranked = pd.read_parquet(workdir / ".validation.parquet")
    (workdir / ".validation.parquet").unlink()
    target = Evaluator(prepared, "base", (k,))
    rows = np.searchsorted(target.users, users)
    ranker_values = target.per_user(lists_from_frame(ranked, target.users, k), primary)[rows]
    listed = GeneratorOutput(inputs[fallback]).candidates("base", max_rank=k)
    fallback_values = target.per_user(lists_from_frame(listed, target.users, k), primary)[rows]
    policy = choose_policy(cold_users(prepared.user_items("base"), users), ranker_values, fallback_values,
                           trained_cold_users)
    for segment in SEGMENTS:
        log.info("ranker policy: %s users get the %s list (%s)", segment, policy.choice[segment],
                 policy.reason[segment])
    return policy


HELD_OUT_MODEL = "heldout_model{slice}.cbm"
"""A trial ranker (trained without one held-out slice of target users) in the ranker's output,
``{slice}`` empty for the first slice (the segment policy's) and ``_<n>`` for the others; written
only when ``components.rerank`` chooses its setting on held-out users (:func:`writes_held_out`)."""
HELD_OUT_USERS = "heldout_users.npz"
"""The held-out users beside the trial models: ``users`` (sorted) and ``slice`` (whose model scores each)."""


def writes_held_out(config: EncoreConfig) -> bool:
    """Whether the ranker saves its trial models and held-out users: only when an enabled rerank
    chooses on them (``components.rerank.choose_on: heldout``), so no other output changes."""
    own = config.components.rerank
    return own.enabled and own.choose_on == "heldout"


def held_out_users(config: EncoreConfig, prepared: PreparedData, slices: int = 1) -> list[np.ndarray]:
    """``slices`` disjoint seeded slices (each sorted) of the ranker-target users, each a
    ``policy_fraction`` of them, that a trial ranker is trained without. The first is the segment
    policy's (the same draw whatever ``slices``); the others split the remaining users in order of
    a seeded permutation, the last one also taking a remainder smaller than a slice (with
    ``slices = ceil(1 / policy_fraction)`` every target user is held out once: cross-fitting)."""
    ranker = config.components.ranker
    targets = prepared.eval_users("base")
    rng = np.random.default_rng(ranker.random_seed(config.experiment.seed))
    size = max(1, int(len(targets) * ranker.policy_fraction))
    first = np.sort(rng.choice(targets, size=size, replace=False))
    if slices == 1:
        return [first]
    rest = rng.permutation(np.setdiff1d(targets, first))
    chunks = [rest[n * size:(n + 1) * size] for n in range(slices - 1)]
    if len(rest) - (slices - 1) * size < size:
        chunks[-1] = rest[(slices - 2) * size:]
    if any(len(chunk) == 0 for chunk in chunks):
        raise ConfigError(f"components.rerank.heldout_slices: {slices} slices of {size} users "
                          f"(components.ranker.policy_fraction) exceed the {len(targets)} target users")
    return [first, *(np.sort(chunk) for chunk in chunks)]


@dataclass
class HeldOut:
    """A trial ranker trained on the ranker's training rows less the held-out users' rows."""

    model: TrainedRanker
    users: np.ndarray
    """The held-out target users (sorted): none of their rows is in the model's training set."""
    trained_cold_users: int
    """Cold users among those the trial ranker trained on."""


def held_out_ranker(config: EncoreConfig, prepared: PreparedData, x: pd.DataFrame, y: np.ndarray,
                    users: np.ndarray, held_out: np.ndarray) -> HeldOut:
    """A trial ranker: the served ranker's training rows (``x``, ``y``, per-row ``users``) less
    every row of the ``held_out`` users (a slice of :func:`held_out_users`), fitted with the
    served ranker's settings and seed."""
    ranker = config.components.ranker
    trial_rows = ~np.isin(users, held_out)
    trial = train_ranker(x[trial_rows], y[trial_rows], users[trial_rows], ranker,
                         seed=ranker.random_seed(config.experiment.seed))
    trial_cold = int(cold_users(prepared.user_items("base"), np.unique(users[trial_rows])).sum())
    return HeldOut(model=trial, users=held_out, trained_cold_users=trial_cold)


def held_out_policy(config: EncoreConfig, inputs: Mapping[str, Path], prepared: PreparedData, held: HeldOut,
                    workdir: Path) -> SegmentPolicy:
    """The segment policy chosen on the held-out users by the trial ranker (:func:`held_out_ranker`;
    the served ranker then trains on every target user)."""
    return validated_policy(held.model, config, inputs, prepared, held.users, held.trained_cold_users, workdir)
