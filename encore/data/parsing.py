"""Shared building blocks of the loaders: reading, validating and encoding tables.

Conventions every loader follows:

* Tables are read with :func:`read_table`, which returns the requested columns under
  their names *in the file* and a ``RangeIndex``, so data row ``n`` (1-based, header not
  counted, blank lines skipped) has index ``n - 1``. Validation helpers report
  ``index + 1`` as the row, which stays right after filtering since the index is kept.
* Text columns come back as strings (empty field -> ``""``); the helpers below turn them
  into ids, numbers and timestamps and raise :class:`DataError` naming the file, column
  and first bad row, found with vectorised masks (no per-row Python).
* :func:`build_dataset` turns validated raw-id frames into a :class:`MusicDataset`.
"""

from __future__ import annotations

import codecs
import csv
import itertools
import logging
import re
import warnings
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from encore.data.dataset import DataError, MusicDataset

log = logging.getLogger(__name__)

PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})

# Timestamps must fit datetime64[ns] (MusicDataset's documented dtype).
_TS_MIN = pd.Timestamp("1678-01-01")
_TS_MAX = pd.Timestamp("2262-01-01")

# Weights are stored as float32 (MusicDataset's documented dtype): what does not fit is refused.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def float32_overflows(values: np.ndarray) -> np.ndarray:
    """Mask of float64 values that become ``inf`` as float32."""
    with np.errstate(over="ignore"):
        return np.isinf(values.astype(np.float32)) & np.isfinite(values)


def float32_underflows(values: np.ndarray) -> np.ndarray:
    """Mask of non-zero float64 values that become 0 as float32."""
    with np.errstate(over="ignore"):
        return (values.astype(np.float32) == 0) & (values != 0)


def weight_range_message(value: Any) -> str:
    """Why a parsed weight that float32 cannot hold is refused (shared with the Spark engine)."""
    number = float(value)
    if number != 0 and abs(number) < 1:  # below 1, only rounding to 0 is possible
        return f"{show(value)} rounds to 0 as a 32-bit float (weights must be > 0; smallest 1.4e-45)"
    return f"{show(value)} is beyond the 32-bit float range of weights (at most {FLOAT32_MAX:.6g})"


def sum_overflow_message(n_rows: int, user: Any, item: Any, total: float) -> str:
    """Why the summed weight of one (user, item) pair is refused (shared with the Spark engine)."""
    return (f"the {n_rows} rows of user {show(user)}, item {show(item)} sum to {total:.6g}, beyond the "
            f"32-bit float range of weights (at most {FLOAT32_MAX:.6g})")


# --------------------------------------------------------------------------- reading
def read_table(
    path: str | Path,
    *,
    columns: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
    sep: str = "\t",
    header: bool = True,
    dtype: Mapping[str, Any] | None = None,
    encoding: str = "utf-8",
    quoting: int | None = None,
    max_rows: int | None = None,
    role: str = "data",
    id_columns: Sequence[str] = (),
) -> pd.DataFrame:
    """Read a delimited text file or a Parquet file (by suffix) into a DataFrame.

    Parameters
    ----------
    columns:
        Columns to return (required to exist), in this order. Default: all of them.
    names:
        For files without a header (``header=False``): the name of every field, in order.
    sep, quoting:
        Field separator; quoting defaults to none for tab-separated files (Last.fm names
        contain stray quotes) and to minimal CSV quoting otherwise.
    dtype:
        Per-column dtype for text files; columns not listed are read as strings, with
        empty fields as ``""`` (validation helpers then parse them with row-level errors).
        Parquet columns keep their stored types.
    encoding:
        Text encoding; a UTF-8 byte-order mark is accepted.
    max_rows:
        Read at most this many data rows.
    role:
        What the file is (``"interactions"``, ``"artists"`` ...), used in messages.
    id_columns:
        Id columns: in a Parquet file they must be integers or text (:func:`check_id_types`).

    Raises
    ------
    DataError
        Missing file, empty file (no data rows), undecodable bytes (with byte offset,
        line, row and column), malformed lines, missing columns (listing those found),
        unreadable Parquet.
    """
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise DataError(name, f"{role} file not found: {path}")
    if path.suffix.lower() in PARQUET_SUFFIXES:
        frame = _read_parquet(path, columns, role=role, id_columns=id_columns)
    else:
        frame = _read_text(
            path, columns=columns, names=names, sep=sep, header=header, dtype=dtype,
            encoding=encoding, quoting=quoting, max_rows=max_rows, role=role,
        )
    if max_rows is not None:
        frame = frame.iloc[:max_rows]
    if frame.empty:
        raise DataError(name, f"no data rows (empty {role} file)")
    return frame.reset_index(drop=True)


