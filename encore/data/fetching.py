"""Download the HetRec 2011 Last.fm 2K archive, verified, and file checksums.

The archive is fetched into a temporary file next to its destination, extracted into a
temporary folder there, every data file is checked against the official SHA-256 below,
and only then is the folder renamed into place (one atomic rename on the same file
system), so an interrupted or tampered download never leaves a half-usable folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

log = logging.getLogger(__name__)

LASTFM2K_DIRNAME = "hetrec2011-lastfm-2k"

LASTFM2K_SHA256: dict[str, str] = {
    "artists.dat": "4c99dc28397ec559520d5bf5341f4c952c8c416c3de918548f88269b88039806",
    "tags.dat": "96a09fb5e61b31856e63d4251ec56c4c9ea91ab2f762465937652689b9836fc7",
    "user_artists.dat": "001400dc3c7d2667fca6e4ea6dc6acc31a9dd28ad5cd0f74cea988c019934d3b",
    "user_friends.dat": "9a3a8f7fa5f5ec832335e5b58ed69a4cf27c6f6f6afcde62134810eea46445a7",
    "user_taggedartists.dat": "c4a9ffae9ab47a9f9b2f0678ab1f7e5c1db4ca818837d8cddd1f5699c5bbf048",
}
"""SHA-256 of the official archive's data files (other members, e.g. readme.txt, are kept unchecked)."""

_CHUNK = 1 << 20


class DownloadError(RuntimeError):
    """The dataset could not be downloaded or failed verification (one-line message)."""


class ChecksumError(DownloadError):
    """A downloaded file's SHA-256 differs from the expected one."""


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download_lastfm2k(url: str, dest_dir: str | Path, *, timeout: float = 60) -> Path:
    """Download and verify the Last.fm 2K archive into ``dest_dir/hetrec2011-lastfm-2k``.

    ``url`` may be ``https://`` or ``file://`` (tests). Returns the dataset folder. If the
    folder already exists it is returned as is (another process may have just finished).

    Raises
    ------
    DownloadError
        Network or archive failure, with a readable one-line message.
    ChecksumError
        A data file does not match; names the file and both hashes. Nothing is left behind.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / LASTFM2K_DIRNAME
    if target.is_dir():
        return target
    dest_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".lastfm2k-", suffix=".zip.part", dir=dest_dir)
    archive = Path(tmp_name)
    staging = Path(tempfile.mkdtemp(prefix=".lastfm2k-", suffix=".extract", dir=dest_dir))
    try:
        with os.fdopen(fd, "wb") as out:
            _fetch(url, out, timeout=timeout)
        _extract(archive, staging)
        _verify(staging)
        try:
            staging.rename(target)
        except OSError:
            if not target.is_dir():  # not a lost race with a concurrent download
                raise
            log.info("%s appeared while downloading; keeping the existing folder", target)
            return target
        log.info("downloaded and verified %s into %s", url, target)
        return target
    finally:
        archive.unlink(missing_ok=True)
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _fetch(url: str, out, *, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out, _CHUNK)
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot download {url}: HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        raise DownloadError(f"cannot download {url}: {exc.reason}") from exc
    except (TimeoutError, OSError) as exc:
        raise DownloadError(f"cannot download {url}: {exc}") from exc


def _extract(archive: Path, staging: Path) -> None:
    """Extract data members flat into ``staging`` (the archive may wrap them in one folder)."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                member = PurePosixPath(info.filename)
                if info.is_dir() or member.name.startswith(".") or "__MACOSX" in member.parts:
                    continue
                if member.is_absolute() or ".." in member.parts:
                    raise DownloadError(f"{archive.name}: unsafe path in archive: {info.filename!r}")
                with zf.open(info) as src, (staging / member.name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"downloaded file is not a valid zip archive ({exc})") from exc


def _verify(folder: Path) -> None:
    missing = [name for name in LASTFM2K_SHA256 if not (folder / name).is_file()]
    if missing:
        raise DownloadError(f"{', '.join(missing)} is missing from the downloaded archive")
    for name, expected in LASTFM2K_SHA256.items():
        actual = sha256_file(folder / name)
        if actual != expected:
            raise ChecksumError(f"{name}: SHA-256 mismatch: expected {expected}, got {actual}")
