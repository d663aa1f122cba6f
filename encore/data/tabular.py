"""Any interactions table (CSV/TSV or Parquet) described by a column mapping.

* interactions: the mapped ``user`` and ``item`` columns are required; ``weight``
  (default 1.0 per row, i.e. counts after aggregation) and ``timestamp`` (ISO 8601 or
  Unix epoch) are optional. Repeated (user, item) rows are aggregated: weights summed,
  latest timestamp (``stats["duplicate_rows_aggregated"]``).
* item features (optional): ``item``, ``feature`` and optional ``weight`` columns ->
  ``item_tags`` with one tag per distinct feature value (tag names = the values). An item
  that occurs in neither the interactions nor the releases file is an error (naming file,
  column and row): those are the item catalogue here, so such a row is most likely a wrong id.
  Repeated (item, feature) rows keep their largest weight.
* item releases (optional): ``item`` and ``release`` (ISO 8601 or Unix epoch) columns ->
  ``item_release`` (catalogue metadata). Its items join the catalogue whether anyone listened to
  them or not (upcoming releases), so the item features may describe them too. Every row has a
  date (leave an item without one out); an item listed twice is an error naming the row.

Ids that are all canonical integers (``"42"``, not ``"007"``) are read as integers, so
they sort numerically; others stay strings.

With a Spark session (``dataset.engine: spark``) the interactions are read and aggregated
by Spark (:mod:`encore.data.events`): same dataset, same errors; the item
features file is read with pandas either way.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from encore.data.columns import ColumnMapping, FeatureColumnMapping, ReleaseColumnMapping
from encore.data.dataset import MusicDataset
from encore.data.events import EventSource, read_events
from encore.data.parsing import (
    SideTable,
    build_dataset,
    check_positive_weights,
    check_unique,
    read_table,
    to_id_column,
    to_timestamp_column,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def load_tabular(
    interactions: str | Path,
    columns: ColumnMapping,
    *,
    item_features: str | Path | None = None,
    item_features_columns: FeatureColumnMapping | None = None,
    sep: str = ",",
    spark: SparkSession | None = None,
    item_releases: str | Path | None = None,
    item_releases_columns: ReleaseColumnMapping | None = None,
) -> MusicDataset:
    """Load a generic interactions table (+ item features, item releases); see the module docstring."""
    interactions = Path(interactions)
    file = interactions.name
    events = read_events(
        EventSource(interactions, "interactions", user=columns.user, item=columns.item, weight=columns.weight,
                    timestamp=columns.timestamp, sep=sep),
        spark,
    )
    frame = events.interactions
    files: dict[str, Path] = {"interactions": interactions}

    catalog = release = None
    if item_releases is not None:
        item_releases = Path(item_releases)
        files["item_releases"] = item_releases
        rc = item_releases_columns or ReleaseColumnMapping()
        rfile = item_releases.name
        releases = read_table(item_releases, columns=[rc.item, rc.release], sep=sep, role="item releases",
                              id_columns=[rc.item])
        ids = _like_interactions(to_id_column(releases, rc.item, file=rfile), releases[rc.item], frame)
        check_unique(releases.assign(**{rc.item: ids}), rc.item, file=rfile)
        catalog = pd.Index(ids)
        release = pd.Series(to_timestamp_column(releases, rc.release, file=rfile).to_numpy(), index=catalog)

    item_tags = None
    if item_features is not None:
        item_features = Path(item_features)
        files["item_features"] = item_features
        fc = item_features_columns or FeatureColumnMapping()
        ffile = item_features.name
        wanted = [c for c in (fc.item, fc.feature, fc.weight) if c is not None]
        features = read_table(item_features, columns=wanted, sep=sep, role="item features",
                              id_columns=[fc.item, fc.feature])
        item_ids = _like_interactions(to_id_column(features, fc.item, file=ffile), features[fc.item], frame)
        side = pd.DataFrame({"item": item_ids, "tag": to_id_column(features, fc.feature, file=ffile, integer=False)})
        if fc.weight:
            side["weight"] = check_positive_weights(features, fc.weight, file=ffile)
        item_tags = SideTable(side, file=ffile, source_columns={"item": fc.item, "tag": fc.feature})

    return build_dataset(
        interactions.stem,
        frame,
        interactions_file=file,
        item_catalog=catalog,
        item_catalog_file=item_releases.name if item_releases is not None else None,
        item_release=release,
        item_tags=item_tags,
        files=files,
        source_rows=events.source_rows,
        weight_column=columns.weight or "weight",
    )


def _like_interactions(ids: pd.Series, raw: pd.Series, frame: pd.DataFrame) -> pd.Series:
    """Item ids of a side file with the interactions' id type: integer ids become strings when the
    interactions' ids are strings (int vs str would never match)."""
    if frame["item"].dtype.kind not in "iu" and ids.dtype.kind in "iu":
        return raw.astype(str)
    return ids
