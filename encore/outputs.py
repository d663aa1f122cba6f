"""Typed access to the output folders of generator instances, the ranker and evaluate.

The one place that spells these components' file names (as :mod:`encore.data.prepared` is
for ``prepare``): a component reads another's output through these classes, never by file
name, and never by importing the other component.

Generator instance folder (``<instance>-<fingerprint>/``)::

    candidates_base.parquet, candidates_train.parquet   user, item, score, rank
    similar_items.parquet    item, similar_item, score, rank     [when n_similar > 0]
    model_base.npz, model_train.npz                      the fitted recommender of each stage that a
                                                         later component reads (deflated .npz)
    metrics.json, metrics_vs_k.png                       test metrics of the train fit

Ranker folder: ``recommendations.parquet`` (user, item, score, rank, item_id, name), ``model.cbm``,
``feature_importance.csv/.png``, ``metrics.json`` (training and candidate diagnostics),
``policy.json`` (which segment gets the ranker's or the fallback's list, and why).
Rerank folder: ``recommendations.parquet``, ``tradeoff.csv/.png`` (the grid on the ranker-target
part), ``chosen.json``, ``significance.json`` (test, chosen vs the ranker), ``item_side.npz`` and
``serving.json`` (what the serving model re-ranks with).
Evaluate folder: ``comparison.csv/.md``, ``comparison_segments.csv/.md``, ``significance.json``,
``per_user.parquet`` (with each user's ``segment``).
Tune folder: ``trials.csv``, ``chosen.json``, ``tuning.md``.
Folds folder (rolling-origin runs): ``per_user_folds.parquet``, ``folds.csv/.md``,
``pooled_significance.json``.
Register folder: ``bundle/`` (serving tables), ``per_user_metric.parquet``, ``registered.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from encore.data.prepared import Stage
from encore.io import ParquetSink, read_json, write_json, write_parquet
from encore.recommenders.base import Recommender


@dataclass(frozen=True)
class GeneratorOutput:
    """One generator instance's output folder."""

    path: Path

    METRICS = "metrics.json"
    PLOT = "metrics_vs_k.png"
    SIMILAR = "similar_items.parquet"

    @staticmethod
    def candidates_file(stage: Stage) -> str:
        return f"candidates_{stage}.parquet"

    @staticmethod
    def model_file(stage: Stage) -> str:
        return f"model_{stage}.npz"

    # -- writing (the generator template) ------------------------------------------------
    def write_candidates(self, stage: Stage, frame: pd.DataFrame) -> None:
        write_parquet(frame, self.path / self.candidates_file(stage))

    def candidates_writer(self, stage: Stage) -> ParquetSink:
        """Write ``stage``'s candidates batch by batch (``with ... as write: write(frame)``)."""
        return _ranked_pairs_sink(self.path / self.candidates_file(stage), ("user", "item", "score", "rank"))

    def similar_items_writer(self) -> ParquetSink:
        """Write the similar-items table (item, similar_item, score, rank) batch by batch."""
        return _ranked_pairs_sink(self.path / self.SIMILAR, ("item", "similar_item", "score", "rank"))

    def write_model(self, stage: Stage, model: Recommender) -> None:
        model.save(self.path / self.model_file(stage))

    def write_similar_items(self, frame: pd.DataFrame) -> None:
        write_parquet(frame, self.path / self.SIMILAR)

    def write_metrics(self, values: dict[str, float]) -> None:
        write_json(self.path / self.METRICS, values)

    # -- reading (ranker, evaluate, benchmarks) --------------------------------------------
    def candidates(self, stage: Stage, max_rank: int | None = None,
                   users: np.ndarray | None = None) -> pd.DataFrame:
        """``(user, item, score, rank)`` of ``stage``, optionally only ranks <= ``max_rank`` and
        only the sorted ``users`` (read by their id range: row groups outside it are skipped)."""
        filters: list[tuple[str, str, int]] = []
        if max_rank is not None:
            filters.append(("rank", "<=", int(max_rank)))
        if users is not None:
            if len(users) == 0:
                return pd.read_parquet(self.path / self.candidates_file(stage)).iloc[:0]
            filters += [("user", ">=", int(users[0])), ("user", "<=", int(users[-1]))]
        frame = pd.read_parquet(self.path / self.candidates_file(stage), filters=filters or None)
        if users is not None:
            frame = frame[np.isin(frame["user"].to_numpy(), users)]
        return frame.reset_index(drop=True)

    def candidate_counts(self, stage: Stage, n_users: int, max_rank: int | None = None) -> np.ndarray:
        """Candidates per user (``n_users`` long), read in record batches: bounded memory."""

        counts = np.zeros(n_users, dtype=np.int64)
        for batch in pq.ParquetFile(self.path / self.candidates_file(stage)).iter_batches(
                batch_size=1 << 20, columns=["user", "rank"]):
            users = batch.column("user").to_numpy()
            if max_rank is not None:
                users = users[batch.column("rank").to_numpy() <= max_rank]
            counts += np.bincount(users, minlength=n_users)
        return counts

    def model(self, stage: Stage, cls: type[Recommender] = Recommender) -> Recommender:
        """The recommender fitted on ``stage`` (``cls.load``; the base class dispatches on the file)."""
        return cls.load(self.path / self.model_file(stage))

    @property
    def has_similar_items(self) -> bool:
        return (self.path / self.SIMILAR).is_file()

    def similar_items(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / self.SIMILAR)

    def metrics(self) -> dict[str, float]:
        return read_json(self.path / self.METRICS)


