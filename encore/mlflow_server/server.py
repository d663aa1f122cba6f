"""Configuration, preflight checks and helpers for the production MLflow tracking server.

The server runs with a PostgreSQL backend store and proxies artifacts to S3
(``--serve-artifacts --artifacts-destination s3://bucket/prefix``), so pipeline clients
need only ``MLFLOW_TRACKING_URI``: no database password, no cloud credentials.

Settings come from a ``.env`` file (see ``.env_template``); variables set in the
environment win over the file. The ``mlflow_server/*.sh`` scripts drive this module
through its CLI::

    python -m encore.mlflow_server.server check            # preflight: one line per problem
    python -m encore.mlflow_server.server shell-env        # `export` lines for start.sh (secrets!)
    python -m encore.mlflow_server.server db-upgrade       # `mlflow db upgrade` only when behind
    python -m encore.mlflow_server.server wait-health      # bounded wait for GET /health
    python -m encore.mlflow_server.server gc [gc args]     # `mlflow gc` with the configured stores
    python -m encore.mlflow_server.server show             # settings with secrets masked
    python -m encore.mlflow_server.server auth-prepare     # auth schema + 0600 auth config (start.sh)

Authentication (MLflow's basic-auth app, Encore's roles) lives in
:mod:`encore.mlflow_server.auth`.

The client side (what a pipeline checks before it logs: reachability, credentials, fail-fast
HTTP settings) is :mod:`encore.tracking.client`; the ``.env`` reader both share is
:mod:`encore.config.envfile`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from encore.config.envfile import DEFAULT_ENV_FILE, resolve_env_file
from encore.config.experiment import ConfigError
from encore.tracking.client import (
    TrackingServerUnreachable,
    check_tracking_server,
    mask,
    mask_uri,
    redact,
)

#: Keys without which the server cannot start, in the order they are reported.
REQUIRED_KEYS: tuple[str, ...] = (
    "POSTGRES_HOST",
    "POSTGRES_DB",
    "POSTGRES_USER",
    "POSTGRES_PASSWORD",
    "S3_BUCKET",
)

#: ``mlflow server`` options that start.sh sets from the settings itself, or that break the
#: artifact proxy; passing them as extra arguments is refused.
_FORBIDDEN_SERVER_ARGS: dict[str, str] = {
    "--default-artifact-root": (
        "--default-artifact-root must not be combined with --serve-artifacts: new experiments "
        "would get that root as their artifact location and clients would write there directly, "
        "bypassing the proxy (and needing cloud credentials). Artifacts go to "
        "--artifacts-destination, built from S3_BUCKET/S3_PREFIX"
    ),
    "--no-serve-artifacts": (
        "--no-serve-artifacts disables the artifact proxy; clients would then need direct "
        "S3 credentials. Encore always serves artifacts through the server"
    ),
    "--backend-store-uri": "--backend-store-uri is built from POSTGRES_* in the .env file",
    "--artifacts-destination": "--artifacts-destination is built from S3_BUCKET/S3_PREFIX",
    "--host": "--host comes from MLFLOW_HOST",
    "--port": "--port comes from MLFLOW_PORT",
    "--workers": "--workers comes from MLFLOW_WORKERS",
    "--app-name": "--app-name comes from ENCORE_SERVER_AUTH (basic-auth when authentication is on)",
}

#: Hosts a server may bind to without authentication: only this machine can reach them.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class ServerConfigError(ConfigError):
    """The server configuration is unusable; the message says what to change (a
    :class:`~encore.config.experiment.ConfigError`, so every CLI reports it the same way)."""


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
    # Authentication (MLflow's basic-auth app); see encore/mlflow_server/auth.py.
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


def _value(settings: ServerSettings, key: str) -> str:
    raw = getattr(settings, key.lower())
    return raw.get_secret_value() if isinstance(raw, SecretStr) else str(raw)


def missing_keys(settings: ServerSettings) -> list[str]:
    """Names of the required keys that are not set (empty counts as not set)."""
    return [key for key in REQUIRED_KEYS if not _value(settings, key).strip()]


def _url_host(host: str) -> str:
    # Why: an IPv6 literal must be bracketed in a URL or its colons read as a port.
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def backend_store_uri(settings: ServerSettings) -> str:
    """SQLAlchemy URI of the backend store, user/password/db percent-encoded.

    ``quote(..., safe="")`` encodes every reserved character, so a password with
    ``@ : / # %`` round-trips through SQLAlchemy's URL parser unchanged.
    """
    missing = [k for k in ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER") if not _value(settings, k)]
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


def _secrets(settings: ServerSettings) -> list[str]:
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


def validate_server_args(args: Sequence[str], environ: Mapping[str, str] | None = None) -> None:
    """Refuse extra ``mlflow server`` arguments that conflict with the proxied setup.

    ``--default-artifact-root`` with ``--serve-artifacts`` makes new experiments store
    artifacts at that root directly, bypassing the proxy; ``mlflow server`` also reads
    it from ``MLFLOW_DEFAULT_ARTIFACT_ROOT``, so the variable is refused too.
    """
    environ = os.environ if environ is None else environ
    problems = []
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _FORBIDDEN_SERVER_ARGS:
            problems.append(f"refusing {flag}: {_FORBIDDEN_SERVER_ARGS[flag]}")
    if environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        problems.append(
            "refusing MLFLOW_DEFAULT_ARTIFACT_ROOT: `mlflow server` reads it as --default-artifact-root, "
            "which bypasses the artifact proxy enabled by --serve-artifacts; unset it"
        )
    if problems:
        raise ServerConfigError("\n".join(problems))


_AWS_KEY_ID = re.compile(r"^(AKIA|ASIA|AIDA|AROA|ANPA|AGPA|AIPA)[A-Z0-9]{16}$")


def looks_like_aws_key(access_key_id: str) -> bool:
    """True for the shape of real AWS access key ids (``AKIA...``/``ASIA...``, 20 chars)."""
    return bool(_AWS_KEY_ID.match(access_key_id))


# --------------------------------------------------------------------------- preflight

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One preflight result line."""

    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.message}"


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


