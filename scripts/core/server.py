"""Deprecated: ``scripts.core.server`` became ``encore.mlflow_server``; removed in Encore 0.3.

The module was split by job: the ``settings``, ``preflight``, ``schema`` and ``operations``
modules of :mod:`encore.mlflow_server`, and one command line, ``python -m encore.mlflow_server``.
``python -m scripts.core.server <command>`` still runs the same commands.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from encore.mlflow_server import cli
from encore.mlflow_server.operations import run_gc, wait_for_health
from encore.mlflow_server.preflight import (
    Finding,
    Level,
    auth_findings,
    check_bucket,
    check_database,
    looks_like_aws_key,
    preflight,
    validate_server_args,
)
from encore.mlflow_server.schema import SchemaStatus, schema_status, upgrade_schema_if_needed
from encore.mlflow_server.settings import (
    LOOPBACK_HOSTS,
    REQUIRED_KEYS,
    ServerConfigError,
    ServerSettings,
    artifacts_destination,
    auth_enabled,
    backend_store_uri,
    connect_backend,
    describe,
    is_loopback,
    load_settings,
    missing_keys,
    shell_exports,
    tracking_url,
)

__all__ = [
    "LOOPBACK_HOSTS", "REQUIRED_KEYS", "Finding", "Level", "SchemaStatus", "ServerConfigError", "ServerSettings",
    "artifacts_destination", "auth_enabled", "auth_findings", "backend_store_uri", "check_bucket", "check_database",
    "connect_backend", "describe", "is_loopback", "load_settings", "looks_like_aws_key", "main", "missing_keys",
    "preflight", "run_gc", "schema_status", "shell_exports", "tracking_url", "upgrade_schema_if_needed",
    "validate_server_args", "wait_for_health",
]

warnings.warn("scripts.core.server is deprecated: use `python -m encore.mlflow_server` and the modules "
              "settings, preflight, schema and operations of encore.mlflow_server", DeprecationWarning, stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """The old entry point: the same commands as ``python -m encore.mlflow_server``."""
    return cli.main(argv, prog="python -m scripts.core.server")


if __name__ == "__main__":
    sys.exit(main())