def missing_columns_error(name: str, wanted: Sequence[str], found: Sequence[str], role: str) -> DataError:
    missing = [c for c in wanted if c not in found]
    found_text = ", ".join(repr(str(c)) for c in found) or "none"
    return DataError(
        name,
        f"missing in the {role} file; columns found: {found_text}",
        column=", ".join(missing),
    )


def check_id_types(file: str, schema: Any, columns: Sequence[str]) -> None:
    """Raise DataError for the first of ``columns`` whose Parquet (Arrow) type is not an id
    type - integers or text; floats, booleans, dates ... are refused, naming the type found
    (a float id 1.0 would silently become 1, a boolean the text 'True')."""
    import pyarrow as pa

    for column in columns:
        if column not in schema.names:
            continue  # the caller names a missing column itself
        kind = schema.field(column).type
        if pa.types.is_dictionary(kind):
            kind = kind.value_type
        if not (pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            raise DataError(file, f"holds {kind} values: ids must be integers or text (cast the column to "
                            "int64 or string)", column=column)


def _read_parquet(path: Path, columns: Sequence[str] | None, *, role: str,
                  id_columns: Sequence[str] = ()) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.read_schema(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path.name, f"not a readable Parquet {role} file ({exc})") from exc
    found = schema.names
    if columns is not None and any(c not in found for c in columns):
        raise missing_columns_error(path.name, columns, found, role)
    check_id_types(path.name, schema, id_columns)
    try:
        return pd.read_parquet(path, columns=list(columns) if columns is not None else None)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(path.name, f"not a readable Parquet {role} file ({exc})") from exc


def _read_text(
    path: Path,
    *,
    columns: Sequence[str] | None,
    names: Sequence[str] | None,
    sep: str,
    header: bool,
    dtype: Mapping[str, Any] | None,
    encoding: str,
    quoting: int | None,
    max_rows: int | None,
    role: str,
) -> pd.DataFrame:
    name = path.name
    if path.stat().st_size == 0:
        raise DataError(name, f"no data rows (empty {role} file)")
    if not header and names is None:
        raise ValueError("read_table: files without a header need `names`")
    check_text_encoding(path, encoding)
    if codecs.lookup(encoding).name == "utf-8":
        encoding = "utf-8-sig"  # tolerate a byte-order mark (Excel writes one)
    options: dict[str, Any] = {
        "sep": sep,
        "encoding": encoding,
        "quoting": quoting if quoting is not None else (csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL),
        "keep_default_na": False,  # 'NA', 'null', 'none' are real tag/artist names
        "na_values": [],
        "index_col": False,
    }
    try:
        found = list(pd.read_csv(path, nrows=0, **options).columns) if header else list(names or [])
        if columns is not None and any(c not in found for c in columns):
            raise missing_columns_error(name, columns, found, role)
        wanted = list(columns) if columns is not None else found
        types: dict[str, Any] = dict.fromkeys(found, str)
        types.update({k: v for k, v in (dtype or {}).items() if k in types})
        # Every field is parsed (no usecols): only then does a line with too many fields fail
        # as malformed instead of being read shifted.
        with warnings.catch_warnings():
            # Why: pandas only *warns* when the first data row has more fields than the header,
            # and then drops the extra one; any later row with too many fields is an error.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            try:
                frame = pd.read_csv(
                    path,
                    header=0 if header else None,
                    names=None if header else list(names or []),
                    dtype=types,
                    nrows=max_rows,
                    **options,
                )
            except pd.errors.ParserWarning:
                line = int(header) + 1
                with path.open(encoding=encoding, newline="") as fh:
                    first = next(itertools.islice(fh, line - 1, None), "").rstrip("\r\n")
                saw = len(next(csv.reader([first], delimiter=sep, quoting=options["quoting"]), []))
                raise DataError(name, f"malformed line (Expected {len(found)} fields in line {line}, saw {saw})",
                                row=1) from None
        return frame[wanted]
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise decode_error(path, exc, encoding=encoding, sep=sep, header=header, names=names) from exc
    except pd.errors.EmptyDataError as exc:
        raise DataError(name, f"no data rows (empty {role} file)") from exc
    except pd.errors.ParserError as exc:
        raise _parser_error(name, exc, header=header) from exc
    except ValueError as exc:  # e.g. a dtype hint that does not fit
        raise DataError(name, f"cannot read the {role} file: {exc}") from exc


def _parser_error(name: str, exc: Exception, *, header: bool) -> DataError:
    text = str(exc).replace("Error tokenizing data. C error: ", "").strip()
    match = re.search(r"line (\d+)", text)
    row = int(match.group(1)) - int(header) if match else None
    return DataError(name, f"malformed line ({text})", row=row)


def decode_error(
    path: Path,
    exc: UnicodeDecodeError | None,
    *,
    encoding: str,
    sep: str,
    header: bool,
    names: Sequence[str] | None,
    location: tuple[int | None, int, int] | None = None,
) -> DataError:
    """The error for the first undecodable byte, located by ``find_undecodable`` (or at
    ``location``, when the caller has scanned already)."""
    codec = encoding.removesuffix("-sig")
    with path.open("rb") as fh:
        head = fh.read(65536)
    offset, line, column = location if location is not None else find_undecodable(path, encoding, sep)
    if offset is None:  # not reproducible chunk-wise (e.g. a multi-byte encoding); say what we know
        reason = exc.reason if exc is not None else "undecodable bytes"
        return DataError(path.name, f"cannot be decoded as {encoding}: {reason}")
    col_name: str | None = None
    if header:
        try:
            with path.open("rb") as fh:
                first = fh.read(65536).split(b"\n", 1)[0].decode(encoding, errors="replace")
            fields = first.rstrip("\r").split(sep)
            col_name = fields[column] if column < len(fields) else None
        except LookupError:
            col_name = None
    elif names is not None and column < len(names):
        col_name = names[column]
    row = line - int(header)
    with path.open("rb") as fh:
        fh.seek(offset)
        byte = fh.read(1)
    # Why: Encore reads text as UTF-8 only; a binary file needs another file, not a conversion.
    hint = ("the file looks binary, not text: is it the right file?" if b"\x00" in head
            else f"the file is in another encoding: convert it to {codec} (e.g. iconv -f latin1 -t utf-8)")
    return DataError(
        path.name,
        f"byte 0x{byte.hex()} at byte offset {offset} (line {line}) is not valid {codec} - {hint}",
        column=col_name,
        row=row if row >= 1 else None,
    )


_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32LE"), (codecs.BOM_UTF32_BE, "UTF-32BE"),
         (codecs.BOM_UTF16_LE, "UTF-16LE"), (codecs.BOM_UTF16_BE, "UTF-16BE"))


