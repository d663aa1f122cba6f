"""Users and grants on the team server, as the admin: Encore's roles.

``python -m encore.mlflow_server auth setup`` (idempotent) creates or refreshes:

* the pipeline user: EDIT on every experiment (create runs, log, tag; deletes only in the
  experiments it created, which MLflow gives their creator MANAGE on) and EDIT on the
  registered models (register versions, set ``challenger``; not ``champion``);
* the release user: READ on every experiment, MANAGE on the registered models: alone may
  move ``champion``;

and ``auth add-viewer NAME`` a viewer (READ on every experiment and registered model),
``auth delete-user NAME`` removes one. The rules the server enforces on top of these
grants are :mod:`encore.mlflow_server.auth_plugin`'s.
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

from encore.mlflow_server.settings import ServerConfigError, ServerSettings
from encore.tracking.credentials import as_user, readable_auth_errors


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
    with as_user(admin, admin_password), readable_auth_errors("setting up users and grants (as the admin)"):
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
    with as_user(admin, admin_password), readable_auth_errors(f"adding viewer '{username}' (as the admin)"):
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
    with as_user(admin, admin_password), readable_auth_errors(f"deleting user '{username}' (as the admin)"):
        AuthServiceClient(uri).delete_user(username)
    return f"user {username}: deleted"


def read_password(prompt: str, stdin: bool) -> str:
    """A password from stdin (one line) or an interactive prompt: never from argv (ps)."""
    password = sys.stdin.readline().rstrip("\n") if stdin else getpass.getpass(prompt)
    if not password:
        raise ServerConfigError("empty password")
    return password
