"""The data layer: every source becomes one :class:`MusicDataset`.

``load_dataset(cfg, data_dir=...)`` dispatches on ``cfg.kind``; bad input raises
:class:`DataError` naming the file, column and row.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from encore.data.dataset import DataError, MusicDataset
from encore.data.dataset_config import (
    DatasetConfig,
    Lastfm1kConfig,
    Lastfm2kConfig,
    Lastfm360kConfig,
    SyntheticConfig,
    TabularConfig,
    YandexConfig,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from encore.data.spark_session import SparkSettings

__all__ = ["DataError", "DatasetConfig", "MusicDataset", "dataset_files", "load_dataset"]


def load_dataset(
    cfg: DatasetConfig, *, data_dir: Path, spark_settings: SparkSettings | None = None
) -> MusicDataset:
    """Load the dataset ``cfg`` describes.

    ``data_dir`` is the repository's git-ignored ``data/`` folder, where Last.fm 2K is
    looked for (after ``cfg.path`` and ``$ENCORE_DATA_DIR``) and downloaded to.
    Sources with ``engine: spark`` run in the process's Spark session, started from
    ``spark_settings`` (default: ``config/spark_config.yaml`` or ``$ENCORE_SPARK_CONFIG``).
    """
    # Imports are local so that importing the package stays cheap.
    spark = _spark(spark_settings) if getattr(cfg, "engine", "pandas") == "spark" else None
    if isinstance(cfg, Lastfm2kConfig):
        from encore.data.lastfm2k import load_lastfm2k, resolve_lastfm2k_dir

        return load_lastfm2k(resolve_lastfm2k_dir(cfg, Path(data_dir)), interactions=cfg.interactions,
                            tagging_min_date=cfg.tagging_min_date)
    if isinstance(cfg, Lastfm1kConfig):
        from encore.data.lastfm1k import load_lastfm1k

        return load_lastfm1k(cfg.path, item=cfg.item, max_rows=cfg.max_rows, spark=spark)
    if isinstance(cfg, Lastfm360kConfig):
        from encore.data.lastfm360k import load_lastfm360k

        return load_lastfm360k(cfg.path, max_rows=cfg.max_rows, spark=spark)
    if isinstance(cfg, YandexConfig):
        from encore.data.yandex import load_yandex

        return load_yandex(cfg.interactions, cfg.tracks, cfg.catalog_names, spark=spark)
    if isinstance(cfg, TabularConfig):
        from encore.data.tabular import load_tabular

        return load_tabular(
            cfg.interactions,
            cfg.columns,
            item_features=cfg.item_features,
            item_features_columns=cfg.item_features_columns,
            sep=cfg.sep,
            spark=spark,
        )
    if isinstance(cfg, SyntheticConfig):
        from encore.data.synthetic import generate_synthetic

        return generate_synthetic(cfg)
    raise TypeError(f"unknown dataset config {type(cfg).__name__}")


def dataset_files(cfg: DatasetConfig, *, data_dir: Path) -> dict[str, Path]:
    """The files loading ``cfg`` reads, by role (the roles of ``MusicDataset.files``), found
    without reading them: what keys the reuse of prepared data on the data's content.
    Synthetic data has none; Last.fm 2K has none until its folder exists (downloaded by prepare).
    """
    if isinstance(cfg, Lastfm2kConfig):
        from encore.data.lastfm2k import lastfm2k_files

        return lastfm2k_files(cfg, Path(data_dir))
    if isinstance(cfg, Lastfm1kConfig | Lastfm360kConfig):
        return {"interactions": Path(cfg.path)}
    if isinstance(cfg, YandexConfig):
        files = {"interactions": Path(cfg.interactions), "tracks": Path(cfg.tracks)}
        return files | ({"catalog_names": Path(cfg.catalog_names)} if cfg.catalog_names is not None else {})
    if isinstance(cfg, TabularConfig):
        files = {"interactions": Path(cfg.interactions)}
        return files | ({"item_features": Path(cfg.item_features)} if cfg.item_features is not None else {})
    return {}


def _spark(settings: SparkSettings | None) -> SparkSession:
    from encore.data.spark_session import load_spark_settings, spark_session

    return spark_session(settings if settings is not None else load_spark_settings())
