"""Deprecated: ``scripts.core.server_auth`` became part of ``encore.mlflow_server``; removed in Encore 0.3.

Split by job: the request hook the server runs (:mod:`encore.mlflow_server.auth_plugin`), the
auth app's store and config file (:mod:`encore.mlflow_server.auth_config`), users and grants
(:mod:`encore.mlflow_server.auth_admin`,
``python -m encore.mlflow_server auth ...``) and the client side
(:mod:`encore.tracking.credentials`). ``python -m scripts.core.server_auth <command>`` still
runs ``setup``, ``add-viewer`` and ``delete-user``; an auth config naming
``scripts.core.server_auth:authenticate_request`` still finds the hook.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Sequence

from encore.mlflow_server import cli
from encore.mlflow_server.auth_admin import add_viewer, delete_user, setup_roles
from encore.mlflow_server.auth_config import (
    auth_config_text,
    auth_database_uri,
    ensure_auth_schema,
    prepare_exports,
    write_auth_config,
)
from encore.mlflow_server.auth_plugin import AUTH_FUNCTION, PROTECTED_ALIASES, authenticate_request
from encore.tracking.credentials import (
    auth_error_message,
    client_uses_auth,
    readable_auth_errors,
    release_credentials,
    release_user,
)

__all__ = [
    "AUTH_FUNCTION", "PROTECTED_ALIASES", "add_viewer", "auth_config_text", "auth_database_uri", "auth_error_message",
    "authenticate_request", "client_uses_auth", "delete_user", "ensure_auth_schema", "main", "prepare_exports",
    "readable_auth_errors", "release_credentials", "release_user", "setup_roles", "write_auth_config",
]

warnings.warn("scripts.core.server_auth is deprecated: use `python -m encore.mlflow_server auth ...`, "
              "encore.mlflow_server.auth_plugin/auth_config/auth_admin and encore.tracking.credentials",
              DeprecationWarning, stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """The old entry point: ``[--env-file F] [--tracking-uri U] setup|add-viewer|delete-user``."""
    return cli.main(["auth", *(sys.argv[1:] if argv is None else argv)],
                    prog="python -m scripts.core.server_auth")


if __name__ == "__main__":
    sys.exit(main())
