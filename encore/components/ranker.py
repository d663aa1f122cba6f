"""ranker: CatBoost over the merged candidates of every generator, with user/item features.

Protocol (docs/ranker.md, "Ranker"): generators fit on *base* propose candidates for the users
who have *target* items; those candidates, labelled by the target part and described by
features computed from base only, train the ranker. For test, the generators refit on
*train* = base + target (``refit_generators: true``, the default) propose candidates
again, features are computed from train, and the ranker orders them. Lists are completed
with popular items so every user gets ``top_k``; seen items are never recommended.

Generator instances with ``propose: false`` contribute features only: their saved models
score every candidate pair (``<instance>_score`` ...), they add no candidates.

The engine is :mod:`encore.ranking.stage`; this module composes it. Memory is bounded: both
stages run over batches of whole users (merge candidates, build
features, label or score, keep the top-k, append to Parquet), their size derived from
``resources.memory_gib``; training keeps a seeded sample of users within
``components.ranker.train_max_rows``. Batching changes nothing (tests/test_ranker_batches.py).

Writes ``recommendations.parquet`` (user, item, score, rank for every user), ``model.cbm``,
``feature_importance.csv/.png`` and ``metrics.json`` (its test metrics under the keys every
generator run has, training and candidate diagnostics; the comparisons are ``evaluate``'s, the
serving bundle is ``register``'s); and, only when rerank chooses on held-out target users
(``components.rerank.choose_on: heldout``), ``heldout_model*.cbm`` + ``heldout_users.npz``: the
trial rankers each trained without one held-out slice's rows, and who is in which slice.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import replace

import numpy as np

from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import PreparedData
from encore.evaluation import metrics
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.io import ParquetSink, write_json
from encore.outputs import RankerOutput
from encore.pipeline.component import Context, Result
from encore.ranking.model import train_ranker
from encore.ranking.segment_policy import FALLBACK, SEGMENTS, SegmentPolicy
from encore.ranking.stage import (
    HELD_OUT_MODEL,
    HELD_OUT_USERS,
    held_out_policy,
    held_out_ranker,
    held_out_users,
    rank_users,
    ranker_inputs,
    training_set,
    writes_held_out,
)

NAME = "ranker"
log = logging.getLogger(__name__)


def DEPENDS_ON(config: EncoreConfig) -> list[str]:
    return ranker_inputs(config)


def CONFIG_SECTIONS(config: EncoreConfig) -> tuple[str, ...]:
    """Beyond its own section: whether rerank asks for the trial model and held-out users, which
    the output then holds (its key changes with its content; nothing changes otherwise)."""
    if not writes_held_out(config):
        return ()
    slices = ("components.rerank.heldout_slices",) if config.components.rerank.heldout_slices != 1 else ()
    return ("components.rerank.enabled", "components.rerank.choose_on", *slices)


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
    x, y, users, info = training_set(config, ctx.inputs, prepared)
    timings["features_train_seconds"] = time.perf_counter() - started
    policy, policy_info = SegmentPolicy(), {}
    extra: list[str] = []
    if ranker.fallback is not None or writes_held_out(config):
        # One trial ranker without the held-out users: the policy's evidence and rerank's choice.
        started = time.perf_counter()
        slices = held_out_users(config, prepared, config.components.rerank.heldout_slices
                                if writes_held_out(config) else 1)
        held = held_out_ranker(config, prepared, x, y, users, slices[0])
        if ranker.fallback is not None:
            policy = held_out_policy(config, ctx.inputs, prepared, held, out.path)
            policy_info = policy.metrics() | {"policy_validation_users": float(len(held.users))}
        if writes_held_out(config):
            for n, users_out in enumerate(slices):
                if n:  # the first slice's model is the policy's, fitted above
                    held = held_out_ranker(config, prepared, x, y, users, users_out)
                extra.append(HELD_OUT_MODEL.format(slice=f"_{n}" if n else ""))
                held.model.model.save_model(str(out.path / extra[-1]))
            np.savez(out.path / HELD_OUT_USERS, users=np.concatenate(slices),
                     slice=np.repeat(np.arange(len(slices)), [len(s) for s in slices]))
            extra.append(HELD_OUT_USERS)
        timings["policy_seconds"] = time.perf_counter() - started
        del held

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
        if ranker.engine == "spark":
            # Merge, features and scoring on the executors; the same rows (docs/scaling.md).
            from encore.ranking.spark_stage import rank_users_spark  # pyspark only when asked for

            info |= rank_users_spark(trained, config, ctx.inputs, prepared, sink, out.path, policy=policy)
        else:
            info |= rank_users(trained, config, ctx.inputs, prepared, sink, policy=policy)
    timings["rank_seconds"] = time.perf_counter() - started
    info |= policy_info
    # The ranker's test figures under the keys every generator run has (ndcg_at_10 ...), so the runs
    # table and the compare view put it beside them; evaluate scores the same lists the same way.
    evaluator = Evaluator(prepared, "train", ks)
    test_scores = evaluator.evaluate(lists_from_frame(out.recommendations(), evaluator.users, max(ks)))

    importance = trained.importance()
    importance.to_csv(out.path / out.IMPORTANCE, index=False)
    metrics.plot_importance(importance, out.path / out.IMPORTANCE_PLOT)
    results = test_scores | info | timings | {
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
                                              out.IMPORTANCE_PLOT, out.MODEL, *extra],
                  tags={f"encore.policy.{segment}": policy.choice[segment] for segment in SEGMENTS})


if __name__ == "__main__":
    from encore.pipeline.cli import component_main  # the CLI is no part of what this component computes

    sys.exit(component_main(NAME, description=__doc__ or ""))
