"""Settings that belong to a machine rather than to an experiment (read from ``.env``, or the
file ``$ENV_FILE`` names: the same file the credentials are read from).

Apart from :mod:`encore.config.experiment` so that a process that needs only these (a CLI
finding its tracking URI, the Spark session) does not import the experiment model and,
through it, every generator kind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic_settings import BaseSettings, SettingsConfigDict

from encore.config.envfile import DEFAULT_ENV_FILE, resolve_env_file


class MachineSettings(BaseSettings):
    """Settings that belong to a machine rather than to an experiment (read from ``.env``)."""

    model_config = SettingsConfigDict(env_file=DEFAULT_ENV_FILE, extra="ignore", env_ignore_empty=True)

    mlflow_tracking_uri: str | None = None
    encore_data_dir: Path | None = None
    encore_output_dir: Path | None = None
    encore_spark_config: Path | None = None  # Spark session settings (default config/spark_config.yaml)
    encore_spark_master: str | None = None  # overrides the settings file's master (spark://host:port, yarn ...)

    def __init__(self, **values: Any) -> None:
        # One settings path: $ENV_FILE, resolved when read (as for credentials), not the default .env only.
        values.setdefault("_env_file", resolve_env_file())
        super().__init__(**values)
