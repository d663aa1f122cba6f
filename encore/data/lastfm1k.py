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
Spark (:mod:`encore.data.events`): same dataset, same errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from encore.data.dataset import MusicDataset
from encore.data.events import EventSource, read_events
from encore.data.parsing import build_dataset

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COLUMNS = ("userid", "timestamp", "artist_mbid", "artist_name", "track_mbid", "track_name")


def load_lastfm1k(
    path: str | Path,
    *,
    item: Literal["artist", "track"] = "artist",
    max_rows: int | None = None,
    spark: SparkSession | None = None,
) -> MusicDataset:
    """Load the Last.fm 1K events file; see the module docstring for the rules."""
    path = Path(path)
    events = read_events(
        EventSource(
            path, "listening events", user="userid", item=f"{item}_mbid",
            item_label=("artist_name",) if item == "artist" else ("artist_name", "track_name"),
            label_column="artist_name" if item == "artist" else "track_label", timestamp="timestamp",
            names=COLUMNS, sep="\t", max_rows=max_rows, checks=("user", "timestamp", "item"), integer_ids=False,
        ),
        spark,
    )
    return build_dataset(
        f"lastfm1k-{item}",
        events.interactions,
        interactions_file=path.name,
        item_names=events.item_names,
        files={"interactions": path},
        aggregate_stat="play_events_aggregated",
        source_rows=events.source_rows,
    )
