"""The Spark engine of the event sources: read raw events, validate them, aggregate to pairs.

``dataset.engine: spark`` (lastfm1k, lastfm360k, yandex, tabular) runs the heavy part of
loading - reading millions of listening events and reducing them to one row per
(user, item) - in Spark, and hands the much smaller aggregate to the same
:func:`~encore.data.parsing.build_dataset` as the pandas engine. The two engines give
the same dataset and the same errors (tests/test_spark_engine.py runs every loader's files,
the bad-input cases and the real Last.fm 2K through both): the same checks run in the same
order, with the pandas engine's rules for what is a number, a timestamp or a missing value,
and a bad value is reported with its file, column and 1-based data row, found without
collecting the events:

* every record gets ``monotonically_increasing_id()`` as it is read; the ids of a file's
  records increase in file order (partition << 33 | position), so a record's data row is
  the number of data records whose id is not larger (one count, only on error);
* each check is a conditional ``min`` of that id over the failing records, carried along
  the one scan that aggregates the pairs.

Tab-separated files (no quoting) are split here, line by line; other delimited files go
through Spark's CSV reader. Known differences, none silent: a quoted CSV field with a line
break is not supported (Spark splits files by line: the line fails its checks); a CSV line
of only whitespace is skipped by Spark's reader; an ISO basic-format date (``20090504``) in
a timestamp column that is not all numbers is an error here. Only a single file is read, as in the
pandas engine. Timestamps are microseconds in both engines.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from encore.data.dataset import DataError
from encore.data.event_source import Events, EventSource
from encore.data.parsing import (
    EPOCH_MS_ABOVE,
    check_id_types,
    check_text_encoding,
    decode_error,
    epoch_unit_hint,
    find_undecodable,
    float32_overflows,
    missing_columns_error,
    mixed_units_message,
    show,
    sum_overflow_message,
    to_id_column,
    weight_range_message,
)

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)

_POSITION_BITS = 33  # monotonically_increasing_id(): partition id in the upper 31 bits
# Every character str.strip() removes (str.isspace()): btrim with this set strips exactly as Python does.
_WHITESPACE = "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_MONO, _CORRUPT = "_encore_mono", "_encore_corrupt"
_FIELDS, _REPLACED = "_encore_fields", "_encore_replaced"
# The range of datetime64[ns] (MusicDataset's timestamp dtype), as in the pandas engine.
_TS_MIN_US = int(pd.Timestamp("1678-01-01").value // 1000)
_TS_MAX_US = int(pd.Timestamp("2262-01-01").value // 1000)


@dataclass(frozen=True)
class _Check:
    """One validation rule: records where ``bad`` holds fail with ``message(raw value)``."""

    column: str
    bad: Column
    message: Callable[[Any], str]
    shown: str | None = None  # column whose raw value the message shows (default: ``column``)
    mode: str | None = None  # a timestamp rule's check: applies only when that rule is chosen


def aggregate_events(source: EventSource, spark: SparkSession) -> Events:
    """Read, validate and aggregate ``source`` with ``spark``; DataError as the pandas engine.

    One scan of the events validates and aggregates: the group-by that sums plays per
    (user, item) also carries, per pair, the first record failing each check and what the
    timestamp rules need; the (much smaller, cached) pairs then answer the global questions
    before being collected. Item names take a second scan (a join on first-record ids).
    """
    from pyspark.sql import functions as F

    scan = _read(source, spark)
    frame = scan.frame if source.max_rows is None else _first_rows(scan.frame, source.max_rows)
    checks, weight, timestamps = _checks(source, {**dict(frame.dtypes), **scan.dtypes})
    mono = F.col(_MONO)
    kept = (weight > 0) if source.drop_zero_weights else F.lit(True)

    per_pair = [
        F.count(F.lit(1)).alias("n"),
        F.sum(F.when(kept, 1).otherwise(0)).alias("n_kept"),
        F.sum(F.when(kept, weight)).alias("weight"),
        F.min(F.when(kept, mono)).alias("first_row"),
        *[F.min(F.when(check.bad, mono)).alias(f"check{i}") for i, check in enumerate(checks)],
    ]
    totals = [F.sum("n").alias("n"), F.sum("n_kept").alias("n_kept"),
              *[F.min(f"check{i}").alias(f"check{i}") for i in range(len(checks))]]
    if timestamps is not None:
        per_pair += [F.max(F.when(kept, timestamps.micros(mode))).alias(f"ts_{mode}") for mode in timestamps.modes()]
        per_pair += timestamps.aggregates()
        totals += timestamps.totals()
    if not source.is_parquet:
        per_pair += [F.min(F.when(F.col(_FIELDS) > scan.n_fields, mono)).alias("malformed"),
                     F.max(_REPLACED).alias("replaced")]
        totals += [F.min("malformed").alias("malformed"), F.max("replaced").alias("replaced")]
    if source.item_label:
        per_pair.append(F.min(F.when(kept, mono)).alias("first"))

    dtypes = {**dict(frame.dtypes), **scan.dtypes}
    padded = [c for c in (source.user, None if source.item_label else source.item) if c and dtypes.get(c) == "string"]
    per_pair += [F.max(F.when(F.col(c) != _strip(F.col(c)), F.col(c))).alias(f"padded{i}")
                 for i, c in enumerate(padded)]
    totals += [F.max(f"padded{i}").alias(f"padded{i}") for i in range(len(padded))]
    user = _strip(F.col(source.user)) if source.user in padded else F.col(source.user)
    item = (_item_key(source) if source.item_label
            else _strip(F.col(source.item)) if source.item in padded else F.col(source.item))
    pairs = frame.groupBy(user.alias("user"), item.alias("item")).agg(*per_pair).persist()
    try:
        found = pairs.agg(*totals).first().asDict()
        mode = _validate(source, scan, frame, found, checks, timestamps)
        n_zero = int(found["n"] - found["n_kept"])
        if n_zero:
            log.info("%s: dropped %d rows with 0 %s", source.file, n_zero, source.weight)
            if found["n_kept"] == 0:
                raise DataError(source.file, "no rows with a positive value", column=source.weight)
        for i, column in enumerate(padded):
            if found[f"padded{i}"] is not None:  # as to_id_column says in the pandas engine
                log.warning("%s: stripped surrounding whitespace from ids in column %s", source.file, column)
        kept_pairs = pairs.filter(F.col("n_kept") > 0)
        columns = ["user", "item", "weight", "n_kept", "first_row"] + (
            [F.col(f"ts_{mode}").alias("micros")] if mode else [])
        collected = kept_pairs.select(*columns).toArrow().to_pandas()
        first_row = collected.pop("first_row").to_numpy()
        n_kept = collected.pop("n_kept").to_numpy()
        item_names = None
        if source.item_label:
            # Each item's first label in file order, as the pandas engine keeps: the label of the
            # record that is first among the first records of the item's pairs (a join on ids,
            # cheaper than carrying a string through the aggregation).
            firsts = kept_pairs.groupBy("item").agg(F.min("first").alias(_MONO))
            labelled = frame.select(mono, _label(source).alias("label")).join(firsts, on=_MONO)
            names = labelled.select("item", "label").toArrow().to_pandas()
            item_names = pd.Series(names["label"].to_numpy(object), index=pd.Index(names["item"].to_numpy(object)))
    finally:
        pairs.unpersist()

    collected["user"] = to_id_column(collected, "user", file=source.file, integer=source.integer_ids)
    if not source.item_label:  # labelled keys are text, as the pandas engine's fallback keys
        collected["item"] = to_id_column(collected, "item", file=source.file, integer=source.integer_ids)
    collected["weight"] = collected["weight"].astype(np.float64)
    over = float32_overflows(collected["weight"].to_numpy())
    if over.any():  # as build_dataset: the pair whose first row comes first
        pos = int(np.flatnonzero(over)[np.argmin(first_row[over])])
        message = sum_overflow_message(int(n_kept[pos]), collected["user"].iloc[pos], collected["item"].iloc[pos],
                                       float(collected["weight"].iloc[pos]))
        raise DataError(source.file, message, column=source.weight, row=scan.row_of(int(first_row[pos])))
    if mode:
        collected["timestamp"] = pd.to_datetime(collected.pop("micros").to_numpy(np.int64), unit="us").as_unit("ns")
    return Events(interactions=collected, item_names=item_names, source_rows=int(found["n_kept"]),
                  n_zero_weight=n_zero)


def _validate(
    source: EventSource,
    scan: _Scan,
    frame: DataFrame,
    found: dict[str, Any],
    checks: list[_Check],
    timestamps: _Timestamps | None,
) -> str | None:
    """Raise the pandas engine's first error, if any; return the timestamp rule (or None)."""
    from pyspark.sql import functions as F

    if not found["n"]:
        raise DataError(source.file, f"no data rows (empty {source.role} file)")
    if found.get("malformed") is not None:
        # Lines with too few fields get missing values instead, in both engines, and fail the checks.
        mono = found["malformed"]
        # Every column: Spark fills the CSV corrupt-record column only when it parses every field.
        n_found = frame.filter(F.col(_MONO) == mono).select("*").first()[_FIELDS]
        line = scan.line_of(mono)
        raise DataError(source.file, f"malformed line (Expected {scan.n_fields} fields in line {line}, saw {n_found})",
                        row=line - scan.header_lines)
    if found.get("replaced"):
        _raise_if_undecodable(source)
    mode = timestamps.mode(found) if timestamps is not None else None
    if mode in _Timestamps.MIXED:  # the column's first value, which the message names
        first = min(found["ts_first_s"], found["ts_first_ms"])
        value = frame.filter(F.col(_MONO) == first).select(timestamps.name).first()[0]
        timestamps.first = (scan.row_of(first), value)
    for i, check in enumerate(checks):
        mono = found[f"check{i}"]
        if mono is not None and check.mode in (None, mode):
            value = frame.filter(F.col(_MONO) == mono).select(check.shown or check.column).first()[0]
            raise DataError(source.file, check.message(value), column=check.column, row=scan.row_of(mono))
    return mode


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class _Scan:
    """The data records of a file, each with its record id (``_MONO``, in file order).

    Text files also carry ``_FIELDS`` (how many fields the line has) and ``_REPLACED``
    (whether the line holds bytes that are not UTF-8: Spark reads them as U+FFFD or raw).
    ``lines`` (tab-separated files) are all physical lines, for pandas-style line numbers.
    """

    frame: DataFrame
    n_fields: int
    header_lines: int
    lines: DataFrame | None = None
    dtypes: dict[str, str] = field(default_factory=dict)  # overrides of Spark's types (e.g. "nanos")

    def row_of(self, mono: int) -> int:
        """1-based data row of the record ``mono``: data records up to it (header and blank
        lines are not records), as the pandas engine numbers rows. One count, on error only."""
        from pyspark.sql import functions as F

        return self.frame.filter(F.col(_MONO) <= mono).count()

    def line_of(self, mono: int) -> int:
        """1-based physical line of the record ``mono`` (blank lines and the header counted)."""
        from pyspark.sql import functions as F

        if self.lines is None:
            return self.row_of(mono) + self.header_lines
        return self.lines.filter(F.col(_MONO) <= mono).count()


