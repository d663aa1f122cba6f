"""Authentication on the team tracking server: MLflow's basic-auth app, Encore's roles, clients.

Server side (used by start.sh through ``python -m encore.mlflow_server.server auth-prepare``):
the user store lives in its own schema (``ENCORE_AUTH_SCHEMA``) of the backend PostgreSQL
database; the auth config file holding the admin password and the database URI is written
0600 in a 0700 folder and handed to ``mlflow server --app-name basic-auth`` through
``MLFLOW_AUTH_CONFIG_PATH`` (never on a command line); ``default_permission`` is
``NO_PERMISSIONS``, so an anonymous or unknown caller gets nothing.

Why a custom ``authorization_function`` (:func:`authenticate_request`): in MLflow 3.17 both
``CreateModelVersion`` and ``SetRegisteredModelAlias`` need only ``can_update`` (EDIT) on the
registered model (``mlflow/server/auth/__init__.py``: ``_authorize_create_version``,
``validate_can_set_model_or_prompt_version_alias``). A pipeline user able to register
versions could therefore also move ``champion``. The function delegates authentication to
MLflow's own ``authenticate_request_basic_auth`` and adds one rule MLflow's permission levels
cannot express: setting or deleting a protected alias (``champion``) needs MANAGE on the model.

Roles (``python -m encore.mlflow_server.auth setup``, as the admin):

* pipeline user: EDIT on every experiment (create runs, log, tag; deletes only in the experiments
  it created, which MLflow gives their creator MANAGE on) and EDIT on the registered models
  (register versions, set ``challenger``; not ``champion``);
* release user: READ on every experiment, MANAGE on the registered models: alone may move
  ``champion``;
* viewers (``add-viewer NAME``): READ on every experiment and registered model.

Client side: :func:`release_credentials` (promote runs as the release user) and
:func:`readable_auth_errors` (a 401/403 becomes one line naming the user and the action).
"""

from __future__ import annotations

import argparse
import configparser
import getpass
import io
import os
import re
import secrets
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from encore.config.envfile import env_file_values
from encore.mlflow_server.server import (
    ServerConfigError,
    ServerSettings,
    backend_store_uri,
    connect_backend,
    load_settings,
    tracking_url,
)
from encore.tracking.client import TrackingServerAuthError, redact

#: Aliases only users with MANAGE on the registered model (the release user) may set or delete.
PROTECTED_ALIASES: tuple[str, ...] = ("champion",)
AUTH_FUNCTION = "encore.mlflow_server.auth:authenticate_request"
_ALIAS_ROUTE = "/mlflow/registered-models/alias"
_ENDPOINT = re.compile(r"endpoint (\S+) failed with error code (\d+)")

# ------------------------------------------------------------------- server: config and store


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


# ------------------------------------------------------------------- server: request hook


def authenticate_request() -> Any:
    """MLflow's basic-auth authentication plus the protected-alias rule (see the module doc).

    Runs inside the server (``authorization_function`` in the auth config). Returns
    MLflow's ``Authorization`` or a 401/403 ``Response``.
    """
    from flask import Response, request
    from mlflow.server import auth as mlflow_auth
    from mlflow.server.auth.requirements import Requirement

    authorization = mlflow_auth.authenticate_request_basic_auth()
    if isinstance(authorization, Response):
        return authorization
    refusal = _encore_rule(request, authorization.username, mlflow_auth, Requirement)
    if refusal is None:
        return authorization
    return Response(f"Permission denied: {refusal}", status=403, mimetype="text/plain")


