"""The data-digest cache of :func:`encore.lineage.file_digests` (issue #25, item 2): a file
replaced by one of the same size and a forged modification time is hashed again."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import pytest

from encore import lineage


@pytest.fixture
def fresh(monkeypatch) -> list[Path]:
    """A clean in-process cache; the list collects every file actually hashed."""
    monkeypatch.setattr(lineage, "_memory", {})
    calls: list[Path] = []
    real = lineage.sha256_file
    monkeypatch.setattr(lineage, "sha256_file", lambda p: calls.append(Path(p)) or real(p))
    return calls


def _write(path: Path, text: str, mtime_ns: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _pause() -> None:
    # The kernel's file clock ticks coarsely (a jiffy): let it move so the ctime changes.
    time.sleep(0.05)


def test_same_size_and_forged_mtime_in_place_is_hashed_again(tmp_path: Path, fresh: list[Path]) -> None:
    data, cache = tmp_path / "events.csv", tmp_path / ".file-digests.json"
    mtime = 1_600_000_000 * 10**9
    _write(data, "user,item\n1,2\n", mtime)
    first = lineage.file_digests({"x": data}, cache)["x"]
    _pause()
    _write(data, "user,item\n1,3\n", mtime)  # corrected in place: same size, same mtime
    assert (data.stat().st_size, data.stat().st_mtime_ns) == (14, mtime)
    second = lineage.file_digests({"x": data}, cache)["x"]
    assert second != first
    assert second == lineage.sha256_file(data)


def test_a_new_process_sees_the_replacement_too(tmp_path: Path, fresh: list[Path], monkeypatch) -> None:
    data, cache = tmp_path / "events.csv", tmp_path / ".file-digests.json"
    mtime = 1_600_000_000 * 10**9
    _write(data, "user,item\n1,2\n", mtime)
    lineage.file_digests({"x": data}, cache)
    _pause()
    _write(data, "user,item\n1,3\n", mtime)
    monkeypatch.setattr(lineage, "_memory", {})  # only the cache file remembers
    assert lineage.file_digests({"x": data}, cache)["x"] == lineage.sha256_file(data)


def test_cp_p_over_the_file_is_hashed_again(tmp_path: Path, fresh: list[Path]) -> None:
    # `cp -p fixed.csv events.csv`: a new file renamed into place (new inode), metadata copied.
    data, fixed, cache = tmp_path / "events.csv", tmp_path / "fixed.csv", tmp_path / "c.json"
    mtime = 1_600_000_000 * 10**9
    _write(data, "user,item\n1,2\n", mtime)
    _write(fixed, "user,item\n1,3\n", mtime)
    lineage.file_digests({"x": data}, cache)
    shutil.copy2(fixed, tmp_path / "tmp.csv")
    os.replace(tmp_path / "tmp.csv", data)
    assert data.stat().st_mtime_ns == mtime
    assert lineage.file_digests({"x": data}, cache)["x"] == lineage.sha256_file(fixed)


def test_unchanged_files_are_hashed_once_and_old_entries_are_rehashed(tmp_path: Path, fresh: list[Path],
                                                                      monkeypatch) -> None:
    data, cache = tmp_path / "events.csv", tmp_path / ".file-digests.json"
    _write(data, "user,item\n1,2\n", 1_600_000_000 * 10**9)
    digest = lineage.file_digests({"x": data}, cache)["x"]
    monkeypatch.setattr(lineage, "_memory", {})
    assert lineage.file_digests({"x": data}, cache)["x"] == digest
    assert len(fresh) == 1
    # An entry written by an older Encore ([size, mtime_ns, sha256]) is not trusted.
    stat = data.stat()
    cache.write_text(json.dumps({str(data.resolve()): [stat.st_size, stat.st_mtime_ns, "0" * 64]}))
    monkeypatch.setattr(lineage, "_memory", {})
    assert lineage.file_digests({"x": data}, cache)["x"] == digest
    assert len(fresh) == 2