def _ranked_pairs_sink(path: Path, columns: tuple[str, str, str, str]) -> ParquetSink:
    """A Parquet file of ranked pairs written one frame (row group) at a time: one batch in memory.
    ``columns`` are (query, result, score, rank) as int32/int32/float32/int32, the dtypes of
    :func:`encore.evaluation.evaluator.frame_from_lists`; no frame at all gives an empty table."""
    schema = pa.schema([(columns[0], pa.int32()), (columns[1], pa.int32()), (columns[2], pa.float32()),
                        (columns[3], pa.int32())])
    return ParquetSink(path, schema)


@dataclass(frozen=True)
class RankerOutput:
    """The ranker's output folder."""

    path: Path

    RECOMMENDATIONS = "recommendations.parquet"
    MODEL = "model.cbm"
    IMPORTANCE = "feature_importance.csv"
    IMPORTANCE_PLOT = "feature_importance.png"
    METRICS = "metrics.json"
    POLICY = "policy.json"

    def recommendations(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / self.RECOMMENDATIONS)

    def metrics(self) -> dict[str, float]:
        return read_json(self.path / self.METRICS)

    def feature_importance(self) -> pd.DataFrame:
        return pd.read_csv(self.path / self.IMPORTANCE)

    def policy(self) -> dict[str, Any]:
        """``fallback``, per segment ``choice`` (ranker / fallback), ``reason`` and ``validation``."""
        return read_json(self.path / self.POLICY)


@dataclass(frozen=True)
class RerankOutput:
    """The rerank component's output folder: the final lists, the trade-off grid on the
    ranker-target part, the chosen setting, and what the serving model re-ranks with."""

    path: Path

    RECOMMENDATIONS = "recommendations.parquet"
    GRID = "tradeoff.csv"
    PLOT = "tradeoff.png"
    CHOSEN = "chosen.json"
    METRICS = "metrics.json"
    SIGNIFICANCE = "significance.json"
    ITEM_SIDE = "item_side.npz"
    """Item ages (days at the train stage's last event), embeddings, attributes and release dates
    (unix seconds; empty without them), for serving."""
    SERVING = "serving.json"
    """The chosen setting and the blocked and rejected items (item indexes), for serving."""
    CONTENT = "content_candidates.parquet"
    """user, item, score, rank: the content candidates (never-listened items) of the train stage."""

    def recommendations(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / self.RECOMMENDATIONS)

    def grid(self) -> pd.DataFrame:
        return pd.read_csv(self.path / self.GRID)

    def chosen(self) -> dict[str, Any]:
        return read_json(self.path / self.CHOSEN)

    def serving(self) -> dict[str, Any]:
        return read_json(self.path / self.SERVING)

    def item_side(self) -> dict[str, np.ndarray]:
        with np.load(self.path / self.ITEM_SIDE) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def content_candidates(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / self.CONTENT)


