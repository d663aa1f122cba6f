"""Building, fitting and querying the recommender of a generator instance, written once.

Used by the generator template (:mod:`encore.components.generator`), the ranker and the
benchmarks. Which side data a model fits on comes from its kind's declaration
(``Recommender.side_data``), never from its name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd

from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import STAGE_PARTS, PreparedData, Stage
from encore.evaluation.evaluator import Evaluator, frame_from_lists
from encore.progress import Progress, batches
from encore.recommenders import (
    GeneratorConfig,
    ModelOutputError,
    Recommender,
    SettingUnfit,
    SideDataMissing,
    recommender_class,
)
from encore.recommenders.base import check_lists


def build_recommender(config: EncoreConfig, name: str) -> Recommender:
    """The (unfitted) model of generator instance ``name``, seeded with the experiment seed."""
    section = config.components.generator(name)
    return make_recommender(section, config.experiment.seed)


def make_recommender(section: GeneratorConfig, seed: int) -> Recommender:
    """A model of ``section.kind`` with the hyper-parameters of ``section``."""
    return recommender_class(section.kind).from_config(section, seed)


def _side_data_error(name: str, problem: object, prepared: PreparedData) -> ConfigError:
    # "this dataset" becomes its name (e.g. sasrec on a dataset without timestamps).
    dataset = prepared.summary.get("dataset")
    message = str(problem).replace("this dataset", f"dataset '{dataset}'") if dataset else str(problem)
    return ConfigError(f"components.{name}: {message}; set components.{name}.enabled: false")


def side_data_error(config: EncoreConfig, prepared: PreparedData,
                    names: Iterable[str]) -> tuple[str, ConfigError] | None:
    """The first generator in ``names`` that cannot fit on this data's side data (no item
    features, no social graph…) with its error, or None. Asked before the first generator runs,
    so a data set that lacks what a configured kind needs stops before any model is fitted."""
    view = prepared.stage_view("base")
    for name in names:
        problem = recommender_class(config.components.generator(name).kind).side_data_problem(view)
        if problem is not None:
            return name, _side_data_error(name, problem, prepared)
    return None


def fit_recommender(model: Recommender, prepared: PreparedData, stage: Stage, *, name: str) -> Recommender:
    """Fit ``model`` on what ``stage`` may see; missing side data, or a setting that leaves the
    model nothing to fit on this data, is a config error naming the instance (and the key)."""
    try:
        return model.fit_stage(prepared.stage_view(stage))
    except SideDataMissing as exc:
        raise _side_data_error(name, exc, prepared) from None
    except SettingUnfit as exc:
        raise ConfigError(f"components.{name}.{exc.key}: {exc}") from None


@contextmanager
def _naming(model: Recommender, name: str | None) -> Iterator[None]:
    """A model's wrong output (:class:`ModelOutputError`) named by its instance and kind."""
    try:
        yield
    except ModelOutputError as exc:
        if name is None:
            raise
        raise ModelOutputError(f"components.{name} (kind '{model.name}'): {exc}") from None