def check_text_encoding(path: Path, encoding: str = "utf-8") -> None:
    """Refuse a UTF-8 file that is in a wide Unicode encoding (UTF-16, UTF-32) instead: every
    field would be unreadable (or, without a byte-order mark, read with NUL bytes in it)."""
    if codecs.lookup(encoding).name not in ("utf-8", "utf-8-sig"):
        return
    with path.open("rb") as fh:
        found = foreign_encoding(fh.read(4096))
    if found is not None:
        source = found.split()[0] if "no byte-order mark" in found else found[:6]  # iconv drops a BOM it reads
        raise DataError(path.name, f"the file is {found}, not UTF-8, which is the only text encoding Encore "
                        f"reads: convert it (e.g. iconv -f {source} -t utf-8)")


def foreign_encoding(head: bytes) -> str | None:
    """The wide Unicode encoding a file's first bytes show (a byte-order mark, or text with a
    NUL byte beside every character, as UTF-16 without one), or None."""
    for bom, name in _BOMS:
        if head.startswith(bom):
            return f"{name} (byte-order mark {bom.hex()})"
    sample = head[:4096]
    sample = sample[: len(sample) - len(sample) % 2]
    if len(sample) >= 8:
        even, odd = sample[0::2], sample[1::2]
        if odd.count(0) == len(odd) and even.count(0) == 0:
            return "UTF-16LE (no byte-order mark)"
        if even.count(0) == len(even) and odd.count(0) == 0:
            return "UTF-16BE (no byte-order mark)"
    return None


def find_undecodable(path: Path, encoding: str, sep: str) -> tuple[int | None, int, int]:
    """Return (byte offset, 1-based line, 0-based field) of the first undecodable byte.

    Chunks are cut after the last newline so that ``\\n`` (never part of a multi-byte
    sequence in ASCII-compatible encodings) keeps each chunk independently decodable.
    """
    consumed, lines, carry = 0, 0, b""
    sep_b = sep.encode("ascii", errors="ignore") or b"\t"
    with path.open("rb") as fh:
        while True:
            chunk = fh.read(1 << 20)
            data = carry + chunk
            if not data:
                return None, 0, 0
            cut = len(data) if not chunk else data.rfind(b"\n") + 1
            if cut == 0:  # a single huge line; keep reading
                carry = data
                continue
            block, carry = data[:cut], data[cut:]
            try:
                block.decode(encoding)
            except UnicodeDecodeError as exc:
                before = block[: exc.start]
                line_start = before.rfind(b"\n") + 1
                return (
                    consumed + exc.start,
                    lines + before.count(b"\n") + 1,
                    before[line_start:].count(sep_b),
                )
            consumed += len(block)
            lines += block.count(b"\n")
            if not chunk:
                return None, 0, 0