@dataclass(frozen=True)
class EvaluateOutput:
    """The evaluate component's output folder."""

    path: Path

    COMPARISON = "comparison.csv"
    COMPARISON_MD = "comparison.md"
    SEGMENTS_CSV = "comparison_segments.csv"
    """Every metric per (segment, model), with the segment's user count."""
    SEGMENTS_MD = "comparison_segments.md"
    """k=10 tables of the all / warm / cold / cold-item segments, each with its user count."""
    SIGNIFICANCE = "significance.json"
    PER_USER = "per_user.parquet"
    PLOT = "metrics_vs_k.png"
    SEGMENTS_PLOT = "segments.png"
    """The primary metric of every model per segment (bars)."""

    def comparison(self) -> pd.DataFrame:
        return pd.read_csv(self.path / self.COMPARISON, index_col=0)

    def significance(self) -> dict[str, Any]:
        return read_json(self.path / self.SIGNIFICANCE)

    def per_user(self, columns: list[str] | None = None) -> pd.DataFrame:
        """Per-user values of the primary metric: ``user_id`` (raw) and one column per model."""
        return pd.read_parquet(self.path / self.PER_USER, columns=columns)


@dataclass(frozen=True)
class TuneOutput:
    """The tune component's folder: every trial's score on the ranker-target part and the
    settings chosen per instance (:mod:`encore.components.tune`)."""

    path: Path

    TRIALS = "trials.csv"
    """``instance, trial, settings`` (JSON), ``segment, n_users``, one column per metric at every k,
    ``best_epoch`` (kinds trained in epochs), ``state`` (complete | pruned), ``seconds``, ``chosen`` (bool)."""
    CHOSEN = "chosen.json"
    """``{instance: {setting: value}}``: the best combination of each instance's grid."""
    FRAGMENT = "chosen.yaml"
    """The same choice as an experiment-file fragment (``components: {instance: {setting: value}}``)."""
    TABLE_MD = "tuning.md"

    def trials(self) -> pd.DataFrame:
        return pd.read_csv(self.path / self.TRIALS)

    def chosen(self) -> dict[str, dict[str, Any]]:
        return read_json(self.path / self.CHOSEN)


@dataclass(frozen=True)
class FoldsOutput:
    """Rolling-origin evaluation pooled over folds (``folds-<fingerprint>/``, written by the
    pipeline when ``split.folds`` > 1; see :mod:`encore.evaluation.fold_pooling`)."""

    path: Path

    PER_USER = "per_user_folds.parquet"
    """``fold, user_id, segment`` and one column per model: every fold's per-user values."""
    TABLE = "folds.csv"
    """``segment, model, fold, n_users, value``: per-fold and pooled means."""
    TABLE_MD = "folds.md"
    SUMMARY = "pooled_significance.json"

    def per_user(self) -> pd.DataFrame:
        return pd.read_parquet(self.path / self.PER_USER)

    def table(self) -> pd.DataFrame:
        return pd.read_csv(self.path / self.TABLE, dtype={"fold": str})

    def summary(self) -> dict[str, Any]:
        return read_json(self.path / self.SUMMARY)


@dataclass(frozen=True)
class RegisterOutput:
    """The register component's output folder; ``PER_USER`` is also the register run's
    artifact that promotion pairs a challenger with the champion on."""

    path: Path

    PER_USER = "per_user_metric.parquet"
    REGISTERED = "registered.json"
    BUNDLE = "bundle"

    @property
    def bundle(self) -> Path:
        """The serving bundle (:mod:`encore.serving.pyfunc`) logged with the model."""
        return self.path / self.BUNDLE

    def write_per_user(self, frame: pd.DataFrame) -> None:
        write_parquet(frame, self.path / self.PER_USER)

    def write_registered(self, info: dict[str, Any]) -> None:
        write_json(self.path / self.REGISTERED, info)

    def registered(self) -> dict[str, Any]:
        """``model_name``, ``version``, ``run_id``, ``model_uri`` of the registered version."""
        return read_json(self.path / self.REGISTERED)
