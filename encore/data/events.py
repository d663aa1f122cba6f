"""Listening-event sources, described once and read by either engine.

A loader of an event source (Last.fm 1K and 360K, Yandex listens, any tabular file)
describes its file with an :class:`~encore.data.event_source.EventSource` - which columns are the user, the item,
its label, the weight and the timestamp, and in which order they are checked - and
:func:`read_events` reads it with pandas (default) or, given a Spark session, with the
Spark engine (:mod:`encore.data.spark_events`). Both apply the same rules from
:mod:`encore.data.parsing` in the same order, so they give the same dataset and the
same first error (file, column, row).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from encore.data.dataset import DataError
from encore.data.event_source import Events, EventSource
from encore.data.parsing import (
    check_positive_weights,
    is_missing,
    read_table,
    to_id_column,
    to_timestamp_column,
)
from encore.data.spark_events import aggregate_events

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EventSource", "Events", "fallback_key", "read_events"]

log = logging.getLogger(__name__)


def read_events(source: EventSource, spark: SparkSession | None = None) -> Events:
    """Read ``source`` with pandas, or with the Spark engine when a session is given."""
    if spark is not None:
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
                       sep=source.sep, max_rows=source.max_rows, role=source.role, id_columns=source.id_columns())
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
