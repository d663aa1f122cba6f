"""The data sources: one declaration per source, chosen by ``dataset.kind``.

A source is a :class:`DataSource`: a pydantic model whose fields are its settings, whose
:meth:`~DataSource.load` reads, validates and builds a :class:`~encore.data.dataset.MusicDataset`
(through :mod:`encore.data.parsing`'s helpers), and whose :meth:`~DataSource.files` names the
files it reads (what keys the reuse of prepared data on their content). The built-in sources
are below; a user's own is a subclass named in the experiment as ``dataset.kind:
package.module:ClassName`` (docs/extending.md, "Add a data source"), nothing in Encore edited.

Relative paths are left as given; the caller resolves them (against the repo root). The
loaders are imported when a source loads, so validating a config stays cheap.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import (
    Discriminator,
    Field,
    PlainSerializer,
    PlainValidator,
    Tag,
    ValidationError,
    model_validator,
)

from encore.config.types import Fraction, PositiveFloat, PositiveInt, UnitInterval
from encore.config.types import Strict as _Strict
from encore.config.validation import IMPORTED, KIND_TAG, kind_tag, rejected_settings
from encore.data.columns import ColumnMapping, FeatureColumnMapping, ReleaseColumnMapping
from encore.plugins import import_subclass, is_import_path

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from encore.data.dataset import MusicDataset

LASTFM2K_URL = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"

__all__ = ["BUILTIN_SOURCES", "ColumnMapping", "DataSource", "DatasetConfig", "FeatureColumnMapping",
           "source_class"]


class DataSource(_Strict):
    """A data source: its settings (the model's fields, ``kind`` first) and its loader.

    Subclass it, declare your settings as fields, implement :meth:`load` and, if it reads
    files, :meth:`files`. A field ``engine: Engine`` makes the source accept ``engine: spark``
    (then :meth:`load` gets the process's Spark session).
    """

    kind: str

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        """Read, validate and build the dataset (bad input: :class:`~encore.data.dataset.DataError`
        naming file, column and row). ``data_dir`` is the run's data folder (downloads go there)."""
        raise NotImplementedError(f"{type(self).__name__}.load")

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        """The files :meth:`load` reads, by role, found without reading them (none by default)."""
        return {}


Engine = Literal["pandas", "spark"]
"""How an event source is read and aggregated: pandas in this process, or Spark with the
session of ``config/spark_config.yaml`` (same dataset, same errors; docs/data.md, "Spark")."""


class Lastfm2kConfig(DataSource):
    """HetRec 2011 Last.fm 2K. Without ``path`` the folder is looked up (ENCORE_DATA_DIR,
    then ``data/``) and downloaded from ``url`` if ``download``."""

    kind: Literal["lastfm2k"] = "lastfm2k"
    path: Path | None = None
    download: bool = True
    url: str = LASTFM2K_URL
    # "plays": user_artists.dat play counts (no timestamps). "tagging": the tagging timeline of
    # user_taggedartists.dat, one interaction per (user, artist) at its first tagging date,
    # weight 1, for time splits (see encore/data/lastfm2k.py).
    interactions: Literal["plays", "tagging"] = "plays"
    # tagging: tag events dated before this are impossible (data collected 2005-2011) and dropped.
    tagging_min_date: date = date(2005, 1, 1)

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.lastfm2k import load_lastfm2k, resolve_lastfm2k_dir

        return load_lastfm2k(resolve_lastfm2k_dir(self, Path(data_dir)), interactions=self.interactions,
                             tagging_min_date=self.tagging_min_date)

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        """None until the folder exists (prepare downloads it)."""
        from encore.data.lastfm2k import lastfm2k_files

        return lastfm2k_files(self, Path(data_dir))


class Lastfm1kConfig(DataSource):
    """Last.fm 1K listening events (``userid-timestamp-artid-artname-traid-traname.tsv``)."""

    kind: Literal["lastfm1k"] = "lastfm1k"
    path: Path
    item: Literal["artist", "track"] = "artist"
    max_rows: PositiveInt | None = None
    engine: Engine = "pandas"

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.lastfm1k import load_lastfm1k

        return load_lastfm1k(self.path, item=self.item, max_rows=self.max_rows, spark=spark)

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        return {"interactions": Path(self.path)}


class Lastfm360kConfig(DataSource):
    """Last.fm 360K play counts (``usersha1-artmbid-artname-plays.tsv``)."""

    kind: Literal["lastfm360k"] = "lastfm360k"
    path: Path
    max_rows: PositiveInt | None = None
    engine: Engine = "pandas"

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.lastfm360k import load_lastfm360k

        return load_lastfm360k(self.path, max_rows=self.max_rows, spark=spark)

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        return {"interactions": Path(self.path)}


class YandexConfig(DataSource):
    """Yandex-Music-style Parquet files: listens, track metadata, optional catalogue names."""

    kind: Literal["yandex"] = "yandex"
    interactions: Path
    tracks: Path
    catalog_names: Path | None = None
    engine: Engine = "pandas"

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.yandex import load_yandex

        return load_yandex(self.interactions, self.tracks, self.catalog_names, spark=spark)

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        files = {"interactions": Path(self.interactions), "tracks": Path(self.tracks)}
        return files | ({"catalog_names": Path(self.catalog_names)} if self.catalog_names is not None else {})


class TabularConfig(DataSource):
    """Any CSV/TSV or Parquet interactions file (+ optional item features file)."""

    kind: Literal["tabular"] = "tabular"
    interactions: Path
    columns: ColumnMapping = ColumnMapping()
    item_features: Path | None = None
    item_features_columns: FeatureColumnMapping = FeatureColumnMapping()
    sep: str = Field(default=",", min_length=1, max_length=1)
    engine: Engine = "pandas"
    # New keys: left out of the resolved config at their defaults (fingerprints do not change).
    item_releases: Path | None = Field(default=None, exclude_if=lambda value: value is None)
    """Optional file of item release dates (catalogue metadata): its items join the catalogue,
    listened to or not (upcoming releases included)."""
    item_releases_columns: ReleaseColumnMapping = Field(
        default_factory=ReleaseColumnMapping, exclude_if=lambda value: value == ReleaseColumnMapping())

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.tabular import load_tabular

        return load_tabular(self.interactions, self.columns, item_features=self.item_features,
                            item_features_columns=self.item_features_columns, sep=self.sep, spark=spark,
                            item_releases=self.item_releases, item_releases_columns=self.item_releases_columns)

    def files(self, *, data_dir: Path) -> dict[str, Path]:
        files = {"interactions": Path(self.interactions)}
        if self.item_features is not None:
            files["item_features"] = Path(self.item_features)
        return files | ({"item_releases": Path(self.item_releases)} if self.item_releases is not None else {})


class SyntheticConfig(DataSource):
    """Seeded music-like data of any size (see ``synthetic.generate_synthetic``)."""

    kind: Literal["synthetic"] = "synthetic"
    n_users: PositiveInt = 2000
    n_items: PositiveInt = 5000
    n_interactions: PositiveInt = 100_000
    n_tags: PositiveInt = 200
    n_clusters: PositiveInt = 20
    popularity_exponent: Annotated[float, Field(ge=0, le=5)] = 1.0
    # The finer level of taste: genres (n_clusters) split into scenes of about this many artists.
    scene_size: PositiveInt = 60
    # Mean number of scenes a user follows (at least 1; heavy users follow more).
    user_scenes: Annotated[float, Field(ge=1, le=100)] = 3.0
    # Mean share of a user's listens inside their scenes (the rest: their genre, or global charts).
    loyalty: Fraction = 0.75
    # Share of artists released during start..end (their listens rise at release, then decay).
    new_release_share: UnitInterval = 0.5
    trend_half_life_days: PositiveFloat = 60.0
    random_state: int = 42
    start: date = date(2019, 1, 1)
    end: date = date(2021, 1, 1)

    @model_validator(mode="after")
    def _feasible(self) -> SyntheticConfig:
        if self.n_interactions > self.n_users * self.n_items:
            raise ValueError(
                f"n_interactions={self.n_interactions} exceeds the {self.n_users} x {self.n_items} = "
                f"{self.n_users * self.n_items} possible (user, item) pairs"
            )
        if self.n_interactions < self.n_users:
            raise ValueError(
                f"n_interactions={self.n_interactions} is below n_users={self.n_users} "
                "(every user listens to at least one item)"
            )
        if self.n_clusters > self.n_items:
            raise ValueError(f"n_clusters={self.n_clusters} exceeds n_items={self.n_items}")
        if self.start >= self.end:
            raise ValueError(f"start ({self.start}) must be before end ({self.end})")
        return self

    def load(self, *, data_dir: Path, spark: SparkSession | None = None) -> MusicDataset:
        from encore.data.synthetic import generate_synthetic

        return generate_synthetic(self)


BUILTIN_SOURCES: dict[str, type[DataSource]] = {cls.model_fields["kind"].default: cls for cls in (
    Lastfm2kConfig, Lastfm1kConfig, Lastfm360kConfig, YandexConfig, TabularConfig, SyntheticConfig)}
"""The built-in sources by ``kind``: the one list of them (the config union is derived from it)."""


def source_class(kind: str) -> type[DataSource]:
    """The source of ``kind``: a built-in name, or a user's ``package.module:Class`` imported on demand
    (ValueError naming the kind and what is wrong)."""
    if kind in BUILTIN_SOURCES:
        return BUILTIN_SOURCES[kind]
    if not is_import_path(kind):
        raise ValueError(f"unknown source '{kind}'; built-in: {', '.join(BUILTIN_SOURCES)}; or your own source "
                         "as 'package.module:ClassName'")
    try:
        return import_subclass(kind, DataSource, "encore.data.DataSource")
    except ValueError as exc:
        raise ValueError(f"source '{kind}': {exc}") from None


def _validate_imported(value: Any) -> DataSource:
    """A user's source (``kind: module:Class``): import it and validate the settings with it."""
    if isinstance(value, DataSource):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping of settings, got {type(value).__name__}")
    try:
        cls = source_class(str(value.get("kind")))
    except ValueError as exc:
        raise ValueError(f"kind: {exc}") from None
    try:
        return cls.model_validate(value)
    except ValidationError as exc:
        raise ValueError(f"{cls.__name__} of kind '{value.get('kind')}' rejects the settings: "
                         f"{rejected_settings(exc)}") from None


DatasetConfig = Annotated[
    Union[(*(Annotated[cls, Tag(f"{KIND_TAG}{kind}")] for kind, cls in BUILTIN_SOURCES.items()),
           Annotated[DataSource, PlainValidator(_validate_imported),
                     PlainSerializer(lambda v: v.model_dump(mode="json")), Tag(f"{KIND_TAG}{IMPORTED}")])],
    Discriminator(lambda value: kind_tag(value, BUILTIN_SOURCES), custom_error_type="kind_missing",
                  custom_error_message="the dataset needs a `kind`: a built-in source "
                                       f"({', '.join(BUILTIN_SOURCES)}) or 'package.module:ClassName'"),
]
"""Any source's configuration: a built-in source chosen by ``kind``, or a user's ``module:Class``."""
