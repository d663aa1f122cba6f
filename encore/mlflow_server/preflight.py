"""Checks before the MLflow server starts: every problem found, one line each.

``python -m encore.mlflow_server check`` (start.sh runs it with ``--for-start``) reports
missing settings, extra ``mlflow server`` options that would bypass the artifact proxy, an
open server on the network, an unreachable database or bucket and a busy port, without
ever printing a secret.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from encore.mlflow_server.settings import (
    ServerConfigError,
    ServerSettings,
    auth_enabled,
    connect_backend,
    is_loopback,
    missing_keys,
    secret_values,
    setting_value,
)
from encore.tracking.client import redact

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


Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True)
class Finding:
    """One preflight result line."""

    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level.upper():7} {self.message}"


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
            f"{redact(reason, secret_values(settings))}",
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
        return Finding("error", f"bucket '{bucket}' at {endpoint}: {redact(str(exc), secret_values(settings))}")
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
        value = setting_value(settings, key)
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
    if all(setting_value(settings, k) for k in ("POSTGRES_HOST", "POSTGRES_DB", "POSTGRES_USER")):
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
