"""The MLflow server's settings: read from ``.env`` / the environment, and what they imply.

The store URIs, the address clients use, whether authentication is on, the ``export``
lines start.sh evaluates and the masked view ``show`` prints. Every other module of
:mod:`encore.mlflow_server` starts from :class:`ServerSettings`.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from encore.config.envfile import DEFAULT_ENV_FILE, resolve_env_file
from encore.config.validation import ConfigError
from encore.tracking.client import mask, mask_uri

#: Keys without which the server cannot start, in the order they are reported.
REQUIRED_KEYS: tuple[str, ...] = (
    "POSTGRES_HOST",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "S3_BUCKET",
)

#: Hosts a server may bind to without authentication: only this machine can reach them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ServerConfigError(ConfigError):
    """The server configuration is unusable; the message says what to change (a
    :class:`~encore.config.validation.ConfigError`, so every CLI reports it the same way)."""


class ServerSettings(BaseSettings):
    """Everything the server scripts read from ``.env`` / the environment.

    Field names map case-insensitively to the variables in ``.env_template``.
    Required keys default to empty so that a missing key is reported by name
    (:func:`missing_keys`) instead of as a validation traceback.
    """

    model_config = SettingsConfigDict(
        env_file=DEFAULT_ENV_FILE,
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # Why: `export POSTGRES_PASSWORD=` in a shell must not blank out the .env value.
        env_ignore_empty=True,
    )

    mlflow_tracking_uri: str = ""
    postgres_host: str = ""
    postgres_port: int = 5432
    postgres_db: str = ""
    postgres_user: str = ""
    postgres_password: SecretStr = SecretStr("")
    s3_bucket: str = ""
    s3_prefix: str = "mlflow"
    mlflow_s3_endpoint_url: str = ""
    aws_access_key_id: str = ""
    aws_secret_access_key: SecretStr = SecretStr("")
    aws_default_region: str = "us-east-1"
    mlflow_host: str = "127.0.0.1"
    mlflow_port: int = 5000
    mlflow_workers: int = 2
    # Only read to refuse it: `mlflow server` picks this variable up as --default-artifact-root.
    mlflow_default_artifact_root: str = ""
    encore_data_dir: str = "data"
    # Authentication (MLflow's basic-auth app); see encore/mlflow_server/auth_plugin.py.
    encore_server_auth: Literal["auto", "on", "off"] = "auto"
    encore_allow_unauthenticated_network: bool = False
    encore_auth_schema: str = "mlflow_auth"
    encore_auth_admin_username: str = "admin"
    encore_auth_admin_password: SecretStr = SecretStr("")
    encore_pipeline_username: str = "encore-pipeline"
    encore_pipeline_password: SecretStr = SecretStr("")
    encore_release_username: str = "encore-release"
    encore_release_password: SecretStr = SecretStr("")
    encore_registered_models: str = "encore-ranker"
    # Seconds a worker trusts a verified (user, password) pair (MLflow's auth_cache_ttl_seconds).
    encore_auth_cache_seconds: int = 30


def load_settings(env_file: str | Path | None = None) -> ServerSettings:
    """Load settings from ``env_file`` (see :func:`resolve_env_file`); environment wins.

    A missing file is not an error (everything may come from the environment); missing
    keys are reported by :func:`missing_keys`.
    """
    return ServerSettings(_env_file=resolve_env_file(env_file))  # type: ignore[call-arg]


def setting_value(settings: ServerSettings, key: str) -> str:
    """The value of ``key`` (a variable name) as a string, secrets revealed."""
    raw = getattr(settings, key.lower())
    return raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)


def missing_keys(settings: ServerSettings) -> list[str]:
    """Names of the required keys that are not set (empty counts as not set)."""
    return [key for key in REQUIRED_KEYS if not setting_value(settings, key).strip()]


def _url_host(host: str) -> str:
    # Why: an IPv6 literal must be bracketed in a URL or its colons read as a port.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def backend_store_uri(settings: ServerSettings) -> str:
    """SQLAlchemy URI of the backend store, user/password/db percent-encoded.

    ``quote(..., safe="")`` encodes every reserved character, so a password with
    ``@ : / # %`` round-trips through SQLAlchemy's URL parser unchanged.
    """
    missing = [k for k in ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER") if not setting_value(settings, k)]
    if missing:
        raise ServerConfigError(f"cannot build the backend store URI: {', '.join(missing)} not set")
    user = quote(settings.postgres_user, safe="")
    password = quote(settings.postgres_password.get_secret_value(), safe="")
    credentials = f"{user}:{password}" if password else user
    host = _url_host(settings.postgres_host)
    db = quote(settings.postgres_db, safe="")
    return f"postgresql+psycopg2://{credentials}@{host}:{settings.postgres_port}/{db}"


def artifacts_destination(settings: ServerSettings) -> str:
    """``s3://bucket/prefix`` (or ``s3://bucket`` for an empty prefix)."""
    bucket = settings.s3_bucket.strip().removeprefix("s3://").strip("/")
    if not bucket:
        raise ServerConfigError("cannot build the artifact destination: S3_BUCKET not set")
    prefix = settings.s3_prefix.strip().strip("/")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def tracking_url(settings: ServerSettings) -> str:
    """The URL clients on this machine use to reach the configured server."""
    # Why: a server bound to every interface is still reached through loopback locally.
    host = "127.0.0.1" if settings.mlflow_host in ("", "0.0.0.0") else settings.mlflow_host
    if host == "::":
        host = "::1"
    return f"http://{_url_host(host)}:{settings.mlflow_port}"