# --------------------------------------------------------------------------- validation
def _row_of(frame: pd.DataFrame | pd.Series, mask: np.ndarray) -> tuple[int, Any]:
    """1-based file row and raw value of the first True in ``mask``."""
    pos = int(np.flatnonzero(mask)[0])
    return int(frame.index[pos]) + 1, pos


def show(value: Any) -> str:
    """A raw value for messages: ``'abc'`` for text, ``42`` for numbers (no numpy wrappers)."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def is_missing(values: pd.Series) -> np.ndarray:
    """Boolean mask of missing values: NaN/None, and empty or blank strings."""
    missing = values.isna().to_numpy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        # Fast path: a whitespace-only field is as empty as an empty one.
        missing = missing | (values.fillna("").astype(str).str.strip() == "").to_numpy()
    return missing


def to_numeric_column(
    frame: pd.DataFrame, column: str, *, file: str | Path, integer: bool = False, allow_missing: bool = False
) -> pd.Series:
    """Parse ``frame[column]`` as numbers (int64 if ``integer``, else float64).

    Raises DataError at the first empty (unless ``allow_missing``), non-numeric,
    non-finite, or (for ``integer``) fractional value.
    """
    file = Path(file).name
    raw = frame[column]
    missing = is_missing(raw)
    if not allow_missing and missing.any():
        row, _ = _row_of(raw, missing)
        raise DataError(file, "empty value", column=column, row=row)
    if pd.api.types.is_bool_dtype(raw.dtype) or pd.api.types.is_numeric_dtype(raw.dtype):
        values = raw.astype("float64")
    else:
        values = pd.to_numeric(raw.where(~missing), errors="coerce").astype("float64")
    arr = values.to_numpy()
    bad = np.isnan(arr) & ~missing
    if bad.any():
        row, pos = _row_of(raw, bad)
        raise DataError(file, f"{show(raw.iloc[pos])} is not a number", column=column, row=row)
    bad = np.isinf(arr)
    if bad.any():
        row, pos = _row_of(raw, bad)
        raise DataError(file, f"{show(raw.iloc[pos])} is not a finite number", column=column, row=row)
    if not integer:
        return values
    with np.errstate(invalid="ignore"):
        bad = (arr != np.floor(arr)) | (np.abs(arr) > 2**53)
    bad &= ~missing
    if bad.any():
        row, pos = _row_of(raw, bad)
        raise DataError(file, f"{show(raw.iloc[pos])} is not an integer", column=column, row=row)
    if missing.any():
        return values.astype("Int64")
    return values.astype("int64")


def to_id_column(
    frame: pd.DataFrame, column: str, *, file: str | Path, integer: bool | None = None
) -> pd.Series:
    """Validate raw ids: no empty values; int64 if ``integer`` or (``None``) if every id is
    a canonical integer string like ``"42"``, else strings.

    Auto-detection keeps ``"007"`` a string (int would merge it with ``"7"``).
    """
    raw = frame[column]
    if integer or pd.api.types.is_integer_dtype(raw.dtype) or pd.api.types.is_float_dtype(raw.dtype):
        ints = to_numeric_column(frame, column, file=file, integer=True)
        if raw.dtype == object or pd.api.types.is_string_dtype(raw.dtype):
            # Integer ids written as text must be written as integers: "007", "+7" or "7.0"
            # would otherwise silently merge with "7" (the rule auto-detection follows).
            text = raw.astype(str).str.strip()
            bad = (ints.astype(str) != text).to_numpy()
            if bad.any():
                row, pos = _row_of(raw, bad)
                message = (f"{show(raw.iloc[pos])} is not an integer id as written (ids are integers here; "
                           f"it would merge with {ints.iloc[pos]})")
                raise DataError(Path(file).name, message, column=column, row=row)
        return ints
    missing = is_missing(raw)
    if missing.any():
        row, _ = _row_of(raw, missing)
        raise DataError(Path(file).name, "empty id", column=column, row=row)
    text = raw.astype(str)
    stripped = text.str.strip()
    padded = (stripped != text).to_numpy()
    if padded.any():
        # Why: " 2" and "2" are one user to every person reading the file; kept apart they
        # would silently split a user's history in two.
        log.warning("%s: stripped surrounding whitespace from ids in column %s", Path(file).name, column)
        text = stripped
    if integer is None and text.iloc[0].lstrip("-").isdigit():
        numbers = pd.to_numeric(text, errors="coerce")
        if not numbers.isna().any() and (numbers.abs() < 2**62).all():
            ints = numbers.astype("int64")
            if (ints.astype(str) == text).all():
                return ints
    return text


EPOCH_MS_ABOVE = 1e11
"""Epoch numbers of larger magnitude are milliseconds (after 1973), smaller ones seconds
(before year 5138)."""

_EPOCH_UNITS = ((1e17, "nanoseconds"), (1e14, "microseconds"), (EPOCH_MS_ABOVE, "milliseconds"), (0, "seconds"))


def epoch_unit(value: Any) -> str:
    """The unit an epoch number looks like, by its magnitude."""
    magnitude = abs(float(value))
    return next(unit for bound, unit in _EPOCH_UNITS if magnitude > bound or bound == 0)


def epoch_unit_hint(value: Any) -> str:
    """For an out-of-range epoch number: which unit it looks like (shared with the Spark engine)."""
    try:
        unit = epoch_unit(value)
    except (TypeError, ValueError):
        return ""
    if unit in ("seconds", "milliseconds"):
        return ""
    return f" (it looks like epoch {unit}; Encore reads epoch seconds or milliseconds)"


def mixed_units_message(value: Any, first_row: int, first_value: Any) -> str:
    """A value whose epoch unit is not that of the column's first value (shared with Spark)."""
    return (f"{show(value)} looks like epoch {epoch_unit_class(value)} but row {first_row} "
            f"({show(first_value)}) like epoch {epoch_unit_class(first_value)}: "
            "one column must use one unit")


