"""The ranking stage's scoring on Spark (``components.ranker.engine: spark``; docs/scaling.md).

The same lists as :func:`encore.ranking.stage.rank_users`, computed on the executors:

1. a Spark job reads every proposing instance's candidate Parquet (ranks up to
   ``candidates_per_generator``) and the fallback's list (ranks up to ``top_k``), tags each row
   with its source, and groups the union by *user bucket* (contiguous user ranges, each about one
   pandas batch of candidate rows);
2. ``applyInPandas`` over each bucket calls the SAME Python code as the pandas path: the merge
   (:func:`~encore.ranking.stage.merge_candidates`), the feature groups
   (:func:`~encore.ranking.features.build_features`), the trained CatBoost model, the top-k and
   the completions (fallback list, then the stage's popular unseen items);
3. each bucket's ranked rows (sorted by user, rank) are written by the executors to a temporary
   Parquet folder per bucket beside the output, and copied bucket by bucket into
   ``recommendations.parquet`` (one row group in the driver's memory at a time), so the file is
   the pandas path's, row for row.

What the executors need beyond the candidates is broadcast once, pickled: the stage's
:class:`~encore.ranking.feature_groups.StageData` without candidates (play and timestamp matrices,
item tags, social graph, the fitted generator and feature-only models), the stage-wide
:class:`~encore.ranking.features.FeatureTables`, the trained ranker, the popularity order, the
segment policy and the items' raw ids and names. Its size is returned
(``spark_broadcast_bytes``): it grows with users x history and with the models (EASE's item x item
matrix dominates when present), not with the number of candidates.

Training is not here: it stays a sampled single-machine CatBoost fit within
``train_max_rows`` (:func:`encore.ranking.stage.training_set`); so does the fallback policy's
validation (a held-out slice of the target users).
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from encore.arrays import pair_keys
from encore.config.experiment import ConfigError, EncoreConfig
from encore.data.prepared import EVAL_PART, PreparedData, Stage
from encore.data.spark_session import PickledBroadcast, load_spark_settings, spark_session
from encore.io import ParquetSink
from encore.outputs import GeneratorOutput
from encore.ranking.feature_groups import StageData
from encore.ranking.features import FeatureTables, build_features
from encore.ranking.model import TrainedRanker, complete_from_list, complete_with_popular, top_k
from encore.ranking.segment_policy import SegmentPolicy, cold_users
from encore.ranking.stage import (
    BYTES_PER_CANDIDATE_ROW,
    RankingStage,
    merge_candidates,
    ranker_generators,
    with_item_names,
)
from encore.resources import rows_per_batch

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

FALLBACK_SOURCE = -1
"""``source`` of the fallback instance's rows in the union (proposing instances are 0, 1, ...)."""
MARKER_SOURCE = -2
"""``source`` of one empty row per bucket, so a bucket whose users have no candidate still gets
its (popular-completed) lists."""

RANKED_SCHEMA = "user int, item int, score float, rank int, item_id string, name string"
"""``recommendations.parquet``'s columns as the pandas path writes them."""


