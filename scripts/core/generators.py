"""What every candidate-generator component does, written once.

For each stage (``base``: fit on base, candidates for ranker-target users; ``train``: refit
on base + target, candidates for every user, scored on test) a generator component fits its
model, writes per-user top-N candidates and saves the model; from the ``train`` fit it also
writes the similar-items table and evaluates its lists on test.

Files written (Parquet): ``candidates_base``, ``candidates_train`` (user, item, score, rank),
``similar_items`` (item, similar_item, score, rank; when ``n_similar`` > 0); models ``model_base.npz`` /
``model_train.npz``; ``metrics.json`` and ``metrics_vs_k.png``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from scripts.core import metrics
from scripts.core.config import ConfigError, EncoreConfig, GeneratorConfig
from scripts.core.evaluation import Evaluator, frame_from_lists
from scripts.core.io import write_json, write_parquet
from scripts.core.prepared import STAGES, PreparedData, Stage
from scripts.core.recommenders import RECOMMENDERS, Recommender
from scripts.core.runner import Context, Result, component_main

log = logging.getLogger(__name__)

_SHARED_KEYS = set(GeneratorConfig.model_fields)


def generator_config(config: EncoreConfig, name: str) -> GeneratorConfig:
    return getattr(config.components, name)


def make_recommender(kind: str, section: GeneratorConfig, seed: int) -> Recommender:
    """A model of ``kind`` with the hyper-parameters of ``section`` and the experiment seed."""
    cls = RECOMMENDERS[kind]
    params = section.model_dump(exclude=_SHARED_KEYS)
    if "random_state" in inspect.signature(cls).parameters:
        params["random_state"] = seed
    return cls(**params)


def build_recommender(config: EncoreConfig, name: str) -> Recommender:
    """The model of generator ``name``."""
    return make_recommender(name, generator_config(config, name), config.experiment.seed)


def fit_recommender(model: Recommender, kind: str, prepared: PreparedData, stage: Stage) -> Recommender:
    """Fit a model of ``kind`` on what ``stage`` may see, with the side data it needs."""
    user_items = prepared.user_items(stage)
    if kind == "item2item":
        return model.fit(user_items, item_features=prepared.item_features(stage))
    if kind == "friends":
        social = prepared.social()
        if social is None:
            raise ConfigError(
                "components.friends.enabled: this dataset has no social links; set it to false"
            )
        return model.fit(user_items, social=social)
    if kind == "popular":
        return model.fit(user_items, timestamps=prepared.timestamps(stage))
    return model.fit(user_items)


def candidate_users(prepared: PreparedData, stage: Stage) -> np.ndarray:
    """Ranker-target users for the base fit; every user for the train fit (serving + test)."""
    if stage == "base":
        return prepared.eval_users("base")
    return np.arange(prepared.n_users, dtype=np.int64)


def load_model(name: str, path: Path) -> Recommender:
    return RECOMMENDERS[name].load(path)


def similar_items(model: Recommender, n_items: int, n_similar: int, batch_size: int) -> pd.DataFrame:
    """Every item's ``n_similar`` most similar items (item, similar_item, score, rank), in item batches."""
    frames = []
    for start in range(0, n_items, batch_size * 4):  # batches bound the dense (batch, n_items) blocks
        items = np.arange(start, min(start + batch_size * 4, n_items), dtype=np.int64)
        ids, scores = model.similar_items(items, n_similar)
        frames.append(frame_from_lists(items, ids, scores))
    return pd.concat(frames, ignore_index=True).rename(columns={"user": "item", "item": "similar_item"})


def run_generator(name: str, config: EncoreConfig, ctx: Context) -> Result:
    section = generator_config(config, name)
    ks = config.evaluation.ks
    if section.n_candidates < max(ks):
        raise ConfigError(
            f"components.{name}.n_candidates ({section.n_candidates}) must be at least the largest "
            f"evaluation k ({max(ks)})"
        )
    prepared = PreparedData(ctx.inputs["prepare"])
    out = ctx.output
    timings: dict[str, float] = {}
    extra: dict[str, float] = {}
    for stage in STAGES:
        model = build_recommender(config, name)
        started = time.perf_counter()
        fit_recommender(model, name, prepared, stage)
        timings[f"fit_{stage}_seconds"] = time.perf_counter() - started

        users = candidate_users(prepared, stage)
        started = time.perf_counter()
        ids, scores = model.recommend(users, prepared.user_items(stage), section.n_candidates,
                                      filter_already_liked_items=True, batch_size=section.batch_size)
        timings[f"recommend_{stage}_seconds"] = time.perf_counter() - started
        write_parquet(frame_from_lists(users, ids, scores), out / f"candidates_{stage}.parquet")
        model.save(out / f"model_{stage}.npz")
        if stage == "base":
            target = Evaluator(prepared, "base", tuple(ks))
            extra["target_candidate_recall"] = target.candidate_recall(ids[np.searchsorted(users, target.users)])
            continue

        if section.n_similar:
            started = time.perf_counter()
            write_parquet(similar_items(model, prepared.n_items, section.n_similar, section.batch_size),
                          out / "similar_items.parquet")
            timings["similar_items_seconds"] = time.perf_counter() - started

        test = Evaluator(prepared, "train", tuple(ks))
        lists = ids[test.users]
        scores_at_k = test.evaluate(lists[:, : max(ks)])
        extra["candidate_recall"] = test.candidate_recall(lists)
        if hasattr(model, "items_without_features_"):
            extra["items_without_features"] = float(np.size(model.items_without_features_))
    results = scores_at_k | extra | timings
    write_json(out / "metrics.json", results)
    metrics.plot_metric_vs_k({name: scores_at_k}, "ndcg", out / "metrics_vs_k.png")
    log.info("%s: ndcg@10 %.4f, candidate recall@%d %.3f on test",
             name, scores_at_k.get("ndcg@10", float("nan")), section.n_candidates, extra["candidate_recall"])
    artifacts = ["candidates_train.parquet", "metrics.json", "metrics_vs_k.png"]
    return Result(metrics=results, artifacts=[*artifacts, "similar_items.parquet"] if section.n_similar else artifacts)


def generator_component(name: str) -> tuple[str, tuple[str, ...], Callable[[EncoreConfig, Context], Result],
                                             Callable[[], int]]:
    """``NAME, DEPENDS_ON, run, main`` of a generator component module (they differ by name only)."""

    def run(config: EncoreConfig, ctx: Context) -> Result:
        return run_generator(name, config, ctx)

    def main() -> int:
        return component_main(name)

    return name, ("prepare",), run, main
