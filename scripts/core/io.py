"""Atomic outputs and small file helpers.

Every component writes into a temporary sibling folder and renames it into place only
when everything is written, so an interrupted run leaves either the previous complete
output or nothing — never a half-written folder that a later run would reuse.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

MARKER = "_SUCCESS.json"


def is_complete(path: Path, fingerprint: str) -> bool:
    """True when ``path`` holds a finished output written for ``fingerprint``."""
    marker = path / MARKER
    if not marker.is_file():
        return False
    try:
        return json.loads(marker.read_text()).get("fingerprint") == fingerprint
    except (json.JSONDecodeError, OSError):
        return False


@contextmanager
def atomic_dir(path: Path, fingerprint: str, **marker_fields: Any) -> Iterator[Path]:
    """Yield a temporary folder that replaces ``path`` only if the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
        write_json(tmp / MARKER, {"fingerprint": fingerprint, **marker_fields})
        if path.exists():
            # Move the old output aside first: rename over a non-empty folder is not allowed.
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write Parquet atomically (temp file + rename), without the pandas index."""
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)