def _read(source: EventSource, spark: SparkSession) -> _Scan:
    path = source.path
    if not path.is_file():
        raise DataError(source.file, f"{source.role} file not found: {path}")
    if source.is_parquet:
        return _read_parquet(source, spark)
    if path.stat().st_size == 0:
        raise DataError(source.file, f"no data rows (empty {source.role} file)")
    check_text_encoding(path)
    if source.sep == "\t":
        return _read_tsv(source, spark)
    return _read_csv(source, spark)


def _check_columns(source: EventSource, found: list[str]) -> list[str]:
    wanted = source.columns()
    if any(c not in found for c in wanted):
        raise missing_columns_error(source.file, wanted, found, source.role)
    return wanted


def _read_parquet(source: EventSource, spark: SparkSession) -> _Scan:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pyspark.sql import functions as F

    try:
        schema = pq.read_schema(source.path)
        frame = spark.read.parquet(str(source.path))
    except Exception as exc:  # pyarrow and Spark raise several types for an unreadable file
        raise DataError(source.file, f"not a readable Parquet {source.role} file ({_first_line(exc)})") from exc
    wanted = _check_columns(source, list(schema.names))
    check_id_types(source.file, schema, source.id_columns())
    # Nanosecond timestamps arrive as int64 nanoseconds (spark.sql.legacy.parquet.nanosAsLong).
    nanos = {c: "nanos" for c in wanted
             if pa.types.is_timestamp(schema.field(c).type) and schema.field(c).type.unit == "ns"}
    return _Scan(frame.select(*wanted).withColumn(_MONO, F.monotonically_increasing_id()), len(schema.names), 0,
                 dtypes=nanos)


