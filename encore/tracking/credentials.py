"""Who the tracking client acts as on an authenticating server, and its refusals in one line.

The client side of the team server's authentication (the server side is
:mod:`encore.mlflow_server`): :func:`release_credentials` runs a block as the release user
(promote moves ``champion``, which only that user may), and :func:`readable_auth_errors`
turns MLflow's 401/403 exceptions into one line naming the user and the refused action.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from encore.config.envfile import env_file_values
from encore.tracking.client import TrackingServerAuthError

_ENDPOINT = re.compile(r"endpoint (\S+) failed with error code (\d+)")


def _env_value(key: str, environ: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> str:
    """``key`` from the environment, else from the .env file, else ``""``."""
    environ = os.environ if environ is None else environ
    if environ.get(key):
        return environ[key]
    return env_file_values(env_file, environ).get(key) or ""


def client_uses_auth(environ: Mapping[str, str] | None = None) -> bool:
    """True when the client talks to the server as a named user."""
    environ = os.environ if environ is None else environ
    return bool(environ.get("MLFLOW_TRACKING_USERNAME"))


def release_user(
    model_name: str, environ: Mapping[str, str] | None = None, *, required: bool = True
) -> tuple[str, str] | None:
    """``(username, password)`` of the release user (``ENCORE_RELEASE_USERNAME`` / ``_PASSWORD``).

    None when there is nothing to switch to: no authentication, or ``required=False`` and no
    release password (the CLI run by the release user in person). With ``required`` it raises,
    naming who may promote, when the client authenticates as someone else and no release
    password is configured: the pipeline user cannot move ``champion``.
    """
    environ = os.environ if environ is None else environ
    password = _env_value("ENCORE_RELEASE_PASSWORD", environ)
    username = _env_value("ENCORE_RELEASE_USERNAME", environ) or "encore-release"
    if password:
        return username, password
    current = environ.get("MLFLOW_TRACKING_USERNAME")
    if required and client_uses_auth(environ) and current != username:
        raise TrackingServerAuthError(
            f"promote moves alias 'champion' of registered model '{model_name}', which only the release "
            f"user (MANAGE on the model, e.g. '{username}') may do; user '{current}' may not. Set "
            "ENCORE_RELEASE_USERNAME and ENCORE_RELEASE_PASSWORD in .env, or run promote as the release user"
        )
    return None


@contextmanager
def as_user(username: str, password: str, environ: dict[str, str] | None = None) -> Iterator[None]:
    """MLflow's HTTP client (which reads these variables per request) acts as ``username`` inside."""
    environ = os.environ if environ is None else environ
    saved = {k: environ.get(k) for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")}
    environ["MLFLOW_TRACKING_USERNAME"], environ["MLFLOW_TRACKING_PASSWORD"] = username, password
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value


@contextmanager
def release_credentials(
    model_name: str, environ: dict[str, str] | None = None, *, required: bool = True
) -> Iterator[str | None]:
    """Run the block as the release user (see :func:`release_user`); yields its name or None.

    A 401/403 inside becomes one line naming the user and the refused request.
    """
    environ = os.environ if environ is None else environ
    user = release_user(model_name, environ, required=required)
    if user is None:
        with readable_auth_errors(environ=environ):
            yield None
        return
    with as_user(*user, environ=environ), readable_auth_errors(environ=environ):
        yield user[0]


def auth_error_message(exc: BaseException, action: str = "", environ: Mapping[str, str] | None = None) -> str | None:
    """One readable line for an MLflow 401/403, naming the user and the refused action; else None."""
    environ = os.environ if environ is None else environ
    text = str(exc)
    match = _ENDPOINT.search(text)
    code = getattr(exc, "error_code", "")
    if match:
        status, endpoint = match.group(2), match.group(1)
    elif code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        status, endpoint = ("403" if code == "PERMISSION_DENIED" else "401"), ""
    else:
        return None
    if status not in ("401", "403"):
        return None
    user = environ.get("MLFLOW_TRACKING_USERNAME") or "(anonymous)"
    what = action or (f"request {endpoint}" if endpoint else "the request")
    if status == "401":
        return (f"MLflow server refused user '{user}' for {what}: not authenticated (HTTP 401); check "
                "MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD")
    body = text.split("Response body: ", 1)[-1].strip(" '\"") if "Response body:" in text else "Permission denied"
    return f"MLflow server refused user '{user}' for {what} (HTTP 403): {body}"


@contextmanager
def readable_auth_errors(action: str = "", environ: Mapping[str, str] | None = None) -> Iterator[None]:
    """Turn MLflow's 401/403 exceptions into :class:`TrackingServerAuthError` (one line, no traceback)."""
    from mlflow.exceptions import MlflowException

    try:
        yield
    except MlflowException as exc:
        message = auth_error_message(exc, action, environ)
        if message is None:
            raise
        raise TrackingServerAuthError(message) from None