def secret_values(settings: ServerSettings) -> list[str]:
    """Every secret of the settings: what :func:`~encore.tracking.client.redact` removes from messages."""
    return [
        settings.postgres_password.get_secret_value(),
        settings.aws_secret_access_key.get_secret_value(),
        settings.encore_auth_admin_password.get_secret_value(),
        settings.encore_pipeline_password.get_secret_value(),
        settings.encore_release_password.get_secret_value(),
    ]


def is_loopback(host: str) -> bool:
    """True when only this machine can reach a server bound to ``host``."""
    return host.strip().lower() in LOOPBACK_HOSTS or host.startswith("127.")


def auth_enabled(settings: ServerSettings) -> bool:
    """Whether start.sh runs the basic-auth app: ``on``/``off``, or ``auto`` = on off loopback."""
    if settings.encore_server_auth == "auto":
        return not is_loopback(settings.mlflow_host)
    return settings.encore_server_auth == "on"


def connect_backend(settings: ServerSettings, timeout: float = 5.0) -> Any:
    """A psycopg2 connection to the backend database, as the backend user."""
    import psycopg2

    return psycopg2.connect(
        host=settings.postgres_host,
        port=settings.postgres_port,
        dbname=settings.postgres_db,
        user=settings.postgres_user,
        password=settings.postgres_password.get_secret_value(),
        connect_timeout=max(1, int(timeout)),
    )


def shell_exports(settings: ServerSettings) -> str:
    """``export`` lines start.sh/clean.sh eval: store URIs and the server's S3 credentials.

    Contains secrets: meant for ``eval``, never for a terminal or a log.
    """
    env = {
        # Why env and not argv: `mlflow server --backend-store-uri` also reads this variable,
        # and the password then never shows up in `ps`.
        "MLFLOW_BACKEND_STORE_URI": backend_store_uri(settings),
        "ENCORE_ARTIFACTS_DESTINATION": artifacts_destination(settings),
        "ENCORE_BACKEND_STORE_URI_MASKED": mask_uri(backend_store_uri(settings)),
        "ENCORE_TRACKING_URL": tracking_url(settings),
        "MLFLOW_HOST": settings.mlflow_host,
        "MLFLOW_PORT": str(settings.mlflow_port),
        "MLFLOW_WORKERS": str(settings.mlflow_workers),
        "AWS_DEFAULT_REGION": settings.aws_default_region,
        # on: start.sh runs `mlflow server --app-name basic-auth` (see encore/mlflow_server/auth_plugin.py).
        "ENCORE_AUTH": "on" if auth_enabled(settings) else "off",
    }
    # The server proxies artifacts, so it (and only it) needs the S3 endpoint and keys.
    optional = {
        "MLFLOW_S3_ENDPOINT_URL": settings.mlflow_s3_endpoint_url,
        "AWS_ACCESS_KEY_ID": settings.aws_access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.aws_secret_access_key.get_secret_value(),
    }
    env.update({k: v for k, v in optional.items() if v})
    return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items()) + "\n"


def describe(settings: ServerSettings) -> dict[str, str]:
    """All settings as strings with secrets masked (for ``show`` and logs)."""
    out = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        out[name.upper()] = mask(value) if isinstance(value, SecretStr) else str(value)
    if not missing_keys(settings):
        out["(backend store uri)"] = mask_uri(backend_store_uri(settings))
        out["(artifacts destination)"] = artifacts_destination(settings)
    return out
