"""Download of Last.fm 2K: verified file:// download, tampered archives, network failures."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from encore.data.fetching import (
    LASTFM2K_SHA256,
    ChecksumError,
    DownloadError,
    download_lastfm2k,
    sha256_file,
)
from encore.data.lastfm2k import load_lastfm2k

REAL_LASTFM2K = Path(
    os.environ.get(
        "ENCORE_LASTFM2K_DIR",
        Path(__file__).resolve().parents[2].parent / "shared/datasets/hetrec2011-lastfm-2k",
    )
)


@pytest.fixture(scope="module")
def real_files() -> dict[str, bytes]:
    assert REAL_LASTFM2K.is_dir(), (
        f"Last.fm 2K folder not found at {REAL_LASTFM2K}; set ENCORE_LASTFM2K_DIR to the unzipped "
        "hetrec2011-lastfm-2k folder"
    )
    names = [*LASTFM2K_SHA256, "readme.txt"]
    return {name: (REAL_LASTFM2K / name).read_bytes() for name in names if (REAL_LASTFM2K / name).is_file()}


def make_zip(path: Path, files: dict[str, bytes], *, folder: str = "") -> str:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in files.items():
            zf.writestr(folder + name, data)
    return path.as_uri()


def test_sha256_file(tmp_path: Path) -> None:
    path = tmp_path / "x.bin"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several chunks
    path.write_bytes(data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


@pytest.mark.realdata
def test_embedded_checksums_match_the_shared_copy() -> None:
    sums = dict(
        reversed(line.split()) for line in (REAL_LASTFM2K / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert sums == LASTFM2K_SHA256
    assert {name: sha256_file(REAL_LASTFM2K / name) for name in LASTFM2K_SHA256} == LASTFM2K_SHA256


@pytest.mark.realdata
@pytest.mark.parametrize("folder", ["", "hetrec2011-lastfm-2k/"])
def test_download_verifies_and_installs(tmp_path: Path, real_files: dict[str, bytes], folder: str) -> None:
    url = make_zip(tmp_path / "archive.zip", real_files, folder=folder)
    dest = tmp_path / "data"
    got = download_lastfm2k(url, dest)
    assert got == dest / "hetrec2011-lastfm-2k"
    assert sorted(p.name for p in dest.iterdir()) == ["hetrec2011-lastfm-2k"]  # no temp files left
    assert {name: sha256_file(got / name) for name in LASTFM2K_SHA256} == LASTFM2K_SHA256
    assert (got / "readme.txt").is_file()
    assert download_lastfm2k("file:///nonexistent.zip", dest) == got  # already there: no download
    assert load_lastfm2k(got).n_users == 1892


@pytest.mark.realdata
def test_tampered_archive_is_rejected_and_leaves_nothing(tmp_path: Path, real_files: dict[str, bytes]) -> None:
    files = dict(real_files)
    files["user_friends.dat"] = files["user_friends.dat"].replace(b"2\t275", b"2\t276", 1)
    url = make_zip(tmp_path / "archive.zip", files)
    dest = tmp_path / "data"
    with pytest.raises(ChecksumError) as exc:
        download_lastfm2k(url, dest)
    text = str(exc.value)
    assert "user_friends.dat" in text
    assert LASTFM2K_SHA256["user_friends.dat"] in text
    assert hashlib.sha256(files["user_friends.dat"]).hexdigest() in text
    assert list(dest.iterdir()) == []


def test_incomplete_or_broken_archive(tmp_path: Path) -> None:
    dest = tmp_path / "data"
    url = make_zip(tmp_path / "a.zip", {"artists.dat": b"id\tname\n"})
    missing = r"tags.dat, user_artists.dat, user_friends.dat, user_taggedartists.dat is missing from the downloaded"
    with pytest.raises(DownloadError, match=missing):
        download_lastfm2k(url, dest)
    assert list(dest.iterdir()) == []

    (tmp_path / "b.zip").write_bytes(b"<html>not a zip</html>")
    with pytest.raises(DownloadError, match=r"not a valid zip archive"):
        download_lastfm2k((tmp_path / "b.zip").as_uri(), dest)
    assert list(dest.iterdir()) == []

    url = make_zip(tmp_path / "c.zip", {"../evil.dat": b"x"})
    with pytest.raises(DownloadError, match=r"unsafe path"):
        download_lastfm2k(url, dest)
    assert list(dest.iterdir()) == [] and not (tmp_path / "evil.dat").exists()


def test_network_failure_is_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as exc:
        download_lastfm2k((tmp_path / "missing.zip").as_uri(), tmp_path / "data")
    assert str(exc.value).startswith("cannot download file://") and "\n" not in str(exc.value)

    with pytest.raises(DownloadError) as exc:
        download_lastfm2k("http://127.0.0.1:9/hetrec.zip", tmp_path / "data", timeout=5)
    assert str(exc.value).startswith("cannot download http://127.0.0.1:9/hetrec.zip: ")
    assert "\n" not in str(exc.value)
    assert list((tmp_path / "data").iterdir()) == []


@pytest.mark.realdata
def test_download_cli_fetches_from_a_local_zip(tmp_path: Path, real_files: dict[str, bytes]) -> None:
    """``python -m encore.components.download`` against a local file:// archive."""
    import subprocess
    import sys

    url = make_zip(tmp_path / "lastfm.zip", real_files)
    dest = tmp_path / "dest"
    done = subprocess.run([sys.executable, "-m", "encore.components.download", "--url", url,
                           "--dest", str(dest)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert (dest / "hetrec2011-lastfm-2k" / "user_artists.dat").is_file()
    bad = subprocess.run([sys.executable, "-m", "encore.components.download", "--url",
                          (tmp_path / "missing.zip").as_uri(), "--dest", str(tmp_path / "d2")],
                         capture_output=True, text=True, check=False)
    assert bad.returncode == 2 and "error:" in bad.stderr


def test_failed_download_says_in_one_message_how_to_get_the_data(tmp_path: Path, monkeypatch) -> None:
    from encore.data.dataset_config import Lastfm2kConfig
    from encore.data.lastfm2k import DatasetNotFound, resolve_lastfm2k_dir

    monkeypatch.delenv("ENCORE_DATA_DIR", raising=False)
    config = Lastfm2kConfig(url=(tmp_path / "missing.zip").as_uri())
    with pytest.raises(DatasetNotFound) as info:
        resolve_lastfm2k_dir(config, tmp_path / "data")
    message = str(info.value)
    assert "cannot download" in message and "ENCORE_DATA_DIR" in message
    assert "python -m encore.components.download" in message
    assert not (tmp_path / "data" / "hetrec2011-lastfm-2k").exists()
