"""The repository root and the one ``.env`` reader every machine-level setting goes through.

``.env`` (template ``.env_template``) holds what belongs to a machine, not an experiment:
the tracking URI, data and output folders, the server's database and S3 settings, client
credentials, the serving settings. ``$ENV_FILE`` points at another file; variables set in
the environment always win over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_ENV_FILE = REPO_ROOT / ".env"


def resolve_env_file(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The .env file to read: the argument, else ``$ENV_FILE``, else ``<repo>/.env``."""
    environ = os.environ if environ is None else environ
    if env_file is not None:
        return Path(env_file)
    if environ.get("ENV_FILE"):
        return Path(environ["ENV_FILE"])
    return DEFAULT_ENV_FILE


def env_file_values(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The key/value pairs of the resolved .env file (empty when there is none)."""
    from dotenv import dotenv_values

    path = resolve_env_file(env_file, environ)
    if not path.is_file():
        return {}
    return {key: value for key, value in dotenv_values(path).items() if value is not None}