def _read_tsv(source: EventSource, spark: SparkSession) -> _Scan:
    """Tab-separated files have no quoting (as in the pandas engine): lines are split here,
    which keeps lines of empty fields (Spark's CSV reader would drop a line of tabs) and
    counts every line's fields exactly."""
    from pyspark.sql import functions as F

    found, blank_before_header = (list(source.names), 0) if source.names else _header(source)
    wanted = _check_columns(source, found)
    lines = spark.read.text(str(source.path)).select("value", F.monotonically_increasing_id().alias(_MONO))
    # A UTF-8 byte-order mark is not data (the pandas engine reads with utf-8-sig).
    value = F.when(F.col(_MONO) == 0, F.regexp_replace("value", "^\ufeff", "")).otherwise(F.col("value"))
    lines = lines.select(value.alias("value"), _MONO)
    # pandas skips lines of spaces only; the header is the first other line (in the first partition).
    blank = F.btrim(F.col("value"), F.lit(" \r\x0b\x0c")) == ""
    records = lines.filter(~blank)
    if not source.names:
        records = records.filter(F.col(_MONO) != blank_before_header)
    fields = F.split(F.col("value"), "\t", -1)
    columns = [F.try_element_at(fields, F.lit(found.index(c) + 1)).alias(c) for c in wanted]
    frame = records.select(*columns, F.size(fields).alias(_FIELDS),
                           (~F.is_valid_utf8(F.col("value"))).alias(_REPLACED), F.col(_MONO))
    return _Scan(frame, len(found), 0 if source.names else 1, lines=lines.select(_MONO))


