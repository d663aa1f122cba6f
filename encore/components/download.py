"""download: fetch the HetRec 2011 Last.fm 2K dataset and verify its SHA-256 checksums.

Not a pipeline step (``prepare`` downloads on first use when ``dataset.download`` is
true); run it alone to fetch the data ahead of time::

    python -m encore.components.download [--url URL] [--dest data/]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from encore.config.experiment import REPO_ROOT
from encore.data.dataset import DataError
from encore.data.dataset_config import LASTFM2K_URL
from encore.data.fetching import DownloadError, download_lastfm2k


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--url", default=LASTFM2K_URL, help="archive URL, https:// or file:// (default: %(default)s)")
    parser.add_argument("--dest", type=Path, default=REPO_ROOT / "data",
                        help="folder that receives hetrec2011-lastfm-2k/ (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        folder = download_lastfm2k(args.url, args.dest)
    except (DataError, DownloadError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Last.fm 2K is ready in {folder} (checksums verified)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