def recommend_batches(model: Recommender, prepared: PreparedData, stage: Stage, users: np.ndarray, n: int,
                      batch_size: int, label: str, *, name: str | None = None
                      ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Top-``n`` of ``users`` (sorted ids) against ``stage``'s history, already-played items
    filtered, ``batch_size`` users at a time with progress: ``(start, stop, ids, scores)`` per batch.

    What the model returns is checked (shape, dtype, ids in range, no NaN scores): a wrong
    output is a :class:`ModelOutputError` naming the class, and instance ``name`` if given."""
    on_executors = getattr(model, "stage_recommend_batches", None)  # als_spark: top-N in Spark tasks
    blocks = on_executors(users, tuple(prepared.path / f"{part}.parquet" for part in STAGE_PARTS[stage]), n) \
        if on_executors is not None else None
    if blocks is not None:
        with Progress(label, len(users), unit="users") as progress:
            for start, stop, ids, scores in blocks:
                with _naming(model, name):
                    ids, scores = check_lists(model, "recommend", ids, scores, stop - start, n)
                yield start, stop, ids, scores
                progress.advance(stop - start)
        return
    user_items = prepared.user_items(stage)
    for start, stop in batches(len(users), batch_size, label):
        with _naming(model, name):
            ids, scores = check_lists(model, "recommend", *model.recommend(
                users[start:stop], user_items, n, filter_already_liked_items=True, batch_size=batch_size),
                stop - start, n)
        yield start, stop, ids, scores


def candidate_users(prepared: PreparedData, stage: Stage, *, propose: bool = True) -> np.ndarray:
    """Whose candidates a stage writes (sorted ids).

    Base fit: the ranker-target users (the ranker trains on them). Train fit: every user
    (the ranker's test lists and serving) for a proposing instance; only the test users for a
    feature-only one (``propose: false``), whose lists only evaluate reads. A feature-only
    instance writes no base candidates at all (the ranker reads only its models).
    """
    if stage == "base":
        return prepared.eval_users("base")
    if not propose:
        return prepared.eval_users("train")
    return np.arange(prepared.n_users, dtype=np.int64)


def similar_item_batches(model: Recommender, n_items: int, n_similar: int, batch_size: int, *,
                         label: str = "similar items", name: str | None = None) -> Iterator[pd.DataFrame]:
    """Every item's ``n_similar`` most similar items (item, similar_item, score, rank), one
    frame per batch of items (batches bound the dense ``(batch, n_items)`` blocks), with progress;
    what the model returns is checked as in :func:`recommend_batches`."""
    on_executors = getattr(model, "stage_similar_item_batches", None)  # als_spark: in Spark tasks
    blocks = on_executors(n_similar) if on_executors is not None else None
    if blocks is not None:
        for start, stop, ids, scores in blocks:
            with _naming(model, name):
                ids, scores = check_lists(model, "similar_items", ids, scores, stop - start, n_similar)
            items = np.arange(start, stop, dtype=np.int64)
            yield frame_from_lists(items, ids, scores).rename(columns={"user": "item", "item": "similar_item"})
        return
    for start, stop in batches(n_items, batch_size * 4, label, unit="items"):
        items = np.arange(start, stop, dtype=np.int64)
        with _naming(model, name):
            ids, scores = check_lists(model, "similar_items", *model.similar_items(items, n_similar),
                                      stop - start, n_similar)
        yield frame_from_lists(items, ids, scores).rename(columns={"user": "item", "item": "similar_item"})


def similar_items(model: Recommender, n_items: int, n_similar: int, batch_size: int) -> pd.DataFrame:
    """Every item's ``n_similar`` most similar items (item, similar_item, score, rank) in one frame."""
    frames = list(similar_item_batches(model, n_items, n_similar, batch_size))
    return pd.concat(frames, ignore_index=True) if frames else frame_from_lists(
        np.empty(0, np.int64), np.empty((0, n_similar), np.int64), np.empty((0, n_similar), np.float32)
    ).rename(columns={"user": "item", "item": "similar_item"})


def target_lists(model: Recommender, prepared: PreparedData, users: np.ndarray, k: int, batch_size: int,
                 label: str) -> np.ndarray:
    """``(len(users), k)`` top-``k`` ids of a model fit on ``base``: the lists a ranker-target
    score is computed from (``tune``'s trials, a neural kind's early stopping). Test never enters."""
    lists = np.full((len(users), k), -1, dtype=np.int64)
    for start, stop, ids, _ in recommend_batches(model, prepared, "base", users, k, batch_size, label):
        lists[start:stop] = ids
    return lists


def target_scorer(prepared: PreparedData, evaluator: Evaluator, metric: str, segment: str, batch_size: int,
                  label: str, on_score: Callable[[int, float], None] | None = None
                  ) -> Callable[[Recommender], float]:
    """``f(model) -> metric`` of a base-fit model's lists over the ranker-target users of ``segment``:
    a neural kind's ``epoch_scorer`` (early stopping on the target part, never test). ``on_score(epoch,
    score)`` sees every epoch's score (``tune`` reports them to Optuna, which may prune the trial)."""
    k = max(evaluator.ks)
    epoch = 0

    def score(model: Recommender) -> float:
        nonlocal epoch
        epoch += 1
        value = evaluator.evaluate(target_lists(model, prepared, evaluator.users, k, batch_size,
                                                f"{label} epoch {epoch}"), segment)[metric]
        if on_score is not None:
            on_score(epoch, value)
        return value

    return score
