"""The authorization function the MLflow server process runs on every request.

``authorization_function = encore.mlflow_server.auth_plugin:authenticate_request`` in the
auth config (:mod:`encore.mlflow_server.auth_config`) makes MLflow's basic-auth app call
:func:`authenticate_request` inside each server worker. It imports only the standard library
at module level (Flask and MLflow's auth app when called, both already loaded there), so the
server process loads no Encore code beyond this module.

Why a custom function: in MLflow 3.17 both ``CreateModelVersion`` and
``SetRegisteredModelAlias`` need only ``can_update`` (EDIT) on the registered model
(``mlflow/server/auth/__init__.py``: ``_authorize_create_version``,
``validate_can_set_model_or_prompt_version_alias``). A pipeline user able to register
versions could therefore also move ``champion``. The function delegates authentication to
MLflow's own ``authenticate_request_basic_auth`` and adds what MLflow's permission levels
cannot express (see :func:`_encore_rule`).
"""

from __future__ import annotations

import posixpath
from typing import Any
from urllib.parse import unquote

#: Aliases only users with MANAGE on the registered model (the release user) may set or delete.
PROTECTED_ALIASES: tuple[str, ...] = ("champion",)
AUTH_FUNCTION = "encore.mlflow_server.auth_plugin:authenticate_request"
_ALIAS_ROUTE = "/mlflow/registered-models/alias"
# The artifact proxy's writing routes, by the part of the path that follows ``/mlflow-artifacts/``;
# the path after it (or ``?path=`` for DELETE) is relative to the artifact root.
_ARTIFACT_WRITE_FAMILIES: tuple[str, ...] = ("artifacts/", "mpu/create/", "mpu/complete/", "mpu/abort/")
_ARTIFACT_PREFIXES: tuple[str, ...] = ("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")
_PROXY_SCHEME = "mlflow-artifacts:"


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
      ``setup``): its creator would get MANAGE and so the right to move ``champion``;
    * a registered model version's files are immutable: writing or deleting under a version's
      storage location through the artifact proxy is refused to everyone but the admin. Otherwise
      whoever may log runs could change what ``champion`` serves without moving the alias.
    """
    if request.method not in ("POST", "DELETE", "PUT"):
        return None
    artifact_path = _artifact_write_path(request)
    if artifact_path is not None:
        if mlflow_auth.store.get_user(username).is_admin:
            return None
        return _registered_artifact_refusal(artifact_path, username, mlflow_auth)
    if request.method == "PUT":
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
                "(add it to ENCORE_REGISTERED_MODELS and run `python -m encore.mlflow_server auth setup`)")
    alias = params.get("alias")
    if not isinstance(alias, str) or alias.lower() not in PROTECTED_ALIASES:
        return None
    if mlflow_auth.authorize(username, ("registered_model", name), [requirement("registered_model", name, "manage")]):
        return None
    return (f"user '{username}' may not move alias '{alias}' of registered model '{name}'; only users with MANAGE "
            "on the model (the release user) may")


def _artifact_write_path(request: Any) -> str | None:
    """The artifact-root-relative path a write to the artifact proxy touches, or None for any other request."""
    path = request.path
    prefix = next((p for p in _ARTIFACT_PREFIXES if path.startswith(p)), None)
    if prefix is None:
        return None
    rest = path[len(prefix):]
    if rest.rstrip("/") == "artifacts":
        rest = "artifacts/"  # DELETE …/artifacts?path=<path>
    family = next((f for f in _ARTIFACT_WRITE_FAMILIES if rest.startswith(f)), None)
    if family is None:
        return None
    if family == "artifacts/" and request.method == "POST":
        return None  # no such write route; MLflow answers it
    relative = rest[len(family):] or request.args.get("path", "")
    return _canonical(relative)


def _canonical(path: str) -> str:
    """``a/./b//c/`` and ``a/x/../b/c`` → ``a/b/c``: the form compared with storage locations."""
    return posixpath.normpath("/" + unquote(path)).lstrip("/")


# A version's storage location never changes once it is registered (MLflow keeps a deleted
# version's number, so (name, version, source) names one location for good): looked up once per
# server process instead of once per version on every artifact write.
_DOWNLOAD_URIS: dict[tuple[str, str, str], str] = {}


def _download_uri(store: Any, version: Any) -> str:
    """Where ``version``'s files are: the logged model's artifact location for a ``models:/`` source."""
    key = (version.name, str(version.version), version.source or "")
    if key not in _DOWNLOAD_URIS:
        _DOWNLOAD_URIS[key] = store.get_model_version_download_uri(version.name, version.version) or ""
    return _DOWNLOAD_URIS[key]


def _registered_artifact_refusal(artifact_path: str, username: str, mlflow_auth: Any) -> str | None:
    """Why a write at ``artifact_path`` is refused: it lies under a registered version's files (or is their parent)."""
    store = mlflow_auth._get_model_registry_store()
    token = None
    while True:
        page = store.search_model_versions(max_results=1000, page_token=token)
        for version in page:
            location = _download_uri(store, version)
            if not location.startswith(_PROXY_SCHEME):
                continue
            protected = _canonical(location[len(_PROXY_SCHEME):])
            if protected and (artifact_path == protected or artifact_path.startswith(protected + "/")
                              or protected.startswith(artifact_path + "/") or artifact_path == ""):
                return (f"user '{username}' may not change the files of registered model '{version.name}' "
                        f"version {version.version} ({artifact_path}): a registered version is immutable")
        token = page.token
        if not token:
            return None
