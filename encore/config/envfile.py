"""Where Encore finds its defaults and its working folder, and the one ``.env`` reader.

Two different questions, answered apart:

* **Where the defaults are** (``DEFAULTS_DIR``: ``components.yaml``, ``time_split.yaml``,
  ``spark_config.yaml``, ``logger_config.yaml``): the ``config/`` folder of ``$ENCORE_HOME``
  when it holds ``components.yaml``; else the checkout's ``config/`` when Encore runs from one
  (a clone, or an editable install); else the copies shipped inside the package
  (``encore/defaults/``, copied from the checkout's ``config/`` by ``setup.py`` at build time, so
  there is one hand-edited copy).
* **Where Encore works** (``ENCORE_HOME``, also exported as ``REPO_ROOT`` for the code that
  predates the split): the folder that relative paths in an experiment, the default
  ``outputs/``, ``mlruns/``, ``data/``, ``experiments/`` and ``.env`` are relative to.
  ``$ENCORE_HOME`` when set; else the checkout when Encore runs from one; else the current
  working directory at import (an installed Encore never writes into site-packages).

``.env`` (template ``.env_template``) holds what belongs to a machine, not an experiment:
the tracking URI, data and output folders, the server's database and S3 settings, client
credentials, the serving settings. ``$ENV_FILE`` points at another file; variables set in
the environment always win over the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
"""The ``encore`` package folder."""

PACKAGED_DEFAULTS_DIR = PACKAGE_DIR / "defaults"
"""The defaults a built wheel carries (absent in a checkout: there ``config/`` is used)."""


def find_checkout(package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The repository ``encore`` runs from, or None when it is installed (no ``config/`` beside it)."""
    root = package_dir.parent
    if (root / "config" / "components.yaml").is_file() and (root / "setup.py").is_file():
        return root
    return None


def resolve_home(environ: Mapping[str, str] | None = None, checkout: Path | None = None) -> Path:
    """The working folder: ``$ENCORE_HOME``, else the checkout, else the current directory."""
    environ = os.environ if environ is None else environ
    if environ.get("ENCORE_HOME"):
        return Path(environ["ENCORE_HOME"]).expanduser().resolve()
    return checkout if checkout is not None else Path.cwd()


def resolve_defaults_dir(environ: Mapping[str, str] | None = None, checkout: Path | None = None) -> Path:
    """The folder of the default YAML files: ``$ENCORE_HOME/config``, the checkout's, else the packaged copy."""
    environ = os.environ if environ is None else environ
    candidates = []
    if environ.get("ENCORE_HOME"):
        candidates.append(Path(environ["ENCORE_HOME"]).expanduser().resolve() / "config")
    if checkout is not None:
        candidates.append(checkout / "config")
    for folder in candidates:
        if (folder / "components.yaml").is_file():
            return folder
    return PACKAGED_DEFAULTS_DIR


CHECKOUT = find_checkout()
ENCORE_HOME = resolve_home(checkout=CHECKOUT)
DEFAULTS_DIR = resolve_defaults_dir(checkout=CHECKOUT)
REPO_ROOT = ENCORE_HOME
"""The working folder (``ENCORE_HOME``); the name predates installs outside a checkout."""
DEFAULT_ENV_FILE = ENCORE_HOME / ".env"


def resolve_env_file(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path:
    """The .env file to read: the argument, else ``$ENV_FILE``, else ``<ENCORE_HOME>/.env``."""
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
