"""The data layer: every source becomes one :class:`MusicDataset`.

A source is a :class:`DataSource` (its settings and its loader, :mod:`.dataset_config`), chosen
by ``dataset.kind``: a built-in name or a user's ``package.module:Class``.
``load_dataset(cfg, data_dir=...)`` runs its loader; bad input raises :class:`DataError`
naming the file, column and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from encore.data.dataset import DataError, MusicDataset
from encore.data.dataset_config import (
    BUILTIN_SOURCES,
    DatasetConfig,
    DataSource,
    source_class,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from encore.data.spark_session import SparkSettings

__all__ = ["BUILTIN_SOURCES", "DataError", "DataSource", "DatasetConfig", "MusicDataset", "dataset_files",
           "load_dataset", "source_class"]


def load_dataset(
    cfg: DatasetConfig, *, data_dir: Path, spark_settings: SparkSettings | None = None
) -> MusicDataset:
    """Load the dataset ``cfg`` describes (its source's :meth:`~DataSource.load`).

    ``data_dir`` is the repository's git-ignored ``data/`` folder, where Last.fm 2K is
    looked for (after ``cfg.path`` and ``$ENCORE_DATA_DIR``) and downloaded to.
    Sources with ``engine: spark`` run in the process's Spark session, started from
    ``spark_settings`` (default: ``config/spark_config.yaml`` or ``$ENCORE_SPARK_CONFIG``).
    """
    spark = _spark(spark_settings) if getattr(cfg, "engine", "pandas") == "spark" else None
    return cfg.load(data_dir=Path(data_dir), spark=spark)


def dataset_files(cfg: DatasetConfig, *, data_dir: Path) -> dict[str, Path]:
    """The files loading ``cfg`` reads, by role (the roles of ``MusicDataset.files``), found
    without reading them: what keys the reuse of prepared data on the data's content.
    Synthetic data has none; Last.fm 2K has none until its folder exists (downloaded by prepare).
    """
    return cfg.files(data_dir=Path(data_dir))


def _spark(settings: SparkSettings | None) -> SparkSession:
    from encore.data.spark_session import load_spark_settings, spark_session

    return spark_session(settings if settings is not None else load_spark_settings())
