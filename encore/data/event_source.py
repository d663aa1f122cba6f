"""What an event source is: the file description both engines read, and what they return.

Apart from :mod:`encore.data.events` (the pandas engine and the dispatch) so that the Spark
engine (:mod:`encore.data.spark_events`) and the dispatcher both import these types from
below, and neither imports the other's caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from encore.data.parsing import PARQUET_SUFFIXES


@dataclass(frozen=True)
class EventSource:
    """What to read from one events file and how.

    Attributes
    ----------
    path, role:
        The file (text by default, Parquet by suffix) and what it is, for messages.
    user, item:
        Raw id columns. Where ``item_label`` is given, ``item`` is an optional id
        (a MusicBrainz id) and the label is the key of records without one.
    item_label:
        Columns joined by ``" - "`` into the item's label (missing parts as ``""``): the
        item's name (its first label in file order) and its fallback key.
    label_column:
        The label's name in messages (``artist_name``; ``track_label`` for a derived one).
    weight, timestamp:
        Optional columns: weights are summed per pair (1.0 per record without one),
        the latest timestamp is kept.
    names:
        Every field of a headerless text file, in order (None: the file has a header).
    sep:
        Field separator of a text file; tab-separated files are read without quoting.
    max_rows:
        Read only the first ``max_rows`` data rows.
    drop_zero_weights:
        Zero weights are allowed and their records dropped (counted), negative ones are
        errors; the weight is then checked first, so the ids of dropped records are not.
    checks:
        The order in which the fields are checked: the first error reported is the first
        bad row of the first field in this order.
    integer_ids:
        How raw user ids (and item ids without a label) are typed, as ``to_id_column``'s
        ``integer``: None = integers when every id is a canonical integer, False = strings.
    """

    path: Path
    role: str
    user: str
    item: str
    item_label: tuple[str, ...] = ()
    label_column: str | None = None
    weight: str | None = None
    timestamp: str | None = None
    names: tuple[str, ...] | None = None
    sep: str = ","
    max_rows: int | None = None
    drop_zero_weights: bool = False
    checks: tuple[str, ...] = ("user", "item", "weight", "timestamp")
    integer_ids: bool | None = None

    def __post_init__(self) -> None:
        if self.drop_zero_weights and self.checks[0] != "weight":
            raise ValueError("drop_zero_weights needs the weight checked first")

    @property
    def file(self) -> str:
        return self.path.name

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() in PARQUET_SUFFIXES

    @property
    def label_name(self) -> str:
        return self.label_column or self.item_label[0]

    def id_columns(self) -> list[str]:
        """The columns that hold ids (a labelled item's id column is text or absent)."""
        return [self.user, self.item]

    def columns(self) -> list[str]:
        wanted = [self.user, self.item, *self.item_label, self.weight, self.timestamp]
        return list(dict.fromkeys(c for c in wanted if c is not None))


@dataclass(frozen=True)
class Events:
    """An event source read into raw-id interactions, ready for ``build_dataset``.

    Attributes
    ----------
    interactions:
        ``user``, ``item`` (raw ids), ``weight`` (float64) and, with a timestamp column,
        ``timestamp`` (datetime64[ns]): one row per event (pandas) or per (user, item)
        pair already aggregated (Spark).
    item_names:
        Raw item id -> its first label in file order (sources with ``item_label``).
    source_rows:
        The data rows ``interactions`` stands for when already aggregated, else None.
    n_zero_weight:
        Records dropped for a zero weight (``drop_zero_weights``).
    """

    interactions: pd.DataFrame
    item_names: pd.Series | None
    source_rows: int | None
    n_zero_weight: int
