"""The auth app's configuration: its user store and the 0600 config file ``mlflow server`` reads.

start.sh runs ``python -m encore.mlflow_server auth-prepare`` when authentication is on:
the user store lives in its own schema (``ENCORE_AUTH_SCHEMA``) of the backend PostgreSQL
database; the auth config file holding the admin password and the database URI is written
0600 in a 0700 folder and handed to ``mlflow server --app-name basic-auth`` through
``MLFLOW_AUTH_CONFIG_PATH`` (never on a command line); ``default_permission`` is
``NO_PERMISSIONS``, so an anonymous or unknown caller gets nothing, and the
``authorization_function`` is Encore's (:mod:`encore.mlflow_server.auth_plugin`).
"""

from __future__ import annotations

import configparser
import io
import os
import secrets
from pathlib import Path

from encore.mlflow_server.auth_plugin import AUTH_FUNCTION
from encore.mlflow_server.settings import ServerConfigError, ServerSettings, backend_store_uri, connect_backend


def auth_database_uri(settings: ServerSettings) -> str:
    """The backend database with ``search_path`` set to the auth schema (tables and alembic
    version of the user store stay apart from the tracking tables)."""
    return f"{backend_store_uri(settings)}?options=-csearch_path%3D{settings.encore_auth_schema}"


def ensure_auth_schema(settings: ServerSettings) -> None:
    """``CREATE SCHEMA IF NOT EXISTS`` as the backend user (the database owner may always)."""
    import psycopg2
    from psycopg2 import sql

    conn = connect_backend(settings)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(settings.encore_auth_schema)))
    except psycopg2.Error as exc:
        raise ServerConfigError(
            f"cannot create schema '{settings.encore_auth_schema}' for the user store in database "
            f"{settings.postgres_db}: {' '.join(str(exc).split())} (grant CREATE on the database to "
            f"{settings.postgres_user}, or create the schema yourself)"
        ) from exc
    finally:
        conn.close()


def auth_config_text(settings: ServerSettings) -> str:
    """The ``[mlflow]`` section MLflow's auth app reads. Contains secrets."""
    config = configparser.ConfigParser()
    # Why escape: MLflow reads the file with ConfigParser's %-interpolation, and the
    # percent-encoded URI (and maybe the password) contain '%'.
    config["mlflow"] = {
        "default_permission": "NO_PERMISSIONS",
        "database_uri": auth_database_uri(settings).replace("%", "%%"),
        "admin_username": settings.encore_auth_admin_username,
        "admin_password": settings.encore_auth_admin_password.get_secret_value().replace("%", "%%"),
        "authorization_function": AUTH_FUNCTION,
        "grant_default_workspace_access": "false",
        # Why a cache: without it every request re-hashes the password (PBKDF2), several times
        # per request; a password change or deleted user reaches the other workers within the TTL.
        "auth_cache_ttl_seconds": str(max(0, settings.encore_auth_cache_seconds)),
    }
    out = io.StringIO()
    config.write(out)
    return out.getvalue()


def write_auth_config(settings: ServerSettings, run_dir: Path) -> Path:
    """Write the auth config 0600 inside ``run_dir/auth`` (0700); created with those modes, so
    the secrets are never readable by others, not even for an instant."""
    folder = run_dir / "auth"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    path = folder / "basic_auth.ini"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(auth_config_text(settings))
    return path


def prepare_exports(settings: ServerSettings, run_dir: Path) -> dict[str, str]:
    """Everything start.sh needs for the auth app: schema created, config written, env set."""
    if not settings.encore_auth_admin_password.get_secret_value():
        raise ServerConfigError("ENCORE_AUTH_ADMIN_PASSWORD is not set (authentication is on; see .env_template)")
    ensure_auth_schema(settings)
    path = write_auth_config(settings, run_dir)
    return {
        "MLFLOW_AUTH_CONFIG_PATH": str(path),
        # The UI's forms need one Flask secret shared by all workers; a fresh one per start.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32),
    }