def check_database(settings: ServerSettings, timeout: float = 5.0) -> Finding:
    """Connect to the backend database once; the finding names host:port/db and the reason."""
    import psycopg2

    where = f"{settings.postgres_host}:{settings.postgres_port}/{settings.postgres_db}"
    try:
        conn = connect_backend(settings, timeout)
    except psycopg2.Error as exc:
        reason = " ".join(str(exc).split())  # the driver's message, flattened to one line
        return Finding(
            "error",
            f"database unreachable: postgresql://{settings.postgres_user}@{where}: "
            f"{redact(reason, _secrets(settings))}",
        )
    conn.close()
    return Finding("ok", f"database postgresql://{settings.postgres_user}@{where} reachable")


def check_bucket(settings: ServerSettings, timeout: float = 5.0) -> Finding:
    """``HeadBucket`` on the artifact bucket, naming bucket and endpoint on failure."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    bucket = settings.s3_bucket.strip().removeprefix("s3://").strip("/")
    endpoint = settings.mlflow_s3_endpoint_url or "AWS S3 (default endpoint)"
    client = boto3.client(
        "s3",
        endpoint_url=settings.mlflow_s3_endpoint_url or None,
        aws_access_key_id=settings.aws_access_key_id or None,
        aws_secret_access_key=settings.aws_secret_access_key.get_secret_value() or None,
        region_name=settings.aws_default_region or None,
        config=Config(connect_timeout=timeout, read_timeout=timeout, retries={"max_attempts": 1}),
    )
    try:
        client.head_bucket(Bucket=bucket)
    except EndpointConnectionError as exc:
        return Finding("error", f"S3 endpoint {endpoint} unreachable (bucket '{bucket}'): {exc}")
    except NoCredentialsError:
        return Finding(
            "error",
            f"no AWS credentials for bucket '{bucket}' at {endpoint}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY (or use an instance role / AWS profile)",
        )
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return Finding("error", f"bucket '{bucket}' does not exist at {endpoint}: create it first")
        if code in ("403", "AccessDenied", "Forbidden"):
            return Finding(
                "error",
                f"access denied to bucket '{bucket}' at {endpoint}: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY",
            )
        return Finding("error", f"bucket '{bucket}' at {endpoint}: {redact(str(exc), _secrets(settings))}")
    except BotoCoreError as exc:
        return Finding("error", f"S3 endpoint {endpoint} (bucket '{bucket}'): {exc}")
    return Finding("ok", f"bucket '{bucket}' reachable at {endpoint}")


def auth_findings(settings: ServerSettings, server_args: Sequence[str] = ()) -> list[Finding]:
    """Authentication checks: never an open server on the network, never a blank admin password."""
    findings = []
    host = settings.mlflow_host
    if not auth_enabled(settings):
        if not is_loopback(host) and not settings.encore_allow_unauthenticated_network:
            findings.append(
                Finding(
                    "error",
                    f"MLFLOW_HOST={host} reaches beyond this machine but ENCORE_SERVER_AUTH=off: anyone who "
                    "can reach the port could delete runs or move 'champion'. Set ENCORE_SERVER_AUTH=on (or "
                    "auto), or ENCORE_ALLOW_UNAUTHENTICATED_NETWORK=true if another layer authenticates",
                )
            )
        return findings
    if not settings.encore_auth_admin_password.get_secret_value():
        findings.append(
            Finding("error", "ENCORE_AUTH_ADMIN_PASSWORD is not set (authentication is on; see .env_template)")
        )
    for key in ("ENCORE_AUTH_ADMIN_PASSWORD", "ENCORE_PIPELINE_PASSWORD", "ENCORE_RELEASE_PASSWORD"):
        value = _value(settings, key)
        if value and len(value) < 12:  # MLflow's password policy (mlflow.utils.validation)
            findings.append(Finding("error", f"{key} is shorter than 12 characters: MLflow refuses such passwords"))
    if not settings.encore_auth_admin_username.strip():
        findings.append(Finding("error", "ENCORE_AUTH_ADMIN_USERNAME is empty (authentication is on)"))
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", settings.encore_auth_schema):
        findings.append(
            Finding("error", f"ENCORE_AUTH_SCHEMA '{settings.encore_auth_schema}' must be a plain lower-case name")
        )
    allowed = any(a.split("=", 1)[0] == "--allowed-hosts" for a in server_args)
    if not is_loopback(host) and not allowed and not os.environ.get("MLFLOW_SERVER_ALLOWED_HOSTS"):
        findings.append(
            Finding(
                "warning",
                f"MLFLOW_HOST={host} without --allowed-hosts: pass the names clients use, e.g. "
                "mlflow_server/start.sh --allowed-hosts mlflow.example.com (DNS-rebinding protection)",
            )
        )
    return findings


def _port_in_use(host: str, port: int) -> bool:
    """True when something already accepts connections on host:port."""
    host = "127.0.0.1" if host in ("", "0.0.0.0") else host
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def preflight(
    settings: ServerSettings,
    *,
    timeout: float = 5.0,
    environ: Mapping[str, str] | None = None,
    for_start: bool = False,
    server_args: Sequence[str] = (),
) -> list[Finding]:
    """Every check start.sh needs, one finding per line; secrets never appear."""
    environ = os.environ if environ is None else environ
    findings = [Finding("error", f"{key} is not set (see .env_template)") for key in missing_keys(settings)]
    if settings.mlflow_default_artifact_root or environ.get("MLFLOW_DEFAULT_ARTIFACT_ROOT"):
        findings.append(
            Finding(
                "error",
                "MLFLOW_DEFAULT_ARTIFACT_ROOT is set: `mlflow server` reads it as --default-artifact-root, "
                "which bypasses the artifact proxy (--serve-artifacts); unset it",
            )
        )
    if settings.mlflow_s3_endpoint_url and not settings.aws_access_key_id:
        findings.append(
            Finding(
                "error",
                f"MLFLOW_S3_ENDPOINT_URL is {settings.mlflow_s3_endpoint_url} but AWS_ACCESS_KEY_ID is "
                "not set: S3-compatible stores need explicit keys",
            )
        )
    if (
        not settings.mlflow_s3_endpoint_url
        and settings.aws_access_key_id
        and not looks_like_aws_key(settings.aws_access_key_id)
    ):
        findings.append(
            Finding(
                "warning",
                f"AWS_ACCESS_KEY_ID '{settings.aws_access_key_id}' does not look like an AWS key "
                "(AKIA.../ASIA...) but MLFLOW_S3_ENDPOINT_URL is not set: for MinIO, moto or another "
                "S3-compatible store set MLFLOW_S3_ENDPOINT_URL, or artifacts go to real AWS S3",
            )
        )
    findings += auth_findings(settings, server_args)
    if all(_value(settings, k) for k in ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER")):
        findings.append(check_database(settings, timeout))
    if settings.s3_bucket:
        findings.append(check_bucket(settings, timeout))
    if for_start and _port_in_use(settings.mlflow_host, settings.mlflow_port):
        findings.append(
            Finding(
                "error",
                f"port {settings.mlflow_port} on {settings.mlflow_host} is already in use "
                "(another MLflow server? stop it with mlflow_server/stop.sh or change MLFLOW_PORT)",
            )
        )
    return findings


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class SchemaStatus:
    """Alembic revision of the database vs the installed MLflow's head revision."""

    state: Literal["empty", "current", "behind", "unknown"]
    current: str | None
    head: str


