"""What the scripts do around a running MLflow server: wait for its health, collect garbage.

``wait-health`` (start.sh, after starting the server in the background) and ``gc``
(clean.sh: ``mlflow gc`` against the configured stores, through the running server).
"""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path

from encore.mlflow_server.settings import (
    ServerConfigError,
    ServerSettings,
    artifacts_destination,
    auth_enabled,
    backend_store_uri,
    tracking_url,
)
from encore.tracking.client import TrackingServerUnreachable, check_tracking_server, mask_uri


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