@dataclass
class ScoringContext:
    """Everything a bucket's scoring needs besides its candidates (broadcast to the executors)."""

    data: StageData
    tables: FeatureTables
    trained: TrainedRanker
    generators: list[str]
    """Proposing instances, in the order of their ``source`` tag."""
    per_generator: int
    top_k: int
    has_fallback: bool
    policy: SegmentPolicy
    popular: np.ndarray
    """Item indices, most listeners in the stage first."""
    raw_ids: np.ndarray
    names: np.ndarray
    n_users: int
    n_buckets: int

    def bucket_users(self, bucket: int) -> np.ndarray:
        """The users of ``bucket``: those with ``user * n_buckets // n_users == bucket``."""
        first = -(-bucket * self.n_users // self.n_buckets)
        last = -(-(bucket + 1) * self.n_users // self.n_buckets)
        return np.arange(first, last, dtype=np.int64)

    def rank_bucket(self, rows: pd.DataFrame, users: np.ndarray) -> pd.DataFrame:
        """``users``' ranked, completed lists from their candidate ``rows`` (user, item, score,
        rank, source): what :func:`encore.ranking.stage.rank_users` writes for one batch."""
        sources = rows["source"].to_numpy()
        candidates = {name: _source_rows(rows, sources == index) for index, name in enumerate(self.generators)}
        pairs = merge_candidates(candidates, users)
        features = build_features(pairs, replace(self.data, candidates=candidates), self.tables)
        pair_users = pairs["user"].to_numpy()
        # A bucket may hold no candidate at all (users without history on tiny data): no model call.
        scores = self.trained.score(features) if len(pairs) else np.empty(0, dtype=np.float64)
        recs = top_k(pair_users, pairs["item"].to_numpy(), scores, self.top_k)
        n_items = self.data.n_items
        history = self.data.user_items
        if self.has_fallback:
            listed = _source_rows(rows, sources == FALLBACK_SOURCE)
            served = users[self.policy.uses_fallback(cold_users(history, users))]
            recs = pd.concat([recs[~np.isin(recs["user"].to_numpy(), served)],
                              listed[np.isin(listed["user"].to_numpy(), served)]], ignore_index=True)
            recs = complete_from_list(recs, listed, n_items, self.top_k)
        seen = history[users].tocoo()
        seen_keys = pair_keys(users[seen.row], seen.col, n_items)
        ranked = complete_with_popular(recs, users, self.popular, seen_keys, n_items, self.top_k)
        return with_item_names(ranked, self.raw_ids, self.names)


def _source_rows(rows: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """One source's (user, item, score, rank) rows in the order its file holds them (user, rank)."""
    frame = rows.loc[mask, ["user", "item", "score", "rank"]]
    return frame.sort_values(["user", "rank"], kind="stable").reset_index(drop=True)


def candidate_union(spark: SparkSession, config: EncoreConfig, inputs: Mapping[str, Path], stage: Stage,
                    n_users: int, n_buckets: int) -> DataFrame:
    """Every proposing instance's candidates (rank <= ``candidates_per_generator``), the fallback's
    list (rank <= ``top_k``) and one marker row per bucket: user, item, score, rank, source, bucket."""
    from pyspark.sql import functions as F

    ranker = config.components.ranker
    columns = ["user", "item", "score", "rank"]

    def read(name: str, max_rank: int, source: int) -> DataFrame:
        path = GeneratorOutput(inputs[name]).path / GeneratorOutput.candidates_file(stage)
        frame = spark.read.parquet(str(path)).where(F.col("rank") <= max_rank)
        return frame.select(*[F.col(c).cast("int" if c != "score" else "float") for c in columns],
                            F.lit(source).alias("source"))

    parts = [read(name, ranker.candidates_per_generator, index)
             for index, name in enumerate(ranker_generators(config))]
    if ranker.fallback is not None:
        parts.append(read(ranker.fallback, ranker.top_k, FALLBACK_SOURCE))
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    # Integer division (exact), the same formula as ScoringContext.bucket_users inverts.
    union = union.withColumn("bucket", F.expr(f"cast(cast(user as bigint) * {n_buckets} div {n_users} as int)"))
    markers = spark.range(n_buckets).select(
        F.lit(-1).alias("user"), F.lit(-1).alias("item"), F.lit(None).cast("float").alias("score"),
        F.lit(0).alias("rank"), F.lit(MARKER_SOURCE).alias("source"), F.col("id").cast("int").alias("bucket"))
    return union.unionByName(markers)


def bucket_count(ranking: RankingStage, config: EncoreConfig, n_users: int, parallelism: int) -> int:
    """Buckets of about one pandas batch of candidate rows each (the same memory bound per task),
    and at least two per executor core so a lost task reruns a small piece."""
    total = int(ranking.rows_per_user(n_users, config.components.ranker.candidates_per_generator).sum())
    per_bucket = rows_per_batch(config.resources, BYTES_PER_CANDIDATE_ROW)
    return max(1, min(n_users, max(2 * parallelism, math.ceil(total / per_bucket))))


def candidate_recall_found(spark: SparkSession, union: DataFrame, prepared: PreparedData, stage: Stage) -> int:
    """Distinct proposed (user, item) pairs that are in the stage's eval part (a Spark join)."""
    from pyspark.sql import functions as F

    relevant = spark.read.parquet(str(prepared.path / f"{EVAL_PART[stage]}.parquet"))
    relevant = relevant.select(F.col("user").cast("int"), F.col("item").cast("int")).distinct()
    proposed = union.where(F.col("source") >= 0).select("user", "item").distinct()
    return int(proposed.join(relevant, ["user", "item"]).count())


def rank_users_spark(trained: TrainedRanker, config: EncoreConfig, inputs: Mapping[str, Path],
                     prepared: PreparedData, sink: ParquetSink, scratch: Path, *, stage: Stage = "train",
                     policy: SegmentPolicy | None = None, spark: SparkSession | None = None) -> dict[str, float]:
    """Every user's top-k list of ``stage`` into ``sink``, scored on the executors; the same rows
    as :func:`encore.ranking.stage.rank_users` (scores within float tolerance). ``scratch`` is
    a folder every executor can write (it is removed). Returns the candidate recall, the buckets
    and the broadcast's size."""
    ranker = config.components.ranker
    if not ranker.refit_generators and stage != "base":
        raise ConfigError("components.ranker.engine: spark reads the candidates from the generators' files, "
                          "which needs components.ranker.refit_generators: true")
    spark = spark or _session()
    policy = policy or SegmentPolicy()
    ranking = RankingStage.load(config, inputs, prepared, stage)
    n_users = prepared.n_users
    n_buckets = bucket_count(ranking, config, n_users, spark.sparkContext.defaultParallelism)
    context = ScoringContext(
        data=ranking.data, tables=ranking.tables, trained=trained, generators=ranker_generators(config),
        per_generator=ranker.candidates_per_generator, top_k=ranker.top_k, has_fallback=ranker.fallback is not None,
        policy=policy, popular=np.argsort(-prepared.item_listeners(stage), kind="stable"),
        raw_ids=prepared.items["raw_id"].astype(str).to_numpy(), names=prepared.items["name"].astype(str).to_numpy(),
        n_users=n_users, n_buckets=n_buckets)
    broadcast = PickledBroadcast(spark, context)
    union = candidate_union(spark, config, inputs, stage, n_users, n_buckets)

    def score(rows: pd.DataFrame) -> pd.DataFrame:
        ctx = broadcast.value()
        bucket = int(rows["bucket"].iloc[0])
        ranked = ctx.rank_bucket(rows[rows["source"] != MARKER_SOURCE], ctx.bucket_users(bucket))
        return ranked.assign(bucket=np.int32(bucket))

    # No global sort (a range-partitioned sort would run the scoring twice, once to sample): each
    # bucket is a contiguous user range whose rows come out sorted by (user, rank), written to its
    # own folder; the driver copies the folders in bucket order.
    ranked = union.groupBy("bucket").applyInPandas(score, schema=f"{RANKED_SCHEMA}, bucket int")
    folder = scratch / ".spark-recommendations"
    shutil.rmtree(folder, ignore_errors=True)
    try:
        ranked.write.partitionBy("bucket").parquet(str(folder))
        written = copy_parts(folder, n_buckets, sink)
        found = candidate_recall_found(spark, union, prepared, stage)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        broadcast.destroy()
    fallback_users = 0
    if ranker.fallback is not None:
        everyone = np.arange(n_users, dtype=np.int64)
        fallback_users = int(policy.uses_fallback(cold_users(prepared.user_items(stage), everyone)).sum())
    log.info("ranker (spark): %d users in %d buckets, %d rows; broadcast %.1f MiB", n_users, n_buckets, written,
             broadcast.payload_bytes / 2**20)
    n_relevant = len(prepared.part(EVAL_PART[stage]))
    return {"candidate_recall": found / max(n_relevant, 1), "rank_batches": float(n_buckets),
            "fallback_users": float(fallback_users), "spark_broadcast_bytes": float(broadcast.payload_bytes)}


def copy_parts(folder: Path, n_buckets: int, sink: ParquetSink) -> int:
    """The Parquet parts Spark wrote into ``folder/bucket=<b>/``, bucket after bucket, one row
    group at a time into ``sink`` (one row group in memory); the number of rows. Checks the
    (user, rank) order it relies on."""
    last_user, rows = -1, 0
    for bucket in range(n_buckets):
        for part in sorted((folder / f"bucket={bucket}").glob("part-*.parquet")):
            file = pq.ParquetFile(part)
            for group in range(file.num_row_groups):
                frame = file.read_row_group(group).to_pandas()
                if frame.empty:
                    continue
                users = frame["user"].to_numpy()
                if users[0] < last_user or np.any(np.diff(users) < 0):
                    raise RuntimeError(f"{part}: the scored buckets are out of user order")
                last_user = int(users[-1])
                sink.write(frame)
                rows += len(frame)
    return rows


def _session() -> SparkSession:

    return spark_session(load_spark_settings())