def epoch_unit_class(value: Any) -> str:
    """Seconds or milliseconds, as the per-value rule reads an epoch number."""
    return "milliseconds" if abs(float(value)) > EPOCH_MS_ABOVE else "seconds"


def _mixed_units_error(file: str, column: str, raw: pd.Series, in_ms: np.ndarray) -> DataError:
    first_row, _ = _row_of(raw, np.arange(len(raw)) == 0)
    row, pos = _row_of(raw, in_ms != in_ms[0])
    return DataError(file, mixed_units_message(raw.iloc[pos], first_row, raw.iloc[0]), column=column, row=row)


def to_timestamp_column(frame: pd.DataFrame, column: str, *, file: str | Path) -> pd.Series:
    """Parse ``frame[column]`` into naive UTC ``datetime64[ns]``, floored to the microsecond.

    Accepted: datetime columns (tz-aware ones are converted to UTC), ISO 8601 strings
    (``2009-05-04T23:08:57Z``, ``2009-05-04 23:08``, ``2009-05-04``) and Unix epoch
    numbers - seconds, or milliseconds when the magnitude says so (> 1e11, i.e. a date
    after 1973 in ms rather than after year 5138 in s), decided for each value: a column
    with values of both kinds is refused, naming the first row of each. Larger epochs
    (microseconds, nanoseconds) are out of range, and the message says which unit they look
    like. Other formats are rejected rather than guessed (day/month order is ambiguous).
    Raises DataError at the first empty, unparsable or out-of-range value.
    """
    file = Path(file).name
    raw = frame[column]
    missing = is_missing(raw)
    if missing.any():
        row, _ = _row_of(raw, missing)
        raise DataError(file, "empty timestamp", column=column, row=row)
    epoch = False
    if isinstance(raw.dtype, pd.DatetimeTZDtype):
        parsed = raw.dt.tz_convert("UTC").dt.tz_localize(None)
    elif pd.api.types.is_datetime64_dtype(raw.dtype):
        parsed = raw
    else:
        if pd.api.types.is_numeric_dtype(raw.dtype):
            numbers = raw
        elif pd.isna(pd.to_numeric(raw.iloc[:1], errors="coerce").iloc[0]):
            numbers = None  # cheap probe: text dates, skip a full numeric pass over millions of rows
        else:
            numbers = pd.to_numeric(raw, errors="coerce")
        if numbers is not None and not numbers.isna().any():
            values = numbers.to_numpy(dtype="float64")
            in_ms = np.abs(values) > EPOCH_MS_ABOVE
            if in_ms.any() and not in_ms.all():
                raise _mixed_units_error(file, column, raw, in_ms)
            with np.errstate(invalid="ignore", over="ignore"):
                parsed = pd.to_datetime(numbers.astype("float64"), unit="ms" if in_ms.any() else "s",
                                        errors="coerce")
            epoch = True
        else:
            parsed = pd.to_datetime(raw, errors="coerce", utc=True, format="ISO8601").dt.tz_localize(None)
    bad = parsed.isna().to_numpy()
    if bad.any():
        row, pos = _row_of(raw, bad)
        message = f"{show(raw.iloc[pos])} is not a timestamp (ISO 8601 or Unix epoch expected)"
        if epoch:  # a number too large for any date
            message = f"{show(raw.iloc[pos])} is out of the supported range 1678-2261" + epoch_unit_hint(raw.iloc[pos])
        raise DataError(file, message, column=column, row=row)
    bad = ((parsed < _TS_MIN) | (parsed >= _TS_MAX)).to_numpy()
    if bad.any():
        row, pos = _row_of(raw, bad)
        message = f"{show(raw.iloc[pos])} is out of the supported range 1678-2261"
        if epoch:
            message += epoch_unit_hint(raw.iloc[pos])
        raise DataError(file, message, column=column, row=row)
    # Microseconds, as every engine keeps them (Spark has no finer timestamps).
    return parsed.astype("datetime64[ns]").dt.floor("us")


