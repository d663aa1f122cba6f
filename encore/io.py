"""Atomic outputs, their integrity, locks, and small file helpers.

Every component writes into a temporary sibling folder and renames it into place only
when everything is written, so an interrupted run leaves either the previous complete
output or nothing — never a half-written folder that a later run would reuse.

The completion marker lists every file of the output with its size and SHA-256, so an output
whose files were later removed, truncated or overwritten is not complete any more (and is
recomputed rather than reused into a traceback). Temporary folders carry the id of the process
that writes them, so the debris of a killed run can be told from the work of a live one.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

from encore.data.fetching import sha256_file

log = logging.getLogger(__name__)

MARKER = "_SUCCESS.json"
_DEBRIS = re.compile(r"^\..+\.(?:tmp|old)-(\d+)(?:-.*)?$")
"""Temporary (``.<name>.tmp-<pid>-<random>``) and replaced (``.<name>.old-<pid>``) folders."""


def _manifest(folder: Path) -> dict[str, list]:
    """``{relative path: [size, mtime_ns, sha256]}`` of every file below ``folder``."""
    files: dict[str, list] = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MARKER):
        stat = path.stat()
        files[path.relative_to(folder).as_posix()] = [stat.st_size, stat.st_mtime_ns, sha256_file(path)]
    return files


def _intact(folder: Path, manifest: dict[str, list]) -> str | None:
    """None when every listed file is there unchanged, else what is wrong with the first that is not.

    Sizes are always compared; a file is re-hashed only when its modification time changed.
    """
    for name, (size, mtime_ns, digest) in manifest.items():
        path = folder / name
        try:
            stat = path.stat()
        except OSError:
            return f"{name} is missing"
        if stat.st_size != size:
            return f"{name} changed size ({stat.st_size} bytes, written with {size})"
        if stat.st_mtime_ns != mtime_ns and sha256_file(path) != digest:
            return f"{name} changed content"
    return None


def is_complete(path: Path, fingerprint: str) -> bool:
    """True when ``path`` holds a finished, intact output written for ``fingerprint``."""
    return completion_problem(path, fingerprint) is None


def completion_problem(path: Path, fingerprint: str) -> str | None:
    """None when ``path`` holds a finished, intact output for ``fingerprint``; else why not."""
    marker = path / MARKER
    if not marker.is_file():
        return "no complete output"
    try:
        data = json.loads(marker.read_text())
    except (json.JSONDecodeError, OSError):
        return f"{MARKER} is unreadable"
    if not isinstance(data, dict) or data.get("fingerprint") != fingerprint:
        return "written for another fingerprint"
    manifest = data.get("files")
    if not isinstance(manifest, dict):
        return f"{MARKER} lists no files (written by an older Encore)"
    return _intact(path, manifest)


def read_marker(path: Path) -> dict[str, Any]:
    return json.loads((path / MARKER).read_text())


@contextmanager
def atomic_dir(path: Path, fingerprint: str, **marker_fields: Any) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-{os.getpid()}-", dir=path.parent))
    try:
        yield tmp
        write_json(tmp / MARKER, {"fingerprint": fingerprint, "files": _manifest(tmp), **marker_fields})
        if path.exists():
            # Move the old output aside first: rename over a non-empty folder is not allowed.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def process_start_time(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), or None if it is not running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22 of proc(5): start time in clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return 0.0  # alive, start unknown: never treat its work as debris


def remove_debris(folder: Path) -> list[Path]:
    """Remove temporary and replaced output folders in ``folder`` whose writer is gone: its process
    is not running, or the process now holding that id started after the folder was made."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        match = _DEBRIS.match(path.name)
        if not match or not path.is_dir():
            continue
        started = process_start_time(int(match.group(1)))
        try:
            made = path.stat().st_mtime
        except OSError:
            continue
        if started is None or started > made + 1:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    if removed:
        log.info("removed %d folder(s) left by interrupted runs in %s", len(removed), folder)
    return removed


@contextmanager
def path_lock(path: Path, *, waiting: str | None = None, wait: bool = True) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (a file in ``.locks/`` beside it) for the block; yields
    True once held.

    A second process asking for the same lock waits here (logging ``waiting``, if given); with
    ``wait=False`` it does not wait and the block runs with False (nothing held: e.g. ``clean``
    skipping a folder a running pipeline holds). The lock is an ``flock``: the kernel releases it
    when its holder dies, so a crashed holder never blocks later runs.
    """
    lock_file = path.parent / ".locks" / f"{path.name}.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            if not wait:
                yield False
                return
            if waiting:
                log.info("%s", waiting)
            started = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            if waiting:
                log.info("waited %.1f s", time.monotonic() - started)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


class ParquetSink:
    """Append frames of one schema to a Parquet file batch by batch (one row group each), so
    a large table is written without being held; the file appears only on :meth:`close`.

    ``schema`` (a ``pyarrow.Schema``) fixes the column types up front, and lets a sink with no
    frame write an empty table; without it the first frame's types are taken.
    """

    def __init__(self, path: Path, schema: Any = None) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self._tmp = path.with_name(f".{path.name}.tmp")
        self._schema = schema
        self._writer: Any = pq.ParquetWriter(self._tmp, schema) if schema is not None else None
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, schema=self._schema, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, table.schema)
        self._writer.write_table(table)
        self.rows += len(frame)

    __call__ = write

    def close(self) -> None:
        if self._writer is None:
            raise ValueError(f"{self.path.name}: nothing was written")
        self._writer.close()
        self._tmp.replace(self.path)

    def __enter__(self) -> ParquetSink:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            if self._writer is not None:
                self._writer.close()
            self._tmp.unlink(missing_ok=True)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write Parquet atomically (temp file + rename), without the pandas index."""
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
