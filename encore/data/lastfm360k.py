"""Last.fm 360K (Celma 2010): top artists of ~360,000 users with their play counts.

``usersha1-artmbid-artname-plays.tsv``: tab-separated, no header::

    00000c289a1829a808ac09c00daf10bc3c4e223b  3bd73256-3905-4f3a-97e2-8b341527f805  betty blowtorch  2137

Items are artists keyed by MusicBrainz id, falling back to the name when the id is empty.
The weight is the play count. Rows with 0 plays carry no preference: they are dropped and
counted in ``stats["zero_play_rows_dropped"]``; negative or non-numeric counts are errors.
Rows of one user that map to the same artist key (e.g. one mbid listed under two name
spellings) are aggregated: plays summed, counted in ``stats["duplicate_rows_aggregated"]``.
No timestamps, no tags.

With a Spark session (``dataset.engine: spark``) the file is read and aggregated by Spark
(:mod:`encore.data.events`): same dataset, same errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from encore.data.dataset import MusicDataset
from encore.data.events import EventSource, read_events
from encore.data.parsing import build_dataset

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

COLUMNS = ("user_sha1", "artist_mbid", "artist_name", "plays")


def load_lastfm360k(
    path: str | Path, *, max_rows: int | None = None, spark: SparkSession | None = None
) -> MusicDataset:
    """Load the Last.fm 360K play-count file; see the module docstring for the rules."""
    path = Path(path)
    events = read_events(
        EventSource(
            path, "play counts", user="user_sha1", item="artist_mbid", item_label=("artist_name",),
            weight="plays", names=COLUMNS, sep="\t", max_rows=max_rows, drop_zero_weights=True,
            checks=("weight", "item", "user"), integer_ids=False,
        ),
        spark,
    )
    return build_dataset(
        "lastfm360k",
        events.interactions,
        interactions_file=path.name,
        item_names=events.item_names,
        files={"interactions": path},
        stats={"zero_play_rows_dropped": events.n_zero_weight},
        source_rows=events.source_rows,
        weight_column="plays",
    )