def _read_csv(source: EventSource, spark: SparkSession) -> _Scan:
    """Delimited files with minimal CSV quoting (``""`` inside quotes), by Spark's CSV reader.

    Quoted fields with line breaks are not supported (the reader splits files by line).
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    found, _ = _header(source)
    _check_columns(source, found)
    schema = T.StructType([T.StructField(c, T.StringType()) for c in [*found, _CORRUPT]])
    frame = spark.read.csv(str(source.path), schema=schema, sep=source.sep, header=True, encoding="UTF-8",
                           quote='"', escape='"', mode="PERMISSIVE", columnNameOfCorruptRecord=_CORRUPT)
    corrupt = F.col(_CORRUPT)
    n_fields = F.when(corrupt.isNull(), F.lit(len(found))).otherwise(F.size(F.split(corrupt, re.escape(source.sep))))
    replaced = [F.coalesce(F.col(c).contains("\ufffd"), F.lit(False)) for c in found]
    # Every field is kept (it is parsed anyway, to count fields), so no query prunes the corrupt column.
    frame = frame.select(*found, n_fields.alias(_FIELDS),
                         (F.greatest(*replaced) if len(replaced) > 1 else replaced[0]).alias(_REPLACED))
    return _Scan(frame.withColumn(_MONO, F.monotonically_increasing_id()), len(found), 1)


def _header(source: EventSource) -> tuple[list[str], int]:
    """The header's fields, and how many blank lines come before it (pandas skips them)."""
    skipped = 0
    with source.path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
        for line in fh:
            text = line.rstrip("\r\n")
            if text.strip(" \r\x0b\x0c"):
                break
            skipped += 1
        else:
            raise DataError(source.file, f"no data rows (empty {source.role} file)")
    if source.sep == "\t":
        return text.split("\t"), skipped
    return next(csv.reader([text], delimiter=source.sep)), skipped


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _raise_if_undecodable(source: EventSource) -> None:
    """Spark reads undecodable bytes on; find the first one as the pandas engine does."""
    location = find_undecodable(source.path, "utf-8-sig", source.sep)
    if location[0] is not None:  # else the file really holds U+FFFD characters: fine
        raise decode_error(source.path, None, encoding="utf-8-sig", sep=source.sep,
                           header=source.names is None, names=source.names, location=location)


