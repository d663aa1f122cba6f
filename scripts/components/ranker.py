"""ranker: CatBoost over the merged candidates of every generator, with user/item features.

Protocol (README, "Ranker"): generators fit on *base* propose candidates for the users
who have *target* items; those candidates, labelled by the target part and described by
features computed from base only, train the ranker. For test, the generators refit on
*train* = base + target (``refit_generators: true``, the default) propose candidates
again, features are computed from train, and the ranker orders them. Lists are completed
with popular items so every user gets ``top_k``; seen items are never recommended.

Generator instances with ``propose: false`` contribute features only: their saved models
score every candidate pair (``<instance>_score`` ...), they add no candidates.

Writes ``recommendations.parquet`` (user, item, score, rank for every user),
``model.cbm``, ``feature_importance.csv/.png``, ``metrics.json`` and ``bundle/`` (the
serving bundle: raw ids, popularity fallback, similar items).
"""

from __future__ import annotations

import logging
import sys
import time

import numpy as np
import pandas as pd

from scripts.core import metrics, serving_model
from scripts.core.arrays import pair_keys
from scripts.core.config import ConfigError, EncoreConfig
from scripts.core.evaluation import Evaluator, frame_from_lists, lists_from_frame
from scripts.core.features import StageData, build_features, merge_candidates
from scripts.core.io import write_json, write_parquet
from scripts.core.outputs import GeneratorOutput, RankerOutput
from scripts.core.prepared import EVAL_PART, PreparedData, Stage
from scripts.core.ranker import TrainedRanker, complete_with_popular, top_k, train_ranker
from scripts.core.recommenders import recommender_class
from scripts.pipeline.component import Context, Result
from scripts.pipeline.runner import component_main, enabled, generator_names

NAME = "ranker"
log = logging.getLogger(__name__)


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
    return ["prepare", *ranker_generators(config), *feature_instances(config)]


def stage_data(config: EncoreConfig, ctx: Context, prepared: PreparedData, stage: Stage,
               users: np.ndarray) -> StageData:
    """Models, candidates and side data for ``stage``; without refit, base models serve test."""
    ranker = config.components.ranker
    model_stage = stage if (stage == "base" or ranker.refit_generators) else "base"
    user_items = prepared.user_items(stage)
    models, candidates = {}, {}
    instances = config.components.generators
    for name in [*ranker_generators(config), *feature_instances(config)]:
        output = GeneratorOutput(ctx.inputs[name])
        models[name] = output.model(model_stage, recommender_class(instances[name].kind))
        if not instances[name].propose:
            continue
        if model_stage == stage:
            frame = output.candidates(stage, max_rank=ranker.candidates_per_generator)
        else:  # no refit: the base-fit models propose for test users from their train history
            ids, scores = models[name].recommend(users, user_items, ranker.candidates_per_generator)
            frame = frame_from_lists(users, ids, scores)
        candidates[name] = frame
    return StageData(user_items=user_items, item_features=prepared.item_features(stage), models=models,
                     candidates=candidates, social=prepared.social(), timestamps=prepared.timestamps(stage))


