"""Implicit-feedback ALS fitted by Spark MLlib on the executors (``kind: als_spark``).

The fit runs where the Spark settings point (``config/spark_config.yaml``,
``ENCORE_SPARK_CONFIG``, ``ENCORE_SPARK_MASTER``): ``local[*]`` or a cluster. The executors
read the stage's prepared Parquet parts themselves (``StageView.parts``), sum each (user,
item) pair, weight it and solve; only the factors come back to the driver. From then on the
model is the ``implicit`` ALS of :mod:`.als` with those factors: candidates, similar items,
pair scores and the saved ``.npz`` are the same code and the same formats, so the ranker,
evaluate, register and serving take it unchanged.

Top-N on the executors (``top_n_on: executors``, the default): the generator's candidate and
similar-item lists are not computed by the driver but by Spark tasks (:func:`executor_top_n`,
:func:`executor_similar_items`). The users' factors stay a DataFrame (MLlib's own after a fit),
grouped into blocks of ``block_users`` consecutive ids; the item factors are broadcast once
(``n_items * factors * 4`` bytes); each block is cogrouped with its users' played items (read
from the stage's Parquet parts by the executors) and scored against every item in sub-blocks
(BLAS), the played items masked exactly, the best N kept (:func:`encore.retrieval.topn.topk`,
ties to the lower id as on the driver). The lists are written by the executors as Parquet, one
folder per block, and streamed by the driver into the generator's usual candidates file block by
block: the driver never holds more than one block. ``top_n_on: driver`` keeps implicit's path.

Mapping of Encore's ALS settings onto MLlib's (they are not the same model, see docs/scaling.md):

* confidence: implicit uses ``c = alpha * w`` for a played pair, MLlib ``c = 1 + alpha * w``
  (Hu et al.'s form); ``w`` is the same log1p (or raw) weight;
* regularization: MLlib scales ``regParam`` by each user's (item's) number of ratings
  (ALS-WR); Encore's ``regularization`` is implicit's unscaled ridge, so it is divided by the
  mean number of ratings per user, which keeps the users' penalty equal on average;
* seed: MLlib draws each block's initial factors from ``seed`` and the block id, so the
  factors depend on ``blocks`` but not on the cluster, its executors or their number.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
import pandas as pd
from implicit.cpu.als import AlternatingLeastSquares
from implicit.cpu.matrix_factorization_base import MatrixFactorizationBase
from scipy.sparse import csr_matrix

from encore.config.types import NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt

from .base import check_user_items, single_threaded_blas
from .factorization import ImplicitFactorizationRecommender
from .generator_config import GeneratorConfig, StageView

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


class ALSSparkConfig(GeneratorConfig):
    """Settings of an ``als_spark`` generator instance; the shared ones mean what they mean for ``als``."""

    kind: Literal["als_spark"] = "als_spark"
    factors: PositiveInt = 64
    regularization: NonNegativeFloat = 20.0
    alpha: PositiveFloat = 1.0
    iterations: PositiveInt = 15
    weighting: Literal["log1p", "none"] = "log1p"
    blocks: PositiveInt = 4
    num_threads: NonNegativeInt = 0
    top_n_on: Literal["executors", "driver"] = "executors"
    block_users: PositiveInt = 4096


class ALSSparkRecommender(ImplicitFactorizationRecommender):
    """MLlib ``ALS(implicitPrefs=True)`` on the executors; scoring and saving as :class:`~.als.ALSRecommender`.

    Parameters
    ----------
    factors, iterations, alpha, weighting:
        As for ``als`` (``weighting``: ``log1p`` or ``none``; BM25 needs per-item statistics
        the executors do not compute yet).
    regularization:
        implicit's ridge; MLlib gets ``regularization / mean ratings per user`` (see the module).
    blocks:
        MLlib's user and item blocks (``numUserBlocks``/``numItemBlocks``): the parallelism of
        each sweep. The factors depend on it (each block's initial factors are seeded by its id),
        never on the master or the number of executors.
    num_threads:
        implicit threads for the candidate and similar-item queries on the driver (0 = every core).
    top_n_on:
        where the generator's candidate and similar-item lists are computed: ``executors``
        (blocked exact scoring in Spark tasks, the module's docstring) or ``driver`` (implicit).
        The lists are the same either way (ids identical up to float ties; scores within float
        tolerance); ``recommend`` and ``similar_items`` called directly always run on the driver.
    block_users:
        users (items for similar items) per executor block: one Spark group each.
    random_state:
        MLlib's seed.
    """

    name = "als_spark"
    config_class = ALSSparkConfig

    def __init__(
        self,
        factors: int = 64,
        regularization: float = 20.0,
        alpha: float = 1.0,
        iterations: int = 15,
        weighting: Literal["log1p", "none"] = "log1p",
        blocks: int = 4,
        num_threads: int = 0,
        top_n_on: Literal["executors", "driver"] = "executors",
        block_users: int = 4096,
        random_state: int | None = 42,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.blocks = blocks
        self.num_threads = num_threads
        self.top_n_on = top_n_on
        self.block_users = block_users
        self.random_state = random_state

    def _new_model(self) -> MatrixFactorizationBase:
        return AlternatingLeastSquares(factors=self.factors, regularization=self.regularization, alpha=self.alpha,
                                       iterations=self.iterations, num_threads=self.num_threads,
                                       random_state=self.random_state)

    @classmethod
    def _implicit_class(cls) -> Any:
        return AlternatingLeastSquares

    # -- fitting on Spark ---------------------------------------------------------------

    def fit_stage(self, view: StageView) -> Self:
        """Fit on the stage's Parquet parts, read by the executors (the matrix only gives the shape)."""
        return self._fit_spark(view.user_items, view.parts)

    def fit(self, user_items: csr_matrix) -> Self:
        """Fit on a matrix (no Parquet parts at hand): it is written to a temporary Parquet file first,
        which the executors read by its path, as they read the prepared parts (on a cluster of
        several machines the temporary folder, like the output folder, must be shared)."""
        user_items = check_user_items(user_items)
        coo = user_items.tocoo()
        with tempfile.TemporaryDirectory(prefix="encore-als-spark-") as folder:
            part = Path(folder) / "user_items.parquet"
            pd.DataFrame({"user": coo.row.astype(np.int32), "item": coo.col.astype(np.int32),
                          "weight": coo.data.astype(np.float32)}).to_parquet(part, index=False)
            return self._fit_spark(user_items, (part,))

    def _fit_spark(self, user_items: csr_matrix, parts: tuple[Path, ...]) -> Self:
        user_items = check_user_items(user_items)
        if not parts:
            return self.fit(user_items)
        n_users, n_items = user_items.shape
        spark = _session()
        ratings = _ratings(spark, parts, self.weighting).persist()
        try:
            n_ratings = ratings.count()
            if n_ratings == 0:
                raise ValueError(f"als_spark: no interactions in {', '.join(map(str, parts))}")
            users_with_ratings = max(int(np.count_nonzero(np.diff(user_items.indptr))), 1)
            user_factors, item_factors = self._solve(ratings, n_ratings / users_with_ratings, n_users, n_items)
        finally:
            ratings.unpersist()
        with single_threaded_blas():  # implicit checks the BLAS thread count when built
            model = self._new_model()
        model.user_factors, model.item_factors = user_factors, item_factors
        self.model_ = model
        self.n_users_, self.n_items_ = n_users, n_items
        self.set_retrieval(self.retrieval, self.ann)  # a refit drops the indexes of the old factors
        return self

    def __getstate__(self) -> dict[str, Any]:
        # MLlib's factor DataFrames live in the Spark session only: never pickled with the model.
        return {k: v for k, v in self.__dict__.items() if k not in ("_factor_frames",)}

    # -- top-N on the executors -------------------------------------------------------------

    def stage_recommend_batches(self, users: np.ndarray, parts: tuple[Path, ...], N: int
                                ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]] | None:
        """Top-``N`` of the sorted ``users`` with the items of ``parts`` filtered, computed on the
        executors: ``(start, stop, ids, scores)`` per user block, in ``users`` order (what
        :func:`encore.candidates.recommend_batches` yields). ``None`` with ``top_n_on: driver``,
        without parts, or for another retrieval than exact: the caller then uses :meth:`recommend`."""
        self._check_fitted()
        if self.top_n_on != "executors" or not parts or self.retrieval != "exact":
            return None
        users = as_sorted_ids(users)
        return self._on_executors("user", lambda spark, frame: executor_top_n(
            spark, frame, self.item_factors, users, parts, N, self.block_users))

    def stage_similar_item_batches(self, N: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]] | None:
        """Every item's ``N`` most similar items (cosine, self excluded) computed on the executors,
        ``(start, stop, ids, scores)`` per item block in item order; ``None`` as for
        :meth:`stage_recommend_batches`."""
        self._check_fitted()
        if self.top_n_on != "executors" or self.retrieval != "exact":
            return None
        return self._on_executors("item", lambda spark, frame: executor_similar_items(
            spark, frame, self.item_factors, N, self.block_users))

    def _on_executors(self, which: Literal["user", "item"], job: Any
                      ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
        """``job(spark, factor_frame)``'s blocks, the factors as a DataFrame of (id, features): MLlib's
        own after a fit in this session (never collected again), else the driver's (a loaded model)
        written to a temporary Parquet file the executors read (a shared folder on a multi-machine
        cluster, as for :meth:`fit`)."""
        spark = _session()
        frame = (self.__dict__.get("_factor_frames") or {}).get(which)
        if frame is not None and frame.sparkSession._jsparkSession.equals(spark._jsparkSession):
            yield from job(spark, frame)
            return
        factors = self.user_factors if which == "user" else self.item_factors
        with tempfile.TemporaryDirectory(prefix="encore-als-spark-factors-") as folder:
            yield from job(spark, _frame_of(spark, factors, Path(folder) / f"{which}_factors.parquet"))

    def _solve(self, ratings: DataFrame, ratings_per_user: float, n_users: int, n_items: int
               ) -> tuple[np.ndarray, np.ndarray]:
        from pyspark.ml.recommendation import ALS

        als = ALS(rank=self.factors, maxIter=self.iterations, regParam=self.regularization / ratings_per_user,
                  implicitPrefs=True, alpha=self.alpha, seed=self.random_state if self.random_state is not None else 0,
                  numUserBlocks=self.blocks, numItemBlocks=self.blocks, userCol="user", itemCol="item",
                  ratingCol="rating", nonnegative=False)
        log.info("als_spark: MLlib ALS, %d factors, %d iterations, %d blocks on %s", self.factors,
                 self.iterations, self.blocks, ratings.sparkSession.sparkContext.master)
        fitted = als.fit(ratings)
        # Kept for the top-N on the executors (persisted by ALS: finalStorageLevel).
        self._factor_frames = {"user": fitted.userFactors, "item": fitted.itemFactors}
        return (_factor_matrix(fitted.userFactors, n_users, self.factors),
                _factor_matrix(fitted.itemFactors, n_items, self.factors))


def _session() -> SparkSession:
    from encore.data.spark_session import load_spark_settings, spark_session

    return spark_session(load_spark_settings())


def _ratings(spark: SparkSession, parts: tuple[Path, ...], weighting: str) -> DataFrame:
    """(user, item, rating): every pair's summed play weight (as ``to_csr`` sums duplicates), weighted."""
    from pyspark.sql import functions as F

    frame = spark.read.parquet(*(str(p) for p in parts)).select("user", "item", "weight")
    summed = frame.groupBy("user", "item").agg(F.sum(F.col("weight").cast("float")).cast("float").alias("w"))
    rating = F.log1p("w") if weighting == "log1p" else F.col("w")
    # float32 weights as the implicit path sees them; positive, as an implicit preference must be.
    return summed.select(F.col("user").cast("int"), F.col("item").cast("int"),
                         rating.cast("float").alias("rating")).where(F.col("rating") > 0)


def _factor_matrix(factors: DataFrame, n: int, k: int) -> np.ndarray:
    """MLlib's (id, features) rows as a dense float32 ``(n, k)``; ids never seen stay zero (no
    interactions solve to zero factors in implicit too)."""
    frame = factors.toPandas()
    out = np.zeros((n, k), dtype=np.float32)
    if len(frame):
        out[frame["id"].to_numpy(np.int64)] = np.stack(frame["features"].to_numpy()).astype(np.float32)
    return out


def as_sorted_ids(ids: np.ndarray) -> np.ndarray:
    """int64 ids, checked sorted and unique (blocks are ranges of ids)."""
    ids = np.asarray(ids, dtype=np.int64)
    if len(ids) > 1 and not np.all(np.diff(ids) > 0):
        raise ValueError("als_spark: the users of an executor top-N must be sorted and unique")
    return ids


def _frame_of(spark: SparkSession, factors: np.ndarray, path: Path) -> DataFrame:
    """(id int, features array<float>) of the non-zero rows of ``factors`` ``(n, k)``, as MLlib's
    factor DataFrames are, written to ``path`` and read back by the executors."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.flatnonzero(np.any(factors != 0, axis=1))
    values = pa.array(np.ascontiguousarray(factors[rows], dtype=np.float32).ravel())
    offsets = pa.array(np.arange(len(rows) + 1, dtype=np.int32) * factors.shape[1])
    pq.write_table(pa.table({"id": pa.array(rows.astype(np.int32)),
                             "features": pa.ListArray.from_arrays(offsets, values)}), path)
    return spark.read.parquet(str(path))


_LISTS_SCHEMA = "block int, row int, item int, score float, rank int"
"""One list entry: ``row`` is the user (or item) id, ``rank`` from 1; ``item`` -1 pads a short list."""


def _score_block(vectors: np.ndarray, items: np.ndarray, N: int, chunk_rows: int,
                 masked: list[np.ndarray] | None = None, self_ids: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Top-``N`` of ``vectors @ items.T`` ``(n, n_items)``, ``chunk_rows`` rows at a time (bounds the
    dense block); ``masked[r]``: item ids row ``r`` may not return; ``self_ids``: similar items, each
    row's own id dropped (``N + 1`` taken first, as the driver does)."""
    from encore.retrieval.topn import compact, topk

    n = len(vectors)
    width = N + 1 if self_ids is not None else N
    ids = np.full((n, N), -1, dtype=np.int64)
    scores = np.full((n, N), -np.inf, dtype=np.float32)
    for start in range(0, n, chunk_rows):
        stop = min(start + chunk_rows, n)
        block = vectors[start:stop] @ items.T
        if masked is not None:
            rows = np.repeat(np.arange(stop - start), [len(m) for m in masked[start:stop]])
            if len(rows):
                block[rows, np.concatenate(masked[start:stop])] = -np.inf
        found, best = topk(block, width, num_threads=1)
        if self_ids is not None:
            found, best = compact(found, best, found == self_ids[start:stop, None], N)
        ids[start:stop], scores[start:stop] = found, best
    return ids, scores


def _chunk_rows(n_items: int) -> int:
    """Rows per dense score block: ~32 MiB of float32 scores, at least one row."""
    return max(1, (32 << 20) // (4 * max(n_items, 1)))


def _long(block: int, rows: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    n, width = ids.shape
    return pd.DataFrame({"block": np.full(n * width, block, dtype=np.int32),
                         "row": np.repeat(rows.astype(np.int32), width), "item": ids.ravel().astype(np.int32),
                         "score": scores.ravel().astype(np.float32),
                         "rank": np.tile(np.arange(1, width + 1, dtype=np.int32), n)})


def executor_top_n(spark: SparkSession, user_frame: DataFrame, item_factors: np.ndarray, users: np.ndarray,
                   parts: tuple[Path, ...], N: int, block_users: int
                   ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Exact top-``N`` of ``users`` (sorted) on the executors, their items in ``parts`` filtered.

    ``user_frame``: (id, features) of users with factors (a user without a row scores zero on every
    item, as with zero factors on the driver); ``item_factors`` ``(n_items, k)`` is broadcast. Yields
    ``(start, stop, ids (stop-start, N) int64, scores float32)`` per block of ``block_users`` ids, in
    order; ``-1`` / ``-inf`` pad a user with fewer than ``N`` unplayed items.
    """
    from pyspark.sql import functions as F

    from encore.data.spark_session import PickledBroadcast

    k = item_factors.shape[1]
    items = PickledBroadcast(spark, np.ascontiguousarray(item_factors, dtype=np.float32))
    chunk = _chunk_rows(len(item_factors))
    if len(users) and users[-1] - users[0] + 1 == len(users):  # every user of a range: no list to ship
        wanted = spark.range(int(users[0]), int(users[-1]) + 1).select(F.col("id").cast("int"))
    else:
        wanted = spark.createDataFrame(pd.DataFrame({"id": users.astype(np.int32)}))
    queries = (wanted.join(user_frame, "id", "left")
               .withColumn("block", (F.col("id") / F.lit(block_users)).cast("int")))
    played = (spark.read.parquet(*(str(p) for p in parts)).select(F.col("user").cast("int").alias("id"),
                                                                  F.col("item").cast("int"))
              .withColumn("block", (F.col("id") / F.lit(block_users)).cast("int")))

    def block_lists(query: pd.DataFrame, heard: pd.DataFrame) -> pd.DataFrame:
        if query.empty:
            return pd.DataFrame({c: pd.Series(dtype=t) for c, t in
                                 (("block", "int32"), ("row", "int32"), ("item", "int32"), ("score", "float32"),
                                  ("rank", "int32"))})
        query = query.sort_values("id")
        rows = query["id"].to_numpy(np.int64)
        vectors = np.zeros((len(rows), k), dtype=np.float32)
        present = query["features"].notna().to_numpy()
        if present.any():
            vectors[present] = np.stack(query["features"][present].to_numpy()).astype(np.float32)
        heard = heard[heard["id"].isin(rows)].sort_values("id")
        where = np.searchsorted(heard["id"].to_numpy(np.int64), rows, side="left")
        ends = np.searchsorted(heard["id"].to_numpy(np.int64), rows, side="right")
        heard_items = heard["item"].to_numpy(np.int64)
        masked = [heard_items[a:b] for a, b in zip(where, ends, strict=True)]
        ids, scores = _score_block(vectors, items.value(), N, chunk, masked)
        return _long(int(query["block"].iloc[0]), rows, ids, scores)

    lists = (queries.groupBy("block").cogroup(played.groupBy("block"))
             .applyInPandas(block_lists, _LISTS_SCHEMA))
    try:
        yield from _stream_blocks(lists, users, N, "users")
    finally:
        items.destroy()


def executor_similar_items(spark: SparkSession, item_frame: DataFrame, item_factors: np.ndarray, N: int,
                           block_items: int) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Every item's ``N`` most similar items by cosine of factors, self excluded, on the executors
    (unit item factors broadcast, items in blocks of ``block_items`` ids). An item with a zero
    vector has no similar items (``-1`` rows), and is never returned. Yields as :func:`executor_top_n`."""
    from pyspark.sql import functions as F

    from encore.data.spark_session import PickledBroadcast

    from .factorization import unit_rows

    n_items = len(item_factors)
    unit = unit_rows(np.asarray(item_factors, dtype=np.float32))
    zero = ~np.any(unit != 0, axis=1)
    items = PickledBroadcast(spark, (unit, zero))
    chunk = _chunk_rows(n_items)
    queries = item_frame.withColumn("block", (F.col("id") / F.lit(block_items)).cast("int"))

    def block_lists(query: pd.DataFrame) -> pd.DataFrame:
        query = query.sort_values("id")
        rows = query["id"].to_numpy(np.int64)
        all_unit, all_zero = items.value()
        vectors = all_unit[rows]
        never = np.flatnonzero(all_zero)
        ids, scores = _score_block(vectors, all_unit, N, chunk, [never] * len(rows), self_ids=rows)
        empty = ~np.any(vectors != 0, axis=1)
        ids[empty], scores[empty] = -1, -np.inf
        return _long(int(query["block"].iloc[0]), rows, ids, scores)

    lists = queries.groupBy("block").applyInPandas(block_lists, _LISTS_SCHEMA)
    try:
        yield from _stream_blocks(lists, np.arange(n_items, dtype=np.int64), N, "items")
    finally:
        items.destroy()


def _stream_blocks(lists: DataFrame, rows: np.ndarray, N: int, what: str
                   ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray]]:
    """Write ``lists`` (one folder per block, by the executors) and read them back block by block in
    ``rows`` order; a row the executors returned nothing for (no factors row, e.g. an item never
    played) gets ``-1`` / ``-inf``."""
    with tempfile.TemporaryDirectory(prefix="encore-als-spark-topn-") as folder:
        out = Path(folder) / "lists"
        lists.write.partitionBy("block").parquet(str(out))
        blocks = sorted(int(p.name.split("=", 1)[1]) for p in out.glob("block=*"))
        done = 0
        for block in blocks:
            frame = pd.read_parquet(out / f"block={block}").sort_values(["row", "rank"], kind="stable")
            got = frame["row"].to_numpy(np.int64)[::N]
            stop = int(np.searchsorted(rows, got[-1], side="right")) if len(got) else done
            start = int(np.searchsorted(rows, got[0], side="left")) if len(got) else done
            if start > done:  # rows with no result at all before this block
                yield _empty_rows(done, start, N)
            ids = np.full((stop - start, N), -1, dtype=np.int64)
            scores = np.full((stop - start, N), -np.inf, dtype=np.float32)
            at = np.searchsorted(rows[start:stop], got)
            ids[at] = frame["item"].to_numpy(np.int64).reshape(-1, N)
            scores[at] = frame["score"].to_numpy(np.float32).reshape(-1, N)
            scores[ids < 0] = -np.inf
            yield start, stop, ids, scores
            done = stop
            shutil.rmtree(out / f"block={block}")  # the driver's disk holds one block at a time too
        if done < len(rows):
            yield _empty_rows(done, len(rows), N)
        log.info("als_spark: %d %s' top-%d from %d executor blocks", len(rows), what, N, len(blocks))


def _empty_rows(start: int, stop: int, N: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    return (start, stop, np.full((stop - start, N), -1, dtype=np.int64),
            np.full((stop - start, N), -np.inf, dtype=np.float32))