def _first_rows(frame: DataFrame, n: int) -> DataFrame:
    """The first ``n`` data records in file order (records carry ids, not row numbers, so
    each scan partition's records are numbered in a window and offset by earlier partitions)."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    partition = F.shiftright(F.col(_MONO), _POSITION_BITS)
    counts = dict(frame.groupBy(partition.alias("p")).count().collect())
    offsets, total = {}, 0
    for pid in sorted(counts):
        offsets[pid], total = total, total + counts[pid]
    lookup = F.create_map(*[F.lit(x) for pid, offset in sorted(offsets.items()) for x in (pid, offset)])
    row = F.element_at(lookup, partition) + F.row_number().over(Window.partitionBy(partition).orderBy(_MONO))
    return frame.withColumn("_encore_row", row).filter(F.col("_encore_row") <= n).drop("_encore_row")


# --------------------------------------------------------------------------- checks
# What the pandas engine accepts as a number (pd.to_numeric) and as ISO 8601 text: Spark's
# own casts also take Java forms ("3d", "2f") and its timestamp parser time-only values and
# zone names, so text must match these first.
_NUMBER = r"^\s*[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|(?i:inf|infinity|nan))\s*$"
_ISO_8601 = r"^\d{4}(-\d{1,2}(-\d{1,2}([T ]\d{1,2}:\d{1,2}(:\d{1,2}(\.\d+)?)?)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?$"
_FLOATS = {"double", "float"}


def _missing(column: Column, dtype: str) -> Column:
    """The pandas engine's ``is_missing``: null, NaN, or text that is empty once stripped."""
    if dtype == "string":
        return column.isNull() | (_strip(column) == "")
    if dtype in _FLOATS:
        from pyspark.sql import functions as F

        return column.isNull() | F.isnan(column)
    return column.isNull()


def _strip(column: Column) -> Column:
    from pyspark.sql import functions as F

    return F.btrim(column, F.lit(_WHITESPACE))


def _number(column: Column, dtype: str) -> Column:
    """The column as a double; text that pandas would not read as a number is null."""
    from pyspark.sql import functions as F

    if dtype == "string":
        return F.when(column.rlike(_NUMBER), column.try_cast("double"))
    return column.cast("double")


def _id_checks(name: str, dtype: str, counted: Column) -> list[_Check]:
    """``to_id_column``: text ids must not be empty; numeric ids must be finite integers."""
    from pyspark.sql import functions as F

    raw = F.col(name)
    missing = counted & _missing(raw, dtype)
    if dtype == "string":
        return [_Check(name, missing, lambda v: "empty id")]
    value = raw.cast("double")
    return [
        _Check(name, missing, lambda v: "empty value"),
        _Check(name, counted & (F.abs(value) == float("inf")), lambda v: f"{show(v)} is not a finite number"),
        _Check(name, counted & ~missing & ((value != F.floor(value)) | (F.abs(value) > float(2**53))),
               lambda v: f"{show(v)} is not an integer"),
    ]