def _encore_rule(request: Any, username: str, mlflow_auth: Any, requirement: Any) -> str | None:
    """Why Encore refuses this request on top of MLflow's checks, or None.

    * a protected alias (``champion``) needs MANAGE on the registered model;
    * a new experiment needs EDIT on every experiment (the pipeline role): without this rule any
      authenticated user, viewers included, could create experiments and log into them;
    * a new registered model needs EDIT on every registered model (in practice the admin, through
      ``setup``): its creator would get MANAGE and so the right to move ``champion``.
    """
    if request.method not in ("POST", "DELETE"):
        return None
    path = request.path.rstrip("/")
    if not path.endswith((_ALIAS_ROUTE, "/mlflow/experiments/create", "/mlflow/registered-models/create")):
        return None
    if mlflow_auth.store.get_user(username).is_admin:
        return None
    if path.endswith("/mlflow/experiments/create"):
        if mlflow_auth.authorize(username, ("experiment", "*"), [requirement("experiment", "*", "update")]):
            return None
        return f"user '{username}' may not create experiments (needs EDIT on every experiment: the pipeline role)"
    body = request.get_json(silent=True)
    params = {**request.args.to_dict(), **(body if isinstance(body, dict) else {})}
    name = params.get("name")
    if not isinstance(name, str) or not name:
        return None  # MLflow answers the malformed request itself
    if path.endswith("/mlflow/registered-models/create"):
        try:
            mlflow_auth._get_model_registry_store().get_registered_model(name)
            return None  # exists: MLflow answers RESOURCE_ALREADY_EXISTS, as the register step expects
        except Exception:
            pass
        if mlflow_auth.authorize(username, ("registered_model", "*"), [requirement("registered_model", "*", "update")]):
            return None
        return (f"user '{username}' may not create registered model '{name}': the admin creates protected models "
                "(add it to ENCORE_REGISTERED_MODELS and run `python -m encore.mlflow_server.auth setup`)")
    alias = params.get("alias")
    if not isinstance(alias, str) or alias.lower() not in PROTECTED_ALIASES:
        return None
    if mlflow_auth.authorize(username, ("registered_model", name), [requirement("registered_model", name, "manage")]):
        return None
    return (f"user '{username}' may not move alias '{alias}' of registered model '{name}'; only users with MANAGE "
            "on the model (the release user) may")


# ------------------------------------------------------------------- client side


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
def _as_user(username: str, password: str, environ: dict[str, str] | None = None) -> Iterator[None]:
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
    with _as_user(*user, environ=environ), readable_auth_errors(environ=environ):
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


# ------------------------------------------------------------------- users and grants (admin)




