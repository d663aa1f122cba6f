"""Where the tests find the repository and the real Last.fm 2K folder (no Encore import: the
markers plugin reads them before, and in suites without, the library)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LASTFM2K_DIR = Path(os.environ.get("ENCORE_LASTFM2K_DIR", REPO_ROOT.parent / "shared/datasets/hetrec2011-lastfm-2k"))