def check_positive_weights(
    frame: pd.DataFrame, column: str, *, file: str | Path, allow_zero: bool = False
) -> pd.Series:
    """Parse a weight column (float64): numbers, finite, >= 0, and > 0 unless ``allow_zero``;
    a weight must also fit a 32-bit float (at most ~3.4e38) without rounding to 0."""
    values = to_numeric_column(frame, column, file=file)
    arr = values.to_numpy()
    bad = arr < 0 if allow_zero else arr <= 0
    if bad.any():
        row, pos = _row_of(values, bad)
        what = "negative" if arr[pos] < 0 else "zero (weights must be > 0)"
        raise DataError(Path(file).name, f"{show(frame[column].iloc[pos])} is {what}", column=column, row=row)
    bad = float32_overflows(arr) | float32_underflows(arr)
    if bad.any():
        row, pos = _row_of(values, bad)
        raise DataError(Path(file).name, weight_range_message(frame[column].iloc[pos]), column=column, row=row)
    return values


def check_unique(frame: pd.DataFrame, column: str, *, file: str | Path) -> None:
    """Raise DataError at the first repeated key of a catalogue column (ids must be unique)."""
    dup = frame[column].duplicated().to_numpy()
    if dup.any():
        row, pos = _row_of(frame, dup)
        message = f"duplicate id {show(frame[column].iloc[pos])} (ids must be unique)"
        raise DataError(Path(file).name, message, column=column, row=row)


# --------------------------------------------------------------------------- building
@dataclass(frozen=True)
class SideTable:
    """A side table in raw ids, with where it came from (for error messages).

    Attributes
    ----------
    frame:
        Canonical columns (``item``/``tag``/``weight`` for item tags; ``user``/``item``/
        ``tag`` for user-item tags; ``user``/``friend`` for social), raw ids, and the
        ``read_table`` index (so row = index + 1).
    file:
        File name for messages.
    source_columns:
        Canonical column -> column name in the file, for messages (default: same name).
    drop_unknown:
        Canonical columns whose unknown ids are dropped and counted (only where the real
        dataset is known to contain such references) instead of raising.
    """

    frame: pd.DataFrame
    file: str
    source_columns: Mapping[str, str] = field(default_factory=dict)
    drop_unknown: Collection[str] = ()


def _sorted_index(values: Any) -> pd.Index:
    """Sorted unique raw ids (ints numerically, strings lexically)."""
    if not isinstance(values, pd.Index | pd.Series):
        values = np.asarray(values)
    return pd.Index(pd.unique(values)).sort_values()


def _encode_side(
    table: SideTable,
    lookup: Mapping[str, tuple[pd.Index | None, str, str]],
    *,
    stats: dict[str, int],
    stat_prefix: str,
) -> pd.DataFrame:
    """Map a side table's id columns to codes; unknown ids raise or (``drop_unknown``) are dropped."""
    frame = table.frame
    codes: dict[str, np.ndarray] = {}
    drop = np.zeros(len(frame), dtype=bool)
    for column, (index, kind, known_from) in lookup.items():
        assert index is not None, f"no {kind} index to encode {column}"
        values = frame[column]
        if index.dtype.kind in "iu" and values.dtype.kind not in "iu":
            # A text id matches an integer id only when written as that integer: "007" is not 7
            # (to_id_column's rule: ids are integers only when every one is a canonical integer).
            text = values.astype(str)
            numbers = pd.to_numeric(text.where(text.str.fullmatch(r"-?[0-9]{1,18}")), errors="coerce")
            values = numbers.where(numbers.astype("Int64").astype(str) == text)
        col_codes = index.get_indexer(values)
        unknown = col_codes < 0
        if unknown.any():
            source = table.source_columns.get(column, column)
            if column not in table.drop_unknown:
                row, pos = _row_of(frame, unknown)
                raise DataError(
                    table.file,
                    f"{show(frame[column].iloc[pos])} is not a known {kind} id (not in {known_from})",
                    column=source,
                    row=row,
                )
            n_ids = int(pd.unique(values[unknown]).size)
            stats[f"{stat_prefix}_dropped_unknown_{column}"] = int(unknown.sum())
            log.info(
                "%s: dropping %d rows whose %s (%d distinct ids) is not in %s",
                table.file, int(unknown.sum()), source, n_ids, known_from,
            )
            drop |= unknown
        codes[column] = col_codes.astype(np.int32)
    keep = ~drop
    result = pd.DataFrame({column: c[keep] for column, c in codes.items()})
    if "weight" in frame.columns:
        result["weight"] = frame["weight"].to_numpy(np.float32)[keep]
    if "timestamp" in frame.columns:
        # Dated side rows (Last.fm 2K's tag events): a time split drops those after its cuts.
        result["timestamp"] = frame["timestamp"].to_numpy("datetime64[ns]")[keep]
    return result