def _upsert_user(client: Any, username: str, password: str) -> str:
    """Create ``username`` or, when it exists, set its password; return what was done."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_user(username)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        client.create_user(username, password)
        return "created"
    client.update_user_password(username, password)
    return "password updated"


def _model_names(settings: ServerSettings) -> list[str]:
    return [n.strip() for n in settings.encore_registered_models.split(",") if n.strip()]


def _required(settings: ServerSettings, key: str) -> str:
    value = getattr(settings, key.lower())
    value = value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)
    if not value:
        raise ServerConfigError(f"{key} is not set (see .env_template)")
    return value


def setup_roles(settings: ServerSettings, uri: str) -> list[str]:
    """Create/refresh the pipeline and release users and their grants; return one line per step.

    Idempotent. The registered models are created here, by the admin, because MLflow gives the
    creator of a model MANAGE: had the pipeline created it, it could move ``champion``.
    """
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    admin = _required(settings, "ENCORE_AUTH_ADMIN_USERNAME")
    admin_password = _required(settings, "ENCORE_AUTH_ADMIN_PASSWORD")
    pipeline, pipeline_pw = settings.encore_pipeline_username, _required(settings, "ENCORE_PIPELINE_PASSWORD")
    release, release_pw = settings.encore_release_username, _required(settings, "ENCORE_RELEASE_PASSWORD")
    models = _model_names(settings)
    if not models:
        raise ServerConfigError("ENCORE_REGISTERED_MODELS is empty: name the registered model(s) to protect")
    lines = []
    with _as_user(admin, admin_password), readable_auth_errors("setting up users and grants (as the admin)"):
        client = AuthServiceClient(uri)
        lines.append(f"user {pipeline}: {_upsert_user(client, pipeline, pipeline_pw)}")
        lines.append(f"user {release}: {_upsert_user(client, release, release_pw)}")
        tracking = MlflowClient(uri)
        for name in models:
            try:
                tracking.create_registered_model(name)
                lines.append(f"registered model {name}: created")
            except MlflowException as exc:
                if exc.error_code not in ("RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"):
                    raise
            client.grant_user_permission(pipeline, "registered_model", name, "EDIT")
            client.grant_user_permission(release, "registered_model", name, "MANAGE")
            lines.append(f"registered model {name}: {pipeline} EDIT (versions, challenger), "
                         f"{release} MANAGE (champion)")
        client.grant_user_permission(pipeline, "experiment", "*", "EDIT")
        client.grant_user_permission(release, "experiment", "*", "READ")
        lines.append(f"every experiment: {pipeline} EDIT (runs; deletes only in its own), {release} READ")
    return lines


def add_viewer(settings: ServerSettings, uri: str, username: str, password: str) -> str:
    """A teammate who may read every experiment, run and registered model, and change nothing."""
    from mlflow.server.auth.client import AuthServiceClient

    admin = _required(settings, "ENCORE_AUTH_ADMIN_USERNAME")
    admin_password = _required(settings, "ENCORE_AUTH_ADMIN_PASSWORD")
    with _as_user(admin, admin_password), readable_auth_errors(f"adding viewer '{username}' (as the admin)"):
        client = AuthServiceClient(uri)
        done = _upsert_user(client, username, password)
        client.grant_user_permission(username, "experiment", "*", "READ")
        client.grant_user_permission(username, "registered_model", "*", "READ")
    return f"user {username}: {done}; READ on every experiment and registered model"


def delete_user(settings: ServerSettings, uri: str, username: str) -> str:
    """Remove a user and its grants."""
    from mlflow.server.auth.client import AuthServiceClient

    admin = _required(settings, "ENCORE_AUTH_ADMIN_USERNAME")
    admin_password = _required(settings, "ENCORE_AUTH_ADMIN_PASSWORD")
    with _as_user(admin, admin_password), readable_auth_errors(f"deleting user '{username}' (as the admin)"):
        AuthServiceClient(uri).delete_user(username)
    return f"user {username}: deleted"


def _read_password(prompt: str, stdin: bool) -> str:
    """A password from stdin (one line) or an interactive prompt: never from argv (ps)."""
    password = sys.stdin.readline().rstrip("\n") if stdin else getpass.getpass(prompt)
    if not password:
        raise ServerConfigError("empty password")
    return password


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``setup`` (pipeline + release users and grants), ``add-viewer NAME``, ``delete-user NAME``."""
    parser = argparse.ArgumentParser(prog="python -m encore.mlflow_server.auth", description=__doc__.split("\n")[0])
    parser.add_argument("--env-file", help="settings file (default: $ENV_FILE or <repo>/.env)")
    parser.add_argument("--tracking-uri", help="server URL (default: the one configured by MLFLOW_HOST/PORT)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("setup", help="create/refresh the pipeline and release users and their grants")
    p_view = sub.add_parser("add-viewer", help="add a read-only user (password from a prompt or stdin)")
    p_view.add_argument("username")
    p_view.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    p_del = sub.add_parser("delete-user", help="remove a user")
    p_del.add_argument("username")
    args = parser.parse_args(argv)
    settings = load_settings(args.env_file)
    uri = args.tracking_uri or tracking_url(settings)
    secrets_ = [settings.encore_auth_admin_password.get_secret_value(),
                settings.encore_pipeline_password.get_secret_value(),
                settings.encore_release_password.get_secret_value()]
    try:
        if args.command == "setup":
            lines = setup_roles(settings, uri)
        elif args.command == "add-viewer":
            password = _read_password(f"password for {args.username}: ", args.password_stdin)
            secrets_.append(password)
            lines = [add_viewer(settings, uri, args.username, password)]
        else:
            lines = [delete_user(settings, uri, args.username)]
    except (ServerConfigError, TrackingServerAuthError) as exc:
        print(f"ERROR   {redact(str(exc), secrets_)}", file=sys.stderr)
        return 1
    except Exception as exc:  # mlflow's message, never a secret
        print(f"ERROR   {type(exc).__name__}: {redact(str(exc), secrets_)}", file=sys.stderr)
        return 1
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
