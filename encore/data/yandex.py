"""Yandex-Music-style Parquet data: listening events, track metadata, catalogue names.

Files:

* interactions: ``user_id``, ``track_id``, ``started_at`` (timestamp, or ISO 8601 / epoch)
  - one row per listen. The weight of a (user, track) pair is its number of listens and its
  timestamp the last listen (events aggregated like duplicates: counted in
  ``stats["listen_events_aggregated"]``).
* tracks: ``track_id`` and list-of-int columns ``genres``, ``artists``, ``albums`` (any
  that are present, at least one). They become ``item_tags`` with namespaced tag ids
  ``"genre:12"``, ``"artist:7"``, ``"album:3"`` (weight 1). Metadata of tracks nobody
  listened to is dropped (``stats["tracks_without_interactions"]``): items are the
  listened tracks. Listened tracks without metadata are kept (``items_without_metadata``
  is not used here; they simply have no tags).
* catalog_names (optional): ``id``, ``type`` (``track``/``artist``/``album``/``genre``),
  ``name``. Track names become ``item_names``, the others tag names; anything without a
  name is named by its id.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from encore.data.dataset import DataError, MusicDataset
from encore.data.events import EventSource, read_events
from encore.data.parsing import (
    SideTable,
    build_dataset,
    check_unique,
    read_table,
    to_id_column,
    to_numeric_column,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

FEATURES = {"genres": "genre", "artists": "artist", "albums": "album"}
"""List column of the tracks file -> tag namespace."""

CATALOG_TYPES = ("track", "artist", "album", "genre")


def load_yandex(
    interactions: str | Path,
    tracks: str | Path,
    catalog_names: str | Path | None = None,
    *,
    spark: SparkSession | None = None,
) -> MusicDataset:
    """Load Yandex-style Parquet files; see the module docstring for the rules."""
    interactions, tracks = Path(interactions), Path(tracks)
    files: dict[str, Path] = {"interactions": interactions, "tracks": tracks}

    ifile = interactions.name
    events = read_events(
        EventSource(interactions, "interactions", user="user_id", item="track_id", timestamp="started_at",
                    checks=("user", "item", "timestamp")),
        spark,
    )
    frame = events.interactions
    listened = pd.Index(pd.unique(frame["item"]))

    meta = read_table(tracks, role="tracks", id_columns=["track_id"])
    tfile = tracks.name
    if "track_id" not in meta.columns:
        found = ", ".join(repr(str(c)) for c in meta.columns)
        raise DataError(tfile, f"missing in the tracks file; columns found: {found}", column="track_id")
    present = [c for c in FEATURES if c in meta.columns]
    if not present:
        found = ", ".join(repr(str(c)) for c in meta.columns)
        raise DataError(tfile, f"needs at least one of genres, artists, albums; columns found: {found}")
    meta = meta.assign(track_id=to_id_column(meta, "track_id", file=tfile))
    check_unique(meta, "track_id", file=tfile)
    heard = meta["track_id"].isin(listened).to_numpy()
    stats = {"tracks_without_interactions": int((~heard).sum())}
    if not heard.all():
        log.info("%s: ignoring metadata of %d tracks nobody listened to", tfile, int((~heard).sum()))
    meta = meta.loc[heard]

    # Explode each list column (vectorised); the index still points at the track's row.
    parts = []
    for column in present:
        exploded = meta[["track_id", column]].explode(column)
        exploded = exploded.loc[exploded[column].notna()]
        if exploded.empty:
            continue
        values = to_numeric_column(exploded, column, file=tfile, integer=True)
        parts.append(
            pd.DataFrame({"item": exploded["track_id"], "tag": FEATURES[column] + ":" + values.astype(str)})
        )
    if parts:
        item_tags_frame = pd.concat(parts)
    else:
        item_tags_frame = pd.DataFrame({"item": meta["track_id"].iloc[:0], "tag": pd.Series([], dtype=object)})

    item_names = None
    tag_labels = pd.Series(pd.unique(item_tags_frame["tag"]), dtype=object)
    tag_names = tag_labels.copy()
    if catalog_names is not None:
        catalog_names = Path(catalog_names)
        files["catalog_names"] = catalog_names
        cfile = catalog_names.name
        names = read_table(catalog_names, columns=["id", "type", "name"], role="catalogue names",
                           id_columns=["id"])
        names = names.assign(id=to_id_column(names, "id", file=cfile), type=names["type"].astype(str))
        bad = (~names["type"].isin(CATALOG_TYPES)).to_numpy()
        if bad.any():
            pos = int(np.flatnonzero(bad)[0])
            raise DataError(
                cfile, f"{names['type'].iloc[pos]!r} is not one of {', '.join(CATALOG_TYPES)}",
                column="type", row=int(names.index[pos]) + 1,
            )
        check_unique(names.assign(key=names["type"] + ":" + names["id"].astype(str)), "key", file=cfile)
        is_track = (names["type"] == "track").to_numpy()
        item_names = pd.Series(names["name"][is_track].to_numpy(object), index=pd.Index(names["id"][is_track]))
        lookup = pd.Series(
            names["name"][~is_track].to_numpy(object),
            index=(names["type"] + ":" + names["id"].astype(str))[~is_track].to_numpy(),
        )
        tag_names = lookup.reindex(tag_labels.to_numpy()).reset_index(drop=True).fillna(tag_labels)

    return build_dataset(
        "yandex",
        frame,
        interactions_file=ifile,
        item_names=item_names,
        tag_catalog=pd.Series(tag_names.to_numpy(object), index=pd.Index(tag_labels.to_numpy(object))),
        tag_catalog_file=tfile,
        item_tags=SideTable(
            item_tags_frame, file=tfile, source_columns={"item": "track_id", "tag": ", ".join(present)}
        ),
        files=files,
        stats=stats,
        aggregate_stat="listen_events_aggregated",
        source_rows=events.source_rows,
    )
