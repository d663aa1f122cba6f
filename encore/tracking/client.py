"""The tracking client's side of the MLflow server: fail fast, with a message that says what to do.

A pipeline pointed at a dead server, or at one that wants credentials it lacks, should stop
in seconds with one line, not retry for minutes: :func:`check_tracking_server` probes
``/health`` and the credentials once, :func:`client_env` gives MLflow's HTTP client short
retries and the credentials / CA bundle from the environment or ``.env``. Secrets never
reach a message (:func:`mask_uri`, :func:`redact`). The server's own operations are
:mod:`encore.mlflow_server`; :func:`cli_client` is the client the CLIs and the serving
process use.
"""

from __future__ import annotations

import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from pydantic import SecretStr

from encore.config.envfile import REPO_ROOT, env_file_values
from encore.config.machine import MachineSettings
from encore.config.validation import ConfigError

MASK = "****"

LOCAL_STORE_DIR = REPO_ROOT / "mlruns"
"""The embedded store a pipeline logs to when no tracking URI is configured."""
LOCAL_TRACKING_URI = f"sqlite:///{LOCAL_STORE_DIR / 'mlflow.db'}"

#: Client-side HTTP settings (names verified in mlflow 3.17 ``mlflow/environment_variables.py``).
#: MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) keep a pipeline that points
#: at a dead server waiting for minutes; these fail within a few seconds. With urllib3's
#: backoff (0 s, then factor * 2**(n-1)) 2 retries cost about 2 s plus at most 2 x jitter.
CLIENT_FAIL_FAST_DEFAULTS: dict[str, str] = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
}


class TrackingServerAuthError(ConfigError):
    """The tracking server refused the client's credentials (HTTP 401) or the action (403).

    A :class:`~encore.config.validation.ConfigError` (the fix is a setting or a grant), so every
    CLI reports it as one line, without a traceback.
    """


class TrackingServerUnreachable(ConnectionError):
    """The tracking server at ``MLFLOW_TRACKING_URI`` does not answer ``GET /health``."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason or message


def mask(secret: str | SecretStr | None) -> str:
    """``****`` for any non-empty secret, ``""`` for none: never a prefix or a length."""
    if isinstance(secret, SecretStr):
        secret = secret.get_secret_value()
    return MASK if secret else ""


#: Query parameters of a URI that carry a credential (libpq's ``?password=``, tokens, keys).
CREDENTIAL_QUERY_KEYS = ("password", "passwd", "pwd", "pass", "secret", "token", "access_token", "api_key",
                         "apikey", "sslpassword")
_QUERY_CREDENTIAL = re.compile(r"(?i)([?&;](?:" + "|".join(CREDENTIAL_QUERY_KEYS) + r")=)([^&;#\s'\"]*)")
_USERINFO_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/:@\s'\"]*):([^@/\s'\"]*)@")


def mask_uri(uri: str) -> str:
    """The URI with the password (if any) and credential query parameters (``?password=``,
    ``token=`` ..., :data:`CREDENTIAL_QUERY_KEYS`) replaced by ``****``."""
    uri = _QUERY_CREDENTIAL.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), uri)
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{MASK}@{hostinfo}"))


def uri_secrets(uri: str | None) -> list[str]:
    """The credentials a URI carries: its password and its credential query parameters' values."""
    if not uri:
        return []
    found = [m.group(2) for m in _QUERY_CREDENTIAL.finditer(uri) if m.group(2)]
    password = urlsplit(uri).password
    return [*found, *([password, unquote(password)] if password else [])]


def mask_text(text: str, secrets: Sequence[str] = ()) -> str:
    """``text`` (an error, a log line) with every ``scheme://user:password@`` password, every
    credential query parameter and every one of ``secrets`` replaced by ``****``."""
    text = _QUERY_CREDENTIAL.sub(lambda m: m.group(1) + (MASK if m.group(2) else ""), text)
    text = _USERINFO_PASSWORD.sub(lambda m: f"{m.group(1)}:{MASK}@", text)
    return redact(text, sorted(set(secrets), key=len, reverse=True))


