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
(:mod:`scripts.core.data.spark_events`): same dataset, same errors.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from scripts.core.data.common import build_dataset, check_positive_weights, read_table, to_id_column
from scripts.core.data.lastfm1k import fallback_key
from scripts.core.data.types import DataError, MusicDataset

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

COLUMNS = ("user_sha1", "artist_mbid", "artist_name", "plays")


def load_lastfm360k(
    path: str | Path, *, max_rows: int | None = None, spark: SparkSession | None = None
) -> MusicDataset:
    """Load the Last.fm 360K play-count file; see the module docstring for the rules."""
    path = Path(path)
    file = path.name
    source_rows = None
    if spark is not None:
        from scripts.core.data.spark_events import EventSource, aggregate_events

        events = aggregate_events(
            EventSource(
                path, "play counts", user="user_sha1", item="artist_mbid", item_label=("artist_name",),
                weight="plays", names=COLUMNS, sep="\t", max_rows=max_rows, drop_zero_weights=True,
                checks=("weight", "item", "user"), integer_ids=False,
            ),
            spark,
        )
        interactions, item_names, source_rows = events.pairs, events.item_names, events.n_rows_kept
        n_zero = events.n_zero_weight
    else:
        rows = read_table(path, names=COLUMNS, header=False, max_rows=max_rows, role="play counts")
        plays = check_positive_weights(rows, "plays", file=file, allow_zero=True)
        keep = (plays > 0).to_numpy()
        n_zero = int((~keep).sum())
        if n_zero:
            log.info("%s: dropped %d rows with 0 plays", file, n_zero)
            rows, plays = rows.loc[keep], plays.loc[keep]
            if rows.empty:
                raise DataError(file, "no rows with a positive value", column="plays")
        key = fallback_key(rows, "artist_mbid", "artist_name", file=file)
        interactions = pd.DataFrame(
            {"user": to_id_column(rows, "user_sha1", file=file, integer=False), "item": key, "weight": plays}
        )
        first = ~key.duplicated()
        item_names = pd.Series(rows["artist_name"][first].to_numpy(object), index=pd.Index(key[first].to_numpy()))
    return build_dataset(
        "lastfm360k",
        interactions,
        interactions_file=file,
        item_names=item_names,
        files={"interactions": path},
        stats={"zero_play_rows_dropped": n_zero},
        source_rows=source_rows,
    )