def build_dataset(
    name: str,
    interactions: pd.DataFrame,
    *,
    interactions_file: str,
    item_catalog: pd.Index | None = None,
    item_catalog_file: str | None = None,
    item_names: pd.Series | None = None,
    item_release: pd.Series | None = None,
    tag_catalog: pd.Series | None = None,
    tag_catalog_file: str | None = None,
    item_tags: SideTable | None = None,
    user_item_tags: SideTable | None = None,
    social: SideTable | None = None,
    files: Mapping[str, Path] | None = None,
    stats: Mapping[str, int] | None = None,
    aggregate_stat: str = "duplicate_rows_aggregated",
    source_rows: int | None = None,
    weight_column: str = "weight",
) -> MusicDataset:
    """Encode validated raw-id tables into a :class:`MusicDataset`.

    Ids
        Users are the users of ``interactions``; items are those of ``interactions``
        plus ``item_catalog`` (e.g. every artist of artists.dat, listened or not). Both
        are sorted raw ids, so the contiguous codes are stable across runs. Interaction
        items missing from the catalogue are kept (counted as ``items_without_metadata``).
        Tags are ``tag_catalog``'s index (raw id -> name) or, without one, the sorted tags
        used by the side tables (names = the ids).
    Duplicates
        Repeated (user, item) rows are aggregated: weights summed, timestamp = latest.
        Their number (rows removed) goes to ``stats[aggregate_stat]`` and to an info log.
        ``source_rows``: the number of source rows ``interactions`` stands for when an
        engine aggregated them already (Spark), so the counts are the same as without.
        Repeated side rows are dropped (item tags keep the largest weight). A sum that a
        32-bit float cannot hold raises DataError naming the pair's first row and
        ``weight_column`` (an engine that aggregated already checks its sums itself).
    References
        Side-table ids that reference nothing raise DataError naming the file, column and
        row, unless the column is in the table's ``drop_unknown``: then the rows are
        dropped, counted in ``stats`` and logged.
    Names
        ``item_names`` (raw id -> name) for items that have one; others get their raw id.
    Releases
        ``item_release`` (raw id -> datetime) for items with a known release; others NaT.
    """
    stats_out: dict[str, int] = dict(stats or {})
    frame = interactions
    if frame.empty:  # a filter that keeps nothing (dates, minimum counts) is the user's to see, not an IndexError
        raise DataError(interactions_file, f"no interactions left to build the {name} dataset from; check the "
                        "dataset's filters (dates, minimum counts) in the experiment file")
    stats_out["interaction_rows_read"] = len(frame) if source_rows is None else source_rows

    # factorize(sort=True): sorted unique raw ids and codes in one hash pass.
    user_codes, users = pd.factorize(frame["user"], sort=True)
    item_codes, items = pd.factorize(frame["item"], sort=True)
    user_codes, item_codes = user_codes.astype(np.int64), item_codes.astype(np.int64)
    users, items = pd.Index(users), pd.Index(items)
    if item_catalog is not None:
        extra = items.difference(item_catalog)
        stats_out["items_without_metadata"] = len(extra)
        if len(extra):
            log.info(
                "%s: %d items of %s are missing from %s; kept without metadata",
                name, len(extra), interactions_file, item_catalog_file or "the item catalogue",
            )
        catalogue = _sorted_index(item_catalog.append(extra))
        item_codes = catalogue.get_indexer(items)[item_codes].astype(np.int64)
        items = catalogue

    # One pass of numpy: sort by (user, item), then reduce runs of equal keys.
    key = user_codes * len(items) + item_codes
    order = np.argsort(key, kind="stable")
    key = key[order]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    n_dup = stats_out["interaction_rows_read"] - len(starts)
    weights = frame["weight"].to_numpy(np.float64)[order]
    weights = np.add.reduceat(weights, starts) if len(key) else weights
    over = float32_overflows(weights)
    if over.any():
        group = int(np.flatnonzero(over)[0])
        end = starts[group + 1] if group + 1 < len(starts) else len(key)
        rows = frame.index.to_numpy()[order[starts[group]:end]]
        pos = order[starts[group]:end][int(np.argmin(rows))]
        message = sum_overflow_message(end - starts[group], frame["user"].iloc[pos], frame["item"].iloc[pos],
                                       float(weights[group]))
        raise DataError(interactions_file, message, column=weight_column, row=int(frame.index[pos]) + 1)
    out = pd.DataFrame(
        {
            "user": (key[starts] // len(items)).astype(np.int32),
            "item": (key[starts] % len(items)).astype(np.int32),
            "weight": weights.astype(np.float32),
        }
    )
    if "timestamp" in frame.columns:
        ts = frame["timestamp"].to_numpy("datetime64[ns]").view(np.int64)[order]
        out["timestamp"] = np.maximum.reduceat(ts, starts).view("datetime64[ns]")
    stats_out[aggregate_stat] = n_dup
    if n_dup:
        log.info(
            "%s: aggregated %d duplicate (user, item) rows of %s (weights summed, latest timestamp kept)",
            name, n_dup, interactions_file,
        )

    # Tags.
    tags: pd.Index | None = None
    tag_names: np.ndarray | None = None
    if tag_catalog is not None:
        tag_catalog = tag_catalog.sort_index()
        tags = tag_catalog.index
        tag_names = tag_catalog.astype(str).to_numpy(dtype=object)
    else:
        used = [t.frame["tag"] for t in (item_tags, user_item_tags) if t is not None]
        if used:
            tags = _sorted_index(pd.concat(used, ignore_index=True))
            tag_names = tags.astype(str).to_numpy(dtype=object)

    known_users = interactions_file
    known_items = " or ".join(f for f in (item_catalog_file, interactions_file) if f)
    known_tags = tag_catalog_file or "the tag list"
    lookup = {
        "user": (users, "user", known_users),
        "friend": (users, "user", known_users),
        "item": (items, "item", known_items),
        "tag": (tags, "tag", known_tags),
    }

    def encode(table: SideTable, columns: Sequence[str], prefix: str) -> pd.DataFrame:
        return _encode_side(table, {c: lookup[c] for c in columns}, stats=stats_out, stat_prefix=prefix)

    item_tags_out = user_item_tags_out = social_out = None
    if item_tags is not None:
        item_tags_out = encode(item_tags, ["item", "tag"], "item_tags")
        if "weight" not in item_tags_out.columns:
            item_tags_out["weight"] = np.float32(1.0)
        before = len(item_tags_out)
        item_tags_out = (
            item_tags_out.sort_values("weight", ascending=False, kind="stable")
            .drop_duplicates(["item", "tag"])
            .sort_values(["item", "tag"], kind="stable")
            .reset_index(drop=True)
        )
        stats_out["item_tags_duplicates_dropped"] = before - len(item_tags_out)
    if user_item_tags is not None:
        stats_out["user_item_tags_rows_read"] = len(user_item_tags.frame)
        user_item_tags_out = _dedup(encode(user_item_tags, ["user", "item", "tag"], "user_item_tags"),
                                    ["user", "item", "tag"], "user_item_tags", stats_out)
    if social is not None:
        stats_out["social_rows_read"] = len(social.frame)
        social_out = _dedup(
            encode(social, ["user", "friend"], "social"), ["user", "friend"], "social", stats_out
        )

    names_out: np.ndarray | None = None
    if item_names is not None:
        named = item_names[~item_names.index.duplicated()]
        names_out = named.reindex(items).astype(object).to_numpy(copy=True)
        fallback = pd.isna(names_out) | (names_out == "")
        names_out[fallback] = items.astype(str).to_numpy(dtype=object)[fallback]

    release_out: np.ndarray | None = None
    if item_release is not None:
        known = item_release[~item_release.index.duplicated()]
        release_out = pd.to_datetime(known).reindex(items).to_numpy("datetime64[ns]")

    return MusicDataset(
        name=name,
        interactions=out,
        user_ids=users.to_numpy(),
        item_ids=items.to_numpy(),
        item_names=names_out,
        item_release=release_out,
        item_tags=item_tags_out,
        user_item_tags=user_item_tags_out,
        tag_names=tag_names,
        social=social_out,
        files=dict(files or {}),
        stats=stats_out,
    )


def _dedup(frame: pd.DataFrame, keys: list[str], prefix: str, stats: dict[str, int]) -> pd.DataFrame:
    before = len(frame)
    frame = frame.drop_duplicates(keys).sort_values(keys, kind="stable").reset_index(drop=True)
    stats[f"{prefix}_duplicates_dropped"] = before - len(frame)
    if before - len(frame):
        log.info("%s: dropped %d duplicate rows", prefix, before - len(frame))
    return frame
