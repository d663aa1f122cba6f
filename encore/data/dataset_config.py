"""Configuration of the data sources: one pydantic model per source, chosen by ``kind``.

Relative paths are left as given; the caller resolves them (against the repo root).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from encore.config.types import Fraction, PositiveFloat, PositiveInt, UnitInterval
from encore.config.types import Strict as _Strict

LASTFM2K_URL = "https://files.grouplens.org/datasets/hetrec2011/hetrec2011-lastfm-2k.zip"



Engine = Literal["pandas", "spark"]
"""How an event source is read and aggregated: pandas in this process, or Spark with the
session of ``config/spark_config.yaml`` (same dataset, same errors; README, "Spark")."""


class Lastfm2kConfig(_Strict):
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


class Lastfm1kConfig(_Strict):
    """Last.fm 1K listening events (``userid-timestamp-artid-artname-traid-traname.tsv``)."""

    kind: Literal["lastfm1k"] = "lastfm1k"
    path: Path
    item: Literal["artist", "track"] = "artist"
    max_rows: PositiveInt | None = None
    engine: Engine = "pandas"


class Lastfm360kConfig(_Strict):
    """Last.fm 360K play counts (``usersha1-artmbid-artname-plays.tsv``)."""

    kind: Literal["lastfm360k"] = "lastfm360k"
    path: Path
    max_rows: PositiveInt | None = None
    engine: Engine = "pandas"


class YandexConfig(_Strict):
    """Yandex-Music-style Parquet files: listens, track metadata, optional catalogue names."""

    kind: Literal["yandex"] = "yandex"
    interactions: Path
    tracks: Path
    catalog_names: Path | None = None
    engine: Engine = "pandas"


class ColumnMapping(_Strict):
    """Which columns of a tabular interactions file hold what."""

    user: str = "user"
    item: str = "item"
    weight: str | None = None
    timestamp: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> ColumnMapping:
        used = [c for c in (self.user, self.item, self.weight, self.timestamp) if c is not None]
        if len(set(used)) != len(used):
            raise ValueError(f"columns must be distinct, got {used}")
        return self


class FeatureColumnMapping(_Strict):
    """Which columns of a tabular item-features file hold what."""

    item: str = "item"
    feature: str = "feature"
    weight: str | None = None

    @model_validator(mode="after")
    def _distinct(self) -> FeatureColumnMapping:
        used = [c for c in (self.item, self.feature, self.weight) if c is not None]
        if len(set(used)) != len(used):
            raise ValueError(f"columns must be distinct, got {used}")
        return self


class TabularConfig(_Strict):
    """Any CSV/TSV or Parquet interactions file (+ optional item features file)."""

    kind: Literal["tabular"] = "tabular"
    interactions: Path
    columns: ColumnMapping = ColumnMapping()
    item_features: Path | None = None
    item_features_columns: FeatureColumnMapping = FeatureColumnMapping()
    sep: str = Field(default=",", min_length=1, max_length=1)
    engine: Engine = "pandas"


class SyntheticConfig(_Strict):
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


DatasetConfig = Annotated[
    Lastfm2kConfig | Lastfm1kConfig | Lastfm360kConfig | YandexConfig | TabularConfig | SyntheticConfig,
    Field(discriminator="kind"),
]
"""Any source's configuration; pydantic picks the model by ``kind``."""
