"""Listening-event sources, described once and read by either engine.

A loader of an event source (Last.fm 1K and 360K, Yandex listens, any tabular file)
describes its file with an :class:`EventSource` - which columns are the user, the item,
its label, the weight and the timestamp, and in which order they are checked - and
:func:`read_events` reads it with pandas (default) or, given a Spark session, with the
Spark engine (:mod:`encore.data.spark_events`). Both apply the same rules from
:mod:`encore.data.parsing` in the same order, so they give the same dataset and the
same first error (file, column, row).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from encore.data.dataset import DataError
from encore.data.parsing import (
    PARQUET_SUFFIXES,
    check_positive_weights,
    is_missing,
    read_table,
    to_id_column,
    to_timestamp_column,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)


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


def read_events(source: EventSource, spark: SparkSession | None = None) -> Events:
    """Read ``source`` with pandas, or with the Spark engine when a session is given."""
    if spark is not None:
        from encore.data.spark_events import aggregate_events

        return aggregate_events(source, spark)
    return _read_with_pandas(source)


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


def _read_with_pandas(source: EventSource) -> Events:
    file = source.file
    frame = read_table(source.path, columns=source.columns(), names=source.names, header=source.names is None,
                       sep=source.sep, max_rows=source.max_rows, role=source.role)
    parsed: dict[str, pd.Series] = {}
    item_names = None
    n_zero = 0
    for field in source.checks:
        if field == "weight" and source.weight is not None:
            weight = check_positive_weights(frame, source.weight, file=file, allow_zero=source.drop_zero_weights)
            if source.drop_zero_weights:
                keep = (weight > 0).to_numpy()
                n_zero = int((~keep).sum())
                if n_zero:
                    log.info("%s: dropped %d rows with 0 %s", file, n_zero, source.weight)
                    frame, weight = frame.loc[keep], weight.loc[keep]
                    if frame.empty:
                        raise DataError(file, "no rows with a positive value", column=source.weight)
            parsed["weight"] = weight
        elif field == "user":
            parsed["user"] = to_id_column(frame, source.user, file=file, integer=source.integer_ids)
        elif field == "item" and source.item_label:
            parts = [frame[c] for c in source.item_label]
            label = parts[0] if len(parts) == 1 else parts[0].fillna("").str.cat([p.fillna("") for p in parts[1:]],
                                                                                sep=" - ")
            key = fallback_key(frame.assign(**{source.label_name: label}), source.item, source.label_name, file=file)
            first = ~key.duplicated()
            item_names = pd.Series(label[first].to_numpy(object), index=pd.Index(key[first].to_numpy()))
            parsed["item"] = key
        elif field == "item":
            parsed["item"] = to_id_column(frame, source.item, file=file, integer=source.integer_ids)
        elif field == "timestamp" and source.timestamp is not None:
            parsed["timestamp"] = to_timestamp_column(frame, source.timestamp, file=file)
    interactions = pd.DataFrame({"user": parsed["user"], "item": parsed["item"],
                                 "weight": parsed.get("weight", np.float64(1.0))})
    if "timestamp" in parsed:
        interactions["timestamp"] = parsed["timestamp"]
    return Events(interactions=interactions, item_names=item_names, source_rows=None, n_zero_weight=n_zero)