def labelled_candidates(data: StageData, prepared: PreparedData, stage: Stage, users: np.ndarray,
                        groups: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Candidate pairs of ``users``, their features, and labels from the stage's eval part."""
    pairs = merge_candidates(data.candidates, users)
    features = build_features(pairs, data, groups)
    relevant = prepared.part(EVAL_PART[stage])
    keys = pair_keys(pairs["user"].to_numpy(), pairs["item"].to_numpy(), prepared.n_items)
    y = np.isin(keys, pair_keys(relevant["user"].to_numpy(), relevant["item"].to_numpy(), prepared.n_items))
    return pairs, features, y.astype(np.int8)


def recommend(trained: TrainedRanker, pairs: pd.DataFrame, features: pd.DataFrame, prepared: PreparedData,
              users: np.ndarray, k: int) -> pd.DataFrame:
    """Ranker top-k for ``users``, completed with train-popular items they have not seen."""
    recs = top_k(pairs["user"].to_numpy(), pairs["item"].to_numpy(), trained.score(features), k)
    train = prepared.user_items("train")
    popular = np.argsort(-prepared.item_listeners("train"), kind="stable")
    coo = train.tocoo()
    seen = pair_keys(coo.row, coo.col, prepared.n_items)
    return complete_with_popular(recs, users, popular, seen, prepared.n_items, k)


def write_bundle(config: EncoreConfig, ctx: Context, prepared: PreparedData, recs: pd.DataFrame) -> None:
    """The serving bundle (:mod:`scripts.core.serving_model`): lists, popularity, similar items."""
    item_raw = prepared.items["raw_id"].to_numpy()
    listeners = prepared.item_listeners("train")
    order = np.argsort(-listeners, kind="stable")[: max(config.components.ranker.top_k * 4, 200)]
    tables = {name: GeneratorOutput(ctx.inputs[name]) for name in generator_names(config)
              if name in ctx.inputs and GeneratorOutput(ctx.inputs[name]).has_similar_items}
    if not tables:
        raise ConfigError("components.*.n_similar: no generator wrote a similar-items table to serve")
    source = config.components.ranker.similar_items_from
    if source not in tables:
        source = next(iter(tables))
        log.warning("components.ranker.similar_items_from: no table from that generator; serving %s's", source)
    similar = tables[source].similar_items()
    serving_model.write_bundle(
        RankerOutput(ctx.output).bundle,
        recommendations=pd.DataFrame({"user_id": prepared.users["raw_id"].to_numpy()[recs["user"]],
                                      "item_id": item_raw[recs["item"]], "rank": recs["rank"],
                                      "score": recs["score"].fillna(0.0).astype(np.float64)}),
        popular=pd.DataFrame({"item_id": item_raw[order], "score": listeners[order].astype(np.float64)}),
        similar_items=pd.DataFrame({"item_id": item_raw[similar["item"]],
                                    "similar_item_id": item_raw[similar["similar_item"]],
                                    "score": similar["score"].astype(np.float64), "rank": similar["rank"]}),
        items=pd.DataFrame({"item_id": item_raw, "name": prepared.items["name"].to_numpy()}),
    )
    write_json(RankerOutput(ctx.output).bundle / "info.json", {"similar_items_from": source})


def run(config: EncoreConfig, ctx: Context) -> Result:
    ranker = config.components.ranker
    ks = tuple(config.evaluation.ks)
    if ranker.top_k < max(ks):
        raise ConfigError(f"components.ranker.top_k ({ranker.top_k}) must be at least the largest k ({max(ks)})")
    prepared = PreparedData(ctx.inputs["prepare"])
    seed = config.experiment.seed
    timings: dict[str, float] = {}

    groups = list(ranker.features)
    started = time.perf_counter()
    train_users = prepared.eval_users("base")
    data = stage_data(config, ctx, prepared, "base", train_users)
    pairs, features, y = labelled_candidates(data, prepared, "base", train_users, groups)
    timings["features_train_seconds"] = time.perf_counter() - started
    target_recall = float(y.sum() / len(prepared.part("target")))

    started = time.perf_counter()
    trained = train_ranker(features, y, pairs["user"].to_numpy(), ranker, seed=seed)
    timings["fit_seconds"] = time.perf_counter() - started
    trained.model.save_model(str(ctx.output / RankerOutput.MODEL))

    started = time.perf_counter()
    all_users = np.arange(prepared.n_users, dtype=np.int64)
    data = stage_data(config, ctx, prepared, "train", all_users)
    pairs, features, y_test = labelled_candidates(data, prepared, "train", all_users, groups)
    timings["features_test_seconds"] = time.perf_counter() - started
    started = time.perf_counter()
    recs = recommend(trained, pairs, features, prepared, all_users, ranker.top_k)
    timings["predict_seconds"] = time.perf_counter() - started
    write_parquet(recs, ctx.output / RankerOutput.RECOMMENDATIONS)

    test = Evaluator(prepared, "train", ks)
    scores = test.evaluate(lists_from_frame(recs, test.users, max(ks)))
    test_pairs = np.isin(pairs["user"].to_numpy(), test.users)
    candidate_recall = float(y_test[test_pairs].sum() / len(prepared.part("test")))

    importance = trained.importance()
    importance.to_csv(ctx.output / RankerOutput.IMPORTANCE, index=False)
    _plot_importance(importance, ctx.output / RankerOutput.IMPORTANCE_PLOT)
    metrics.plot_metric_vs_k({"ranker": scores}, "ndcg", ctx.output / RankerOutput.PLOT)
    write_bundle(config, ctx, prepared, recs)
    results = scores | timings | {
        "candidate_recall": candidate_recall, "target_candidate_recall": target_recall,
        "trees": float(trained.iterations), "train_rows": float(trained.n_rows),
        "train_users": float(trained.n_users), "train_positives": float(trained.n_positives),
        "n_features": float(len(trained.feature_names)),
    }
    if trained.validation_ndcg is not None:
        results["validation_ndcg@10"] = trained.validation_ndcg
    write_json(ctx.output / RankerOutput.METRICS, results)
    log.info("ranker: ndcg@10 %.4f on test (%d trees, %d features, candidate recall %.3f)",
             scores["ndcg@10"], trained.iterations, len(trained.feature_names), candidate_recall)
    return Result(
        metrics=results,
        artifacts=[RankerOutput.RECOMMENDATIONS, RankerOutput.METRICS, RankerOutput.PLOT, RankerOutput.IMPORTANCE,
                   RankerOutput.IMPORTANCE_PLOT, RankerOutput.MODEL],
    )


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
    sys.exit(component_main(NAME, description=__doc__ or ""))