def redact(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret (raw or percent-encoded) with ``****``."""
    for secret in secrets:
        if not secret:
            continue
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, MASK)
    return text




def client_fail_fast_env(
    env_file: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """MLflow client HTTP retry/timeout variables that make a dead server fail in seconds.

    Precedence per variable: the environment, then the .env file, then
    :data:`CLIENT_FAIL_FAST_DEFAULTS` — so ``os.environ.update(client_fail_fast_env())``
    never overrides a value the user set.
    """
    environ = os.environ if environ is None else environ
    file_values = env_file_values(env_file, environ)
    result = {}
    for key, default in CLIENT_FAIL_FAST_DEFAULTS.items():
        result[key] = environ.get(key) or file_values.get(key) or default
    return result


#: Client settings read from the environment or .env and handed to MLflow's HTTP client:
#: basic-auth credentials and the CA bundle of a TLS reverse proxy.
CLIENT_AUTH_KEYS: tuple[str, ...] = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
)


def client_env(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`client_fail_fast_env` plus the credentials and CA bundle set in the environment or .env.

    Refuses ``MLFLOW_TRACKING_INSECURE_TLS=true``: it turns certificate checks off, so a
    password sent over TLS could go to anyone in the middle.
    """
    environ = os.environ if environ is None else environ
    file_values = env_file_values(env_file, environ)
    insecure = environ.get("MLFLOW_TRACKING_INSECURE_TLS") or file_values.get("MLFLOW_TRACKING_INSECURE_TLS") or ""
    if insecure.strip().lower() in ("1", "true", "yes", "on"):
        raise ConfigError(
            "MLFLOW_TRACKING_INSECURE_TLS is on: certificate checks would be skipped and credentials could be "
            "intercepted; unset it and point MLFLOW_TRACKING_SERVER_CERT_PATH at your CA bundle instead"
        )
    result = client_fail_fast_env(env_file, environ)
    for key in CLIENT_AUTH_KEYS:
        value = environ.get(key) or file_values.get(key)
        if value:
            result[key] = value
    return result


def split_credentials(uri: str, environ: Mapping[str, str] | None = None) -> tuple[str, str | None, str | None]:
    """``(uri without userinfo, username, password)``.

    Credentials in the URI (``http://user:pw@host``, percent-decoded) win; otherwise
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``, the variables MLflow's own
    client sends as HTTP basic auth. urllib cannot open a URL with userinfo at all ("Name or
    service not known"), hence the split.
    """
    from urllib.parse import unquote

    environ = os.environ if environ is None else environ
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri, environ.get("MLFLOW_TRACKING_USERNAME") or None, environ.get("MLFLOW_TRACKING_PASSWORD") or None
    hostinfo = parts.netloc.rpartition("@")[2]
    bare = urlunsplit(parts._replace(netloc=hostinfo))
    return bare, unquote(parts.username or ""), unquote(parts.password or "") or None


def _get(url: str, timeout: float, username: str | None = None, password: str | None = None) -> int:
    """HTTP status of ``GET url`` (basic auth when a username is given); OSError when unreachable."""
    import base64

    request = urllib.request.Request(url)
    if username is not None:
        token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def check_tracking_server(
    uri: str, timeout: float = 5.0, *, authenticate: bool = True, environ: Mapping[str, str] | None = None
) -> None:
    """Raise unless ``GET <uri>/health`` answers 200 and the server accepts the client's credentials.

    One attempt each, no retries: the point is to fail fast with a message that says what to
    do. :class:`TrackingServerUnreachable` when the server does not answer;
    :class:`TrackingServerAuthError` when it requires authentication and the credentials (from
    the URI or ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``) are missing or
    wrong. Neither message ever contains the password. ``authenticate=False`` checks
    ``/health`` only (start.sh waiting for its own server).
    """
    bare, username, password = split_credentials(uri, environ)
    shown = mask_uri(uri)
    base = bare.rstrip("/")
    hint = "start it with mlflow_server/start.sh or unset MLFLOW_TRACKING_URI to use the local store"
    try:
        status = _get(base + "/health", timeout)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = redact(str(getattr(exc, "reason", exc)), [password or ""])
        raise TrackingServerUnreachable(f"MLflow server at {shown} is not reachable: {reason}; {hint}") from exc
    if status != 200:
        raise TrackingServerUnreachable(
            f"MLflow server at {shown} is not reachable: GET /health returned HTTP {status}; {hint}",
            f"GET /health returned HTTP {status}",
        )
    if not authenticate:
        return
    # Who am I: 401 on a basic-auth server without valid credentials, 404 on a server without auth.
    try:
        status = _get(base + "/api/2.0/mlflow/users/current", timeout, username, password)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise TrackingServerUnreachable(f"MLflow server at {shown} stopped answering: {exc}; {hint}") from exc
    if status == 401:
        if username is None:
            raise TrackingServerAuthError(
                f"MLflow server at {shown} requires authentication: set MLFLOW_TRACKING_USERNAME and "
                "MLFLOW_TRACKING_PASSWORD (in .env or the environment); ask the server's admin for a user"
            )
        raise TrackingServerAuthError(
            f"MLflow server at {shown} refused user '{username}': wrong username or password (HTTP 401); "
            "check MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD"
        )




def cli_client(uri: str | None = None) -> Any:
    """An MlflowClient for the CLIs: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI`` (environment
    or ``.env``), else the embedded local store the pipeline writes to by default."""
    import mlflow
    from mlflow import MlflowClient

    uri = uri or MachineSettings().mlflow_tracking_uri or LOCAL_TRACKING_URI
    if uri.startswith(("http://", "https://")):
        # Fail-fast HTTP settings and MLFLOW_TRACKING_USERNAME/PASSWORD from .env (environment wins).
        for key, value in client_env().items():
            os.environ.setdefault(key, value)
    mlflow.set_tracking_uri(uri)  # also for models:/ URIs resolved by the registry helpers
    return MlflowClient(tracking_uri=uri)