def _checks(
    source: EventSource, dtypes: dict[str, str]
) -> tuple[list[_Check], Column, _Timestamps | None]:
    """The loader's checks in its order, the weight column and the timestamp rules."""
    from pyspark.sql import functions as F

    by_field: dict[str, list[_Check]] = {}
    counted: Column = F.lit(True)
    weight: Column = F.lit(1.0)
    if source.weight is not None:
        name = source.weight
        raw = F.col(name)
        weight = _number(raw, dtypes[name])
        missing = _missing(raw, dtypes[name])
        parsed = ~missing & weight.isNotNull() & ~F.isnan(weight)
        finite = parsed & (F.abs(weight) != float("inf"))
        negative = weight < 0
        by_field["weight"] = [
            _Check(name, missing, lambda v: "empty value"),
            _Check(name, ~missing & ~parsed, lambda v: f"{show(v)} is not a number"),
            _Check(name, parsed & ~finite, lambda v: f"{show(v)} is not a finite number"),
            _Check(name, finite & (negative if source.drop_zero_weights else (weight <= 0)),
                   lambda v: f"{show(v)} is " + ("negative" if float(v) < 0 else "zero (weights must be > 0)")),
            # As check_positive_weights: a weight must fit a 32-bit float without rounding to 0.
            _Check(name, finite & ((F.abs(weight.cast("float")) == float("inf"))
                                   | ((weight != 0) & (weight.cast("float") == 0))), weight_range_message),
        ]
        if source.drop_zero_weights:
            counted = weight > 0  # zero-weight records are dropped before their ids are checked

    by_field["user"] = _id_checks(source.user, dtypes[source.user], counted)
    if source.item_label:
        label = source.label_name
        by_field["item"] = [_Check(label, counted & _missing(_item_key(source), "string"),
                                   lambda v: f"neither {source.item} nor {label} is given", shown=source.item)]
    else:
        by_field["item"] = _id_checks(source.item, dtypes[source.item], counted)
    timestamps = None
    if source.timestamp is not None:
        timestamps = _Timestamps(source.timestamp, dtypes[source.timestamp])
        by_field["timestamp"] = timestamps.checks()
    return [check for name in source.checks for check in by_field.get(name, [])], weight, timestamps


def _item_key(source: EventSource) -> Column:
    """The id where present, else the label (the pandas engine's ``fallback_key``)."""
    from pyspark.sql import functions as F

    ident = _strip(F.coalesce(F.col(source.item).cast("string"), F.lit("")))
    return F.when(ident != "", ident).otherwise(_label(source))


def _label(source: EventSource) -> Column:
    from pyspark.sql import functions as F

    parts = [F.coalesce(F.col(c).cast("string"), F.lit("")) for c in source.item_label]
    return parts[0] if len(parts) == 1 else F.concat_ws(" - ", *parts)