def schema_status(uri: str) -> SchemaStatus:
    """Compare the database's alembic revision with the installed MLflow's migration head.

    ``empty``: no MLflow tables (``mlflow server`` creates them itself on start);
    ``behind``: an older known revision (needs ``mlflow db upgrade``); ``unknown``: a
    revision this MLflow does not know (the database was upgraded by a newer MLflow).
    """
    from alembic.script import ScriptDirectory
    from mlflow.store.db import utils as db_utils

    head = db_utils._get_latest_schema_revision()
    engine = db_utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        if db_utils._is_empty_database(engine):
            return SchemaStatus("empty", None, head)
        current = db_utils._get_schema_version(engine)
    finally:
        engine.dispose()
    if current == head:
        return SchemaStatus("current", current, head)
    script = ScriptDirectory.from_config(db_utils._get_alembic_config(db_url=""))
    known = {rev.revision for rev in script.walk_revisions()}
    return SchemaStatus("behind" if current in known else "unknown", current, head)


def upgrade_schema_if_needed(settings: ServerSettings) -> str:
    """Run ``mlflow db upgrade`` only when the schema is behind; return what was done.

    Runs the ``mlflow db upgrade`` click command in-process so that the URI, password
    included, never appears in a process list.
    """
    uri = backend_store_uri(settings)
    status = schema_status(uri)
    if status.state == "empty":
        return f"database is empty: `mlflow server` will create the schema (revision {status.head})"
    if status.state == "current":
        return f"database schema is current (revision {status.head})"
    if status.state == "unknown":
        raise ServerConfigError(
            f"database schema revision {status.current} is unknown to this MLflow (head {status.head}): "
            "it was probably upgraded by a newer MLflow; install that version instead of downgrading"
        )
    from mlflow.db import upgrade

    print(f"database schema is behind ({status.current} -> {status.head}): running mlflow db upgrade")
    upgrade.main(args=[uri], prog_name="mlflow db upgrade", standalone_mode=False)
    after = schema_status(uri)
    if after.state != "current":
        raise ServerConfigError(f"mlflow db upgrade left the schema at {after.current}, expected {after.head}")
    return f"database schema upgraded to revision {after.head}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still "exists"; treat it as dead.
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        try:
            return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except (OSError, IndexError):
            return True
    return True


