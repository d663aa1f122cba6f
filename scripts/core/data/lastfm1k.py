"""Last.fm 1K (Celma 2010): the full listening history of ~1,000 users.

``userid-timestamp-artid-artname-traid-traname.tsv``: tab-separated, no header, one
listening event per line::

    user_000001  2009-05-04T23:08:57Z  f1b1cf71-...  Deep Dish  <track mbid>  Fuck Me Im Famous

Items are artists (default) or tracks. An artist is keyed by its MusicBrainz id, falling
back to its name when the id is empty (many events have none); a track likewise by its
MusicBrainz id, falling back to ``"<artist> - <track>"``. The weight of a (user, item)
pair is its number of plays and its timestamp the last play: events are aggregated by the
same rule as duplicates everywhere (weights summed, latest timestamp), counted in
``stats["play_events_aggregated"]``. Item names are the first name seen for each key.
There are no tags (``item_tags`` is None).

With a Spark session (``dataset.engine: spark``) the events are read and aggregated by
Spark (:mod:`scripts.core.data.spark_events`): same dataset, same errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd

from scripts.core.data.common import build_dataset, is_missing, read_table, to_id_column, to_timestamp_column
from scripts.core.data.types import DataError, MusicDataset

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COLUMNS = ("userid", "timestamp", "artist_mbid", "artist_name", "track_mbid", "track_name")


def fallback_key(frame: pd.DataFrame, mbid: str, name: str, *, file: str) -> pd.Series:
    """MusicBrainz id where present, else the name; DataError at the first row with neither."""
    ids = frame[mbid].fillna("").astype(str).str.strip()
    names = frame[name].fillna("").astype(str)
    key = ids.where(ids != "", names)
    empty = is_missing(key)
    if empty.any():
        row = int(frame.index[int(np.flatnonzero(empty)[0])]) + 1
        raise DataError(file, f"neither {mbid} nor {name} is given", column=name, row=row)
    return key


def load_lastfm1k(
    path: str | Path,
    *,
    item: Literal["artist", "track"] = "artist",
    max_rows: int | None = None,
    spark: SparkSession | None = None,
) -> MusicDataset:
    """Load the Last.fm 1K events file; see the module docstring for the rules."""
    path = Path(path)
    file = path.name
    if spark is not None:
        from scripts.core.data.spark_events import EventSource, aggregate_events

        label = ("artist_name",) if item == "artist" else ("artist_name", "track_name")
        events = aggregate_events(
            EventSource(
                path, "listening events", user="userid", item=f"{item}_mbid", item_label=label,
                label_column="artist_name" if item == "artist" else "track_label", timestamp="timestamp",
                names=COLUMNS, sep="\t", max_rows=max_rows, checks=("user", "timestamp", "item"),
                integer_ids=False,
            ),
            spark,
        )
        interactions, item_names, source_rows = events.pairs, events.item_names, events.n_rows_kept
    else:
        events_frame = read_table(path, names=COLUMNS, header=False, max_rows=max_rows, role="listening events")
        user = to_id_column(events_frame, "userid", file=file, integer=False)
        timestamp = to_timestamp_column(events_frame, "timestamp", file=file)
        if item == "artist":
            key = fallback_key(events_frame, "artist_mbid", "artist_name", file=file)
            name = events_frame["artist_name"]
        else:
            labels = events_frame["artist_name"].fillna("") + " - " + events_frame["track_name"].fillna("")
            key = fallback_key(events_frame.assign(track_label=labels), "track_mbid", "track_label", file=file)
            name = labels
        interactions = pd.DataFrame({"user": user, "item": key, "weight": np.float64(1.0), "timestamp": timestamp})
        first = ~key.duplicated()
        item_names = pd.Series(name[first].to_numpy(object), index=pd.Index(key[first].to_numpy()))
        source_rows = None
    return build_dataset(
        f"lastfm1k-{item}",
        interactions,
        interactions_file=file,
        item_names=item_names,
        files={"interactions": path},
        aggregate_stat="play_events_aggregated",
        source_rows=source_rows,
    )