class _Timestamps:
    """A timestamp column parsed to epoch microseconds (floored) by the pandas engine's rules.

    Datetime columns are taken as they are (Parquet nanoseconds arrive as int64, ``nanos``);
    numbers, or text that is all numbers, are Unix epoch seconds, or milliseconds when the
    magnitude exceeds 1e11 (a column with values of both kinds is refused: modes ``mixed_*``);
    other text is ISO 8601 (UTC unless a zone is given).
    Which rule applies needs the whole column, so the checks of every rule are computed in
    the one validation pass and :meth:`mode` picks the rule's checks afterwards.
    """

    def __init__(self, name: str, dtype: str) -> None:
        from pyspark.sql import functions as F

        self.name = name
        self.raw = F.col(name)
        self.dtype = dtype
        self.missing = _missing(self.raw, dtype)
        fixed = dtype.startswith("timestamp") or dtype in {"date", "nanos"}
        self.number = None if fixed else _number(self.raw, dtype)
        self.first: tuple[int, Any] | None = None  # (row, value) of the column's first value, when mixed

    MIXED = ("mixed_s", "mixed_ms")  # the rows in seconds, or those in ms, come after the other unit

    def modes(self) -> tuple[str, ...]:
        return ("datetime",) if self.number is None else ("iso", "seconds", "milliseconds")

    def mode(self, found: dict[str, Any]) -> str:
        if self.number is None:
            return "datetime"
        if found["ts_not_numbers"]:
            return "iso"
        first_s, first_ms = found["ts_first_s"], found["ts_first_ms"]
        if first_s is not None and first_ms is not None:
            return "mixed_s" if first_ms < first_s else "mixed_ms"
        return "milliseconds" if first_ms is not None else "seconds"

    def _in_ms(self) -> Column:
        from pyspark.sql import functions as F

        return F.abs(self.number) > F.lit(EPOCH_MS_ABOVE)

    def aggregates(self) -> list[Column]:
        """Per pair: how many values are not numbers, and the largest magnitude."""
        from pyspark.sql import functions as F

        if self.number is None:
            return []
        return [
            F.sum(F.when(~self.missing & (self.number.isNull() | F.isnan(self.number)), 1).otherwise(0))
            .alias("ts_not_numbers"),
            F.min(F.when(~self.missing & ~self._in_ms(), F.col(_MONO))).alias("ts_first_s"),
            F.min(F.when(~self.missing & self._in_ms(), F.col(_MONO))).alias("ts_first_ms"),
        ]

    def totals(self) -> list[Column]:
        from pyspark.sql import functions as F

        if self.number is None:
            return []
        return [F.sum("ts_not_numbers").alias("ts_not_numbers"), F.min("ts_first_s").alias("ts_first_s"),
                F.min("ts_first_ms").alias("ts_first_ms")]

    def micros(self, mode: str) -> Column:
        from pyspark.sql import functions as F

        if mode == "datetime":
            if self.dtype == "nanos":  # exact floor division (pmod is never negative)
                return F.expr(f"(`{self.name}` - pmod(`{self.name}`, 1000)) div 1000")
            return F.unix_micros(self.raw.cast("timestamp"))
        if mode == "iso":
            text = self.raw.cast("string")
            return F.when(text.rlike(_ISO_8601), F.unix_micros(F.try_to_timestamp(text)))
        scaled = self.number * F.lit(1e3 if mode == "milliseconds" else 1e6)
        return F.when(F.abs(scaled) < F.lit(9.2e18), F.floor(scaled))

    def checks(self) -> list[_Check]:
        from pyspark.sql import functions as F

        def unparsable(v: Any) -> str:
            return f"{show(v)} is not a timestamp (ISO 8601 or Unix epoch expected)"

        def out_of_range(v: Any) -> str:
            return f"{show(v)} is out of the supported range 1678-2261"

        def epoch_out_of_range(v: Any) -> str:
            return out_of_range(v) + epoch_unit_hint(v)

        def mixed(v: Any) -> str:
            assert self.first is not None
            return mixed_units_message(v, *self.first)

        checks = [_Check(self.name, self.missing, lambda v: "empty timestamp")]
        if self.number is not None:
            checks += [_Check(self.name, ~self.missing & ~self._in_ms(), mixed, mode="mixed_s"),
                       _Check(self.name, ~self.missing & self._in_ms(), mixed, mode="mixed_ms")]
        for mode in self.modes():
            micros = self.micros(mode)
            bad = ~self.missing & micros.isNull()
            beyond = ~self.missing & ((micros < F.lit(_TS_MIN_US)) | (micros >= F.lit(_TS_MAX_US)))
            epoch = mode in ("seconds", "milliseconds")  # there, null micros mean too large for any date
            checks += [_Check(self.name, bad, epoch_out_of_range if epoch else unparsable, mode=mode),
                       _Check(self.name, beyond, epoch_out_of_range if epoch else out_of_range, mode=mode)]
        return checks