def wait_for_health(url: str, timeout: float = 60.0, pid: int | None = None) -> float:
    """Poll ``GET <url>/health`` until it answers 200; return the seconds waited.

    Raises :class:`TimeoutError` after ``timeout`` seconds, or :class:`RuntimeError` as
    soon as process ``pid`` (the server) has exited.
    """
    start = time.monotonic()
    while True:
        try:
            check_tracking_server(url, timeout=2.0, authenticate=False)
            return time.monotonic() - start
        except TrackingServerUnreachable as exc:
            last = exc.reason
        if pid is not None and not _pid_alive(pid):
            raise RuntimeError(f"the server process {pid} exited before {url}/health answered")
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"{url}/health did not answer within {timeout:.0f} s ({last})")
        time.sleep(0.5)


# --------------------------------------------------------------------------- shell glue


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
        # on: start.sh runs `mlflow server --app-name basic-auth` (see encore/mlflow_server/auth.py).
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


def run_gc(settings: ServerSettings, extra_args: Sequence[str]) -> None:
    """Run ``mlflow gc`` in-process against the configured stores.

    Runs logged through the proxy have ``mlflow-artifacts:/`` artifact URIs, which gc
    resolves (and deletes) through the running server: hence ``--tracking-uri``.
    """
    from mlflow.cli import gc

    url = tracking_url(settings)
    if auth_enabled(settings):
        # gc deletes proxied artifacts through the server: as the admin, who may delete anything.
        # In-process environment only, never argv.
        os.environ["MLFLOW_TRACKING_USERNAME"] = settings.encore_auth_admin_username
        os.environ["MLFLOW_TRACKING_PASSWORD"] = settings.encore_auth_admin_password.get_secret_value()
    try:
        check_tracking_server(url)
    except TrackingServerUnreachable as exc:
        raise ServerConfigError(
            f"MLflow server at {url} is not reachable ({exc.reason}): mlflow gc deletes proxied artifacts "
            "through the running server; start it first with mlflow_server/start.sh"
        ) from exc
    args = [
        "--backend-store-uri",
        backend_store_uri(settings),
        "--artifacts-destination",
        artifacts_destination(settings),
        "--tracking-uri",
        url,
        *extra_args,
    ]
    shown = [mask_uri(a) if a.startswith("postgresql") else a for a in args]
    print("mlflow gc " + " ".join(shlex.quote(a) for a in shown), flush=True)
    gc.main(args=args, prog_name="mlflow gc", standalone_mode=False)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point used by the mlflow_server/*.sh scripts."""
    parser = argparse.ArgumentParser(prog="python -m encore.mlflow_server.server", description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", help="settings file (default: $ENV_FILE or <repo>/.env)")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="preflight: report every problem, one line each")
    p_check.add_argument("--for-start", action="store_true", help="also check that the port is free")
    p_check.add_argument("--timeout", type=float, default=5.0)
    p_check.add_argument("server_args", nargs=argparse.REMAINDER, help="extra `mlflow server` args to vet")
    sub.add_parser("shell-env", help="print export lines for the shell scripts (contains secrets)")
    p_auth = sub.add_parser("auth-prepare", help="create the user-store schema, write the 0600 auth config")
    p_auth.add_argument("--run-dir", required=True, help="folder of server.pid; the config goes to <run-dir>/auth/")
    sub.add_parser("db-upgrade", help="run `mlflow db upgrade` only when the schema is behind")
    p_wait = sub.add_parser("wait-health", help="wait for GET /health")
    p_wait.add_argument("--timeout", type=float, default=60.0)
    p_wait.add_argument("--pid", type=int, default=None, help="give up as soon as this process exits")
    p_gc = sub.add_parser("gc", help="mlflow gc with the configured stores (extra args passed on)")
    p_gc.add_argument("gc_args", nargs=argparse.REMAINDER)
    sub.add_parser("show", help="print the settings, secrets masked")
    args = parser.parse_args(argv)

    settings = load_settings(args.env_file)
    try:
        if args.command == "check":
            extra = [a for a in args.server_args if a != "--"]
            findings = preflight(settings, timeout=args.timeout, for_start=args.for_start, server_args=extra)
            try:
                validate_server_args(extra, environ={})
            except ServerConfigError as exc:
                findings += [Finding("error", line) for line in str(exc).splitlines()]
            for finding in findings:
                print(finding)
            errors = sum(f.level == "error" for f in findings)
            if errors:
                where = resolve_env_file(args.env_file)
                print(f"preflight failed: {errors} problem(s) (settings file: {where})")
            return 1 if errors else 0
        if args.command == "shell-env":
            sys.stdout.write(shell_exports(settings))
            return 0
        if args.command == "auth-prepare":
            from encore.mlflow_server.auth import prepare_exports

            exports = prepare_exports(settings, Path(args.run_dir))
            sys.stdout.write("".join(f"export {k}={shlex.quote(v)}\n" for k, v in exports.items()))
            return 0
        if args.command == "db-upgrade":
            print(upgrade_schema_if_needed(settings))
            return 0
        if args.command == "wait-health":
            waited = wait_for_health(tracking_url(settings), timeout=args.timeout, pid=args.pid)
            print(f"healthy after {waited:.1f} s")
            return 0
        if args.command == "gc":
            run_gc(settings, [a for a in args.gc_args if a != "--"])
            return 0
        if args.command == "show":
            print(json.dumps(describe(settings), indent=2))
            return 0
    except (ServerConfigError, TrackingServerUnreachable, TimeoutError, RuntimeError) as exc:
        print(f"ERROR   {redact(str(exc), _secrets(settings))}", file=sys.stderr)
        return 1
    except Exception as exc:  # the driver/mlflow message, but never a secret
        print(f"ERROR   {type(exc).__name__}: {redact(str(exc), _secrets(settings))}", file=sys.stderr)
        return 1
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
