"""The Spark session of the preprocessing engine, configured by ``config/spark_config.yaml``.

Only ``dataset.engine: spark`` needs it; pyspark and a Java 17+ runtime are then required
(``pip install -e .[spark]``; Debian: ``apt-get install openjdk-17-jre-headless``). The
settings change speed and memory, never results, so they are read from their own file
(``ENCORE_SPARK_CONFIG`` points at another one) and are not part of the config hash.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import Field, ValidationError

from encore.config.envfile import DEFAULTS_DIR
from encore.config.machine import MachineSettings
from encore.config.types import PositiveInt, Strict
from encore.config.validation import ConfigError, format_validation_error, read_yaml

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

DEFAULT_SPARK_CONFIG = DEFAULTS_DIR / "spark_config.yaml"

log = logging.getLogger(__name__)


class SparkSettings(Strict):
    """Session settings; every key of ``config/spark_config.yaml`` (unknown keys are rejected)."""

    app_name: str = "encore-prepare"
    master: str = "local[*]"
    driver_memory: str = Field(default="4g", pattern=r"^\d+[kmgt]?$")
    shuffle_partitions: PositiveInt = 8
    local_dir: Path | None = None
    log_level: str = Field(default="WARN", pattern=r"^(ALL|DEBUG|ERROR|FATAL|INFO|OFF|TRACE|WARN)$")
    conf: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def spark_conf(self) -> dict[str, str]:
        """Every ``spark.*`` setting of the session, as Spark wants them (strings)."""
        conf: dict[str, Any] = {
            "spark.app.name": self.app_name,
            "spark.master": self.master,
            "spark.driver.memory": self.driver_memory,
            "spark.sql.shuffle.partitions": self.shuffle_partitions,
            # Naive timestamps are UTC, as in the pandas engine; results must not depend on the machine's zone.
            "spark.sql.session.timeZone": "UTC",
            # Parquet nanosecond timestamps (pandas writes them) as int64 instead of an unreadable column.
            "spark.sql.legacy.parquet.nanosAsLong": "true",
        }
        if self.master.startswith("local"):
            # A local session talks to itself only: bind the driver to loopback, not to whatever
            # interface the host name resolves to.
            conf |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
        if self.local_dir is not None:
            conf["spark.local.dir"] = str(self.local_dir)
        conf |= self.conf
        return {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in conf.items()}


def spark_config_file() -> Path:
    """``$ENCORE_SPARK_CONFIG`` if set, else ``config/spark_config.yaml``."""
    configured = MachineSettings().encore_spark_config
    return Path(configured) if configured else DEFAULT_SPARK_CONFIG


def load_spark_settings(path: Path | None = None) -> SparkSettings:
    """Read and validate a Spark settings file; ConfigError names the file and the key.

    ``ENCORE_SPARK_MASTER`` (environment or ``.env``), when set, replaces the file's ``master``:
    the same settings then run on ``local[*]`` or on a cluster (``spark://host:port``, ``yarn``,
    ``k8s://...``) without editing the file.
    """
    path = Path(path) if path is not None else spark_config_file()
    if not path.is_file():
        raise ConfigError(f"{path}: Spark settings file not found (set ENCORE_SPARK_CONFIG or restore it)")
    values = read_yaml(path)
    master = MachineSettings().encore_spark_master
    if master and isinstance(values, dict):
        values = values | {"master": master}
    try:
        return SparkSettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path), what="Spark settings")) from None


def _check_java() -> None:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").exists():
        return
    if shutil.which("java") is None:
        raise ConfigError(
            "dataset.engine=spark needs a Java 17+ runtime, and none was found (no java on PATH, no JAVA_HOME); "
            "install one (Debian: apt-get install openjdk-17-jre-headless) or use dataset.engine=pandas"
        )


def spark_session(settings: SparkSettings) -> SparkSession:
    """The process's Spark session: the running one, or a new one built from ``settings``.

    Spark allows one session per process; a running session is reused as it is (its
    settings cannot change), which the log says.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:
        raise ConfigError(
            "dataset.engine=spark needs pyspark: pip install -e '.[spark]' (or use dataset.engine=pandas)"
        ) from exc
    active = SparkSession.getActiveSession()
    if active is not None:
        # Only SQL settings can change in a running session; the rest stay as it was started.
        for key, value in settings.spark_conf().items():
            if key.startswith("spark.sql."):
                active.conf.set(key, value)
        log.info("reusing the running Spark session (%s)", active.sparkContext.master)
        return active
    _check_java()
    # Python on the executors (applyInPandas in the ranking stage and evaluate): pyspark reads
    # PYSPARK_PYTHON when the context starts, "python3" without it. The driver's interpreter has
    # Encore and its packages; a cluster whose machines install them elsewhere sets PYSPARK_PYTHON.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = SparkSession.builder
    for key, value in settings.spark_conf().items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel(settings.log_level)
    log.info("started Spark %s (%s, driver memory %s)", session.version, settings.master, settings.driver_memory)
    return session


_UNPICKLED: dict[str, Any] = {}
"""The value of the broadcast in use, by token: unpickled once per (reused) Python worker, not once
per task. One entry: a new job's token replaces the last job's value."""


class PickledBroadcast:
    """A driver-side object shipped to the executors once: pickled, broadcast, and unpickled at
    most once per Python worker (:meth:`value`). Only the Spark broadcast handle and a token travel
    in a task's closure, not the payload; ``payload_bytes`` is its pickled size (for the logs)."""

    def __init__(self, spark: SparkSession, value: Any) -> None:
        import pickle
        import uuid

        payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self.payload_bytes = len(payload)
        self._broadcast = spark.sparkContext.broadcast(payload)
        self._token = uuid.uuid4().hex

    def value(self) -> Any:
        """The object, on an executor (or the driver)."""
        if self._token not in _UNPICKLED:
            import pickle

            _UNPICKLED.clear()
            _UNPICKLED[self._token] = pickle.loads(self._broadcast.value)
        return _UNPICKLED[self._token]

    def destroy(self) -> None:
        """Free the broadcast on the driver and the executors."""
        self._broadcast.destroy()
