"""Settings of the recommendation service, from the environment and ``.env``.

Every key is ``ENCORE_SERVING_<FIELD>`` (see ``.env_template``, "serving" block); command-line
flags of ``python -m encore.serving`` override them. An unknown ``ENCORE_SERVING_*`` key is an
error naming the key, so a typo (``ENCORE_SERVING_MODEL_ALIASS``) cannot silently leave a
default in place. The tracking URI is not duplicated here: like every Encore client the service
reads ``MLFLOW_TRACKING_URI`` (environment or ``.env``) and otherwise the embedded local store.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from encore.config.envfile import REPO_ROOT, env_file_values, resolve_env_file
from encore.config.validation import ConfigError, error_message

ENV_PREFIX = "ENCORE_SERVING_"


class ServingSettings(BaseSettings):
    """What the service loads, where it keeps events, and how it blends lists."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="forbid",
                                      env_ignore_empty=True, protected_namespaces=())

    model_name: str = "encore-ranker"
    """Registered model to serve; the only name ``/admin/reload`` will load."""
    model_alias: str = "champion"
    tracking_uri: str | None = None
    """Default: ``MLFLOW_TRACKING_URI`` (environment or ``.env``), else the local store."""
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    event_store: str = "sqlite:///outputs/serving/events.db"
    """``sqlite:///<path>`` (relative paths from the repository root) or ``postgresql://...``."""
    history_size: Annotated[int, Field(ge=1, le=10_000)] = 50
    """Listens kept per user (older ones are deleted on write): bounds the store and fold-in."""
    recent_listens: Annotated[int, Field(ge=1, le=100)] = 3
    """How many of the latest listens seed the "because you just played" candidates."""
    online_share: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    """Share of the k slots given to online candidates in the blend (see blend.interleave)."""
    foldin_min_listens: Annotated[int, Field(ge=1, le=1000)] = 3
    """Listens an unknown user needs before getting fold-in instead of "just played" + popular."""
    exclude_heard: bool = True
    """Never serve a known user what they heard in training (bundles with ``heard.parquet``);
    false lets online candidates and the popular fill bring those back (re-listening)."""
    max_k: Annotated[int, Field(ge=1, le=1000)] = 100
    max_batch: Annotated[int, Field(ge=1, le=100_000)] = 500
    """Most events one ``POST /events`` may carry."""
    max_body_bytes: Annotated[int, Field(ge=1024)] = 1_000_000
    max_future_seconds: Annotated[float, Field(ge=0.0, le=86_400.0)] = 300.0
    """Tolerance for clients' clocks: an event dated further ahead of the server's clock is refused
    (a future-dated listen would stay "newest" and push every real one out of the history)."""
    admin_token: SecretStr | None = None
    """Bearer token of ``POST /admin/reload``; unset = the endpoint refuses every call."""
    api_token: SecretStr | None = None
    """Bearer token the data endpoints (``/events``, ``/recommendations``, ``/similar``) require
    when set; needed when ``host`` is not a loopback address (see ``allow_no_token``)."""
    allow_no_token: bool = False
    """Serve the data endpoints without a token on a non-loopback ``host`` (a warning is logged)."""
    reload_interval_seconds: Annotated[float, Field(ge=0.0)] = 0.0
    """Poll the alias this often and switch when it moved; 0 = only on ``/admin/reload``."""

    @field_validator("event_store")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> ServingSettings:
        if self.api_token is None and not self.allow_no_token and not self.loopback():
            raise ValueError(f"{ENV_PREFIX}API_TOKEN: required when {ENV_PREFIX}HOST is {self.host} (not loopback): "
                             f"anyone who reaches it could read and write listening histories; set a token, or "
                             f"{ENV_PREFIX}ALLOW_NO_TOKEN=true when something in front authenticates")
        return self

    def loopback(self) -> bool:
        """Whether ``host`` is reachable from this machine only."""
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name: treat as reachable from outside
            return False

    def secrets(self) -> list[str]:
        """Every credential the service knows of, for masking: the tracking URI's (this setting or
        ``MLFLOW_TRACKING_URI``) and the event store's (userinfo or ``?password=``), the tracking
        password / token of the environment, and the service's own tokens."""
        from encore.config.machine import MachineSettings
        from encore.tracking.client import uri_secrets

        found = [*uri_secrets(self.tracking_uri or MachineSettings().mlflow_tracking_uri),
                 *uri_secrets(self.event_store),
                 *(os.environ.get(key, "") for key in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"))]
        for token in (self.admin_token, getattr(self, "api_token", None)):
            if token is not None:
                found.append(token.get_secret_value())
        return [secret for secret in found if secret]

    def sqlite_path(self) -> Path | None:
        """The SQLite file of ``event_store`` (relative to the repository root), else None."""
        if not self.event_store.startswith("sqlite:///"):
            return None
        path = Path(self.event_store.removeprefix("sqlite:///"))
        return path if path.is_absolute() else REPO_ROOT / path


def load_serving_settings(env_file: str | Path | None = None, environ: Mapping[str, str] | None = None,
                          **overrides: Any) -> ServingSettings:
    """Settings from ``.env`` (``$ENV_FILE`` or the repository's, as for the tracking server),
    the environment (wins over the file), then ``overrides`` (command-line flags; None values
    ignored). Errors name the key."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    sources = [env_file_values(env_file, environ), environ]
    for source in sources:
        for key, value in source.items():
            if key.startswith(ENV_PREFIX) and value not in (None, ""):
                values[key.removeprefix(ENV_PREFIX).lower()] = value
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        # Values go in as init arguments (already merged by precedence); extra="forbid" then
        # rejects unknown ENCORE_SERVING_* keys.
        return ServingSettings(**values)
    except ValidationError as exc:
        problems = "; ".join(f"{ENV_PREFIX}{'.'.join(map(str, e['loc'])).upper()}: {error_message(e)}" if e["loc"]
                             else error_message(e) for e in exc.errors())
        path = resolve_env_file(env_file, environ)
        raise ConfigError(f"serving settings ({path if path.is_file() else 'environment'}): {problems}") from None
