"""Implicit-feedback ALS fitted by Spark MLlib on the executors (``kind: als_spark``).

The fit runs where the Spark settings point (``config/spark_config.yaml``,
``ENCORE_SPARK_CONFIG``, ``ENCORE_SPARK_MASTER``): ``local[*]`` or a cluster. The executors
read the stage's prepared Parquet parts themselves (``StageView.parts``), sum each (user,
item) pair, weight it and solve; only the factors come back to the driver. From then on the
model is the ``implicit`` ALS of :mod:`.als` with those factors: candidates, similar items,
pair scores and the saved ``.npz`` are the same code and the same formats, so the ranker,
evaluate, register and serving take it unchanged. (Top-N on the executors, for user counts
whose factors do not fit the driver, is a later step: see docs/scaling.md.)

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
import tempfile
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
        random_state: int | None = 42,
    ):
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.weighting = weighting
        self.blocks = blocks
        self.num_threads = num_threads
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
        return self

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
