"""Evaluation's per-user ranking metrics on Spark (``evaluation.engine: spark``; docs/scaling.md).

The executors read every model's list Parquet (user, item, rank) and the prepared eval part
(user, item), group both by *user bucket* (contiguous user ranges) and, per bucket, run the SAME
metric code as the pandas path (:func:`encore.evaluation.metrics.hits_matrix` and every function of
:data:`~encore.evaluation.metrics.RANKING_METRICS`, a user's own registered metrics included) on the
bucket's users: one row per (user, model, scope) with every ranking metric at every k, where scope
is ``all`` (every relevant item) or ``cold_items`` (the relevant items nobody has in training).
Spark then sums and counts them per (model, scope, warm), so the means of every segment
(``all``, ``warm``, ``cold``, ``cold_items``) never need the users in one process; only the
primary metric's per-user values come back to the driver (the paired tests and
``per_user.parquet`` need them: one float per test user and model).

Broadcast: the users' warm flags (one byte per user), the items' cold flags (one byte per item),
the cutoffs and the metric functions (pickled by reference).

Beyond-accuracy metrics (catalog coverage, novelty, diversity, popularity, new-item exposure) are
whole-list statistics over the item catalogue; they stay on the driver (:func:`beyond_accuracy`),
from the ``(users, k)`` item arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from encore.data.prepared import EVAL_PART
from encore.data.spark_session import PickledBroadcast, load_spark_settings, spark_session
from encore.evaluation import metrics
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.evaluation.segments import ALL, COLD, COLD_ITEMS, SEGMENTS, WARM

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

SCOPES = (ALL, COLD_ITEMS)
"""``scope`` codes of the per-user rows (numbers: pandas 3's Arrow strings do not cross applyInPandas)."""
RELEVANT_SOURCE = -1
"""``model`` of the eval part's rows in the union (lists are 0, 1, ... in the order given)."""


@dataclass
class MetricContext:
    """What a bucket's metrics need besides its rows (broadcast to the executors)."""

    warm: np.ndarray
    """(n_users,) bool: the user has history in the stage's training data."""
    cold_item: np.ndarray
    """(n_items,) bool: nobody has the item in the stage's training data."""
    ks: tuple[int, ...]
    functions: dict[str, Any]
    """Ranking metric functions by name (:data:`~encore.evaluation.metrics.RANKING_METRICS`)."""
    n_models: int

    @property
    def columns(self) -> list[str]:
        return [f"{name}@{k}" for k in self.ks for name in [*self.functions, "user_coverage"]]

    def schema(self) -> str:
        metric_columns = ", ".join(f"`{column}` double" for column in self.columns)
        return f"user int, model int, scope int, warm boolean, {metric_columns}"

    def bucket_metrics(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Per (user, model, scope) every ranking metric at every k for the users of ``rows``
        with at least one relevant item (``model == RELEVANT_SOURCE`` rows)."""
        models = rows["model"].to_numpy()
        relevant = rows[models == RELEVANT_SOURCE]
        users = np.unique(relevant["user"].to_numpy()).astype(np.int64)
        if len(users) == 0:
            # Typed columns: Arrow cannot convert an empty frame's object columns.
            return pd.DataFrame({"user": np.empty(0, np.int32), "model": np.empty(0, np.int32),
                                 "scope": np.empty(0, np.int32), "warm": np.empty(0, bool)}
                                | {column: np.empty(0, np.float64) for column in self.columns})
        n_items = len(self.cold_item)
        row_of = np.searchsorted(users, relevant["user"].to_numpy())
        rel = sp.csr_matrix((np.ones(len(relevant), np.int8), (row_of, relevant["item"].to_numpy())),
                            shape=(len(users), n_items))
        rel.sum_duplicates()
        cold_rel = sp.csr_matrix(rel @ sp.diags(self.cold_item.astype(np.float32), format="csr"))
        cold_rel.eliminate_zeros()
        cold_rows = np.flatnonzero(np.diff(cold_rel.indptr) > 0)
        width = max(self.ks)
        frames = []
        for model in range(self.n_models):
            lists = lists_from_frame(rows[models == model], users, width)
            for scope, rows_of, scope_rel in ((ALL, np.arange(len(users)), rel),
                                              (COLD_ITEMS, cold_rows, cold_rel[cold_rows])):
                if len(rows_of) == 0:
                    continue
                frames.append(self._values(users[rows_of], model, SCOPES.index(scope), lists[rows_of], scope_rel))
        return pd.concat(frames, ignore_index=True)

    def _values(self, users: np.ndarray, model: int, scope: int, lists: np.ndarray,
                rel: sp.csr_matrix) -> pd.DataFrame:
        hits = metrics.hits_matrix(lists, rel)
        n_rel = np.diff(rel.indptr).astype(np.int64)
        values: dict[str, Any] = {"user": users.astype(np.int32), "model": np.full(len(users), model, np.int32),
                                  "scope": np.full(len(users), scope, np.int32), "warm": self.warm[users]}
        for k in self.ks:
            for name, fn in self.functions.items():
                values[f"{name}@{k}"] = np.asarray(fn(hits, n_rel, k), dtype=np.float64)
            # user_coverage's per-user form: the user's first k slots are all filled.
            values[f"user_coverage@{k}"] = (lists[:, :k] != -1).all(axis=1).astype(np.float64)
        return pd.DataFrame(values)


@dataclass
class SparkScores:
    """Spark's ranking metrics: ``results[segment][model]`` (metric -> mean over the segment's
    users) and the primary metric per user (``per_user[segment]``: a frame of the segment's users
    in :attr:`Evaluator.users` order, one column per model)."""

    results: dict[str, dict[str, dict[str, float]]]
    per_user: dict[str, pd.DataFrame]


def list_union(spark: SparkSession, lists: Mapping[str, Path], relevant: Path, width: int, n_users: int,
               n_buckets: int) -> DataFrame:
    """Every model's lists (rank <= ``width``) tagged 0, 1, ... and the eval part's pairs tagged
    :data:`RELEVANT_SOURCE`: user, item, rank, model, bucket."""
    from pyspark.sql import functions as F

    parts = [spark.read.parquet(str(path)).where(F.col("rank") <= width)
             .select(F.col("user").cast("int"), F.col("item").cast("int"), F.col("rank").cast("int"),
                     F.lit(index).alias("model"))
             for index, path in enumerate(lists.values())]
    pairs = spark.read.parquet(str(relevant))
    parts.append(pairs.select(F.col("user").cast("int"), F.col("item").cast("int"), F.lit(0).alias("rank"),
                              F.lit(RELEVANT_SOURCE).alias("model")))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    return union.withColumn("bucket", F.expr(f"cast(cast(user as bigint) * {n_buckets} div {n_users} as int)"))


def spark_ranking_metrics(evaluator: Evaluator, lists: Mapping[str, Path], primary: str,
                          spark: SparkSession | None = None, n_buckets: int | None = None) -> SparkScores:
    """Every ranking metric of every model in ``lists`` (name -> Parquet of user, item, rank) per
    segment, and the ``primary`` metric per user, computed on the executors; the same figures as
    :meth:`Evaluator.evaluate` / :meth:`Evaluator.per_user` (float tolerance: sums in another order)."""
    from pyspark.sql import functions as F

    spark = spark or _session()
    prepared = evaluator.prepared
    names = list(lists)
    context = MetricContext(warm=np.diff(prepared.user_items(evaluator.stage).indptr) > 0,
                            cold_item=evaluator.item_user_counts == 0, ks=tuple(evaluator.ks),
                            functions=dict(metrics.RANKING_METRICS), n_models=len(names))
    broadcast = PickledBroadcast(spark, context)
    n_users = prepared.n_users
    n_buckets = n_buckets or max(1, min(n_users, 4 * spark.sparkContext.defaultParallelism,
                                        len(evaluator.users) // 50_000 + 1))
    union = list_union(spark, lists, prepared.path / f"{EVAL_PART[evaluator.stage]}.parquet", max(evaluator.ks),
                       n_users, n_buckets)

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        return broadcast.value().bucket_metrics(rows)

    try:
        per_user = union.groupBy("bucket").applyInPandas(score, schema=context.schema()).cache()
        columns = context.columns
        sums = (per_user.groupBy("model", "scope", "warm")
                .agg(F.count(F.lit(1)).alias("n"), *[F.sum(F.col(f"`{c}`")).alias(c) for c in columns])
                .toPandas())
        primary_values = per_user.select("user", "model", "scope", F.col(f"`{primary}`").alias("value")).toPandas()
        per_user.unpersist()
    finally:
        broadcast.destroy()
    results: dict[str, dict[str, dict[str, float]]] = {}
    every, cold_items = sums["scope"] == SCOPES.index(ALL), sums["scope"] == SCOPES.index(COLD_ITEMS)
    warm = sums["warm"].astype(bool)
    chosen = {ALL: every, WARM: every & warm, COLD: every & ~warm, COLD_ITEMS: cold_items}
    for segment in SEGMENTS:
        rows = sums[chosen[segment]]
        if rows.empty:
            continue
        totals = rows.groupby("model")[["n", *columns]].sum()
        results[segment] = {names[m]: {c: float(totals.at[m, c] / totals.at[m, "n"]) for c in columns}
                            for m in range(len(names)) if m in totals.index}
    return SparkScores(results=results, per_user=_per_user_tables(evaluator, primary_values, names))


def _per_user_tables(evaluator: Evaluator, values: pd.DataFrame, names: list[str]) -> dict[str, pd.DataFrame]:
    """The primary metric per segment user, in the rows (and order) of the evaluator's segments."""
    tables = {}
    for segment, seg in evaluator.segments.items():
        if seg.n_users == 0:
            continue
        scope = SCOPES.index(COLD_ITEMS if segment == COLD_ITEMS else ALL)
        users = evaluator.users[seg.rows]
        part = values[values["scope"] == scope]
        table = {}
        for m, name in enumerate(names):
            mine = part[part["model"] == m]
            table[name] = pd.Series(mine["value"].to_numpy(), index=mine["user"].to_numpy()).reindex(users).to_numpy()
        tables[segment] = pd.DataFrame(table)
    return tables


def beyond_accuracy(evaluator: Evaluator, lists: np.ndarray, segment: str = ALL) -> dict[str, float]:
    """The whole-list metrics of :func:`encore.evaluation.metrics.evaluate` (catalogue coverage,
    novelty, diversity, popularity, new-item exposure) at every k, for the rows of ``segment``
    of ``(len(evaluator.users), K)`` lists; on the driver."""
    top = lists[evaluator.segments[segment].rows]
    counts = evaluator.item_user_counts
    n_train_users = int(np.diff(evaluator.prepared.user_items(evaluator.stage).indptr).astype(bool).sum())
    out: dict[str, float] = {}
    for k in evaluator.ks:
        out[f"catalog_coverage@{k}"] = metrics.catalog_coverage(top, k, np.flatnonzero(counts))
        out[f"novelty@{k}"] = metrics.novelty(top, k, counts, n_train_users)
        if evaluator.item_features is not None:
            out[f"diversity@{k}"] = metrics.intra_list_diversity(top, k, evaluator.item_features)
        out[f"avg_popularity@{k}"] = metrics.average_popularity(top, k, counts)
        out[f"new_item_exposure@{k}"] = metrics.new_item_exposure(top, k, counts)
    return out


def combined(ranking: Mapping[str, float], beyond: Mapping[str, float], ks: tuple[int, ...]) -> dict[str, float]:
    """Spark's ranking metrics and the driver's whole-list metrics in :func:`metrics.evaluate`'s key order."""
    out: dict[str, float] = {}
    for k in ks:
        out |= {key: value for key, value in ranking.items() if key.endswith(f"@{k}")}
        out |= {key: value for key, value in beyond.items() if key.endswith(f"@{k}")}
    return out


def _session() -> SparkSession:

    return spark_session(load_spark_settings())
