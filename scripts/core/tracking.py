"""Everything that talks to MLflow tracking lives here.

Embedded default: with no tracking URI configured, runs go to a local SQLite store and a
local artifact folder under ``mlruns/`` (git-ignored), so the pipeline works on a bare
machine. Pointing at a server is one setting (``MLFLOW_TRACKING_URI`` in ``.env`` or
``tracking.tracking_uri`` in the experiment file); nothing else changes.

One pipeline run is one parent MLflow run; each component is a nested run.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from scripts.core.config import REPO_ROOT, EncoreConfig

log = logging.getLogger(__name__)

LOCAL_STORE_DIR = REPO_ROOT / "mlruns"
KEY_PACKAGES = ("implicit", "catboost", "scikit-learn", "mlflow", "pandas", "numpy", "scipy", "pydantic", "pyspark")
PARENT_RUN_ENV = "ENCORE_PARENT_RUN_ID"


LOCAL_TRACKING_URI = f"sqlite:///{LOCAL_STORE_DIR / 'mlflow.db'}"


def tracking_uri(config: EncoreConfig) -> str:
    """The configured URI, or the embedded SQLite store."""
    return config.tracking.tracking_uri or LOCAL_TRACKING_URI


def cli_client(uri: str | None = None) -> Any:
    """An MlflowClient for the CLIs: ``--tracking-uri``, else ``MLFLOW_TRACKING_URI`` (environment
    or ``.env``), else the embedded local store the pipeline writes to by default."""
    import mlflow
    from mlflow import MlflowClient

    from scripts.core.config import MachineSettings

    uri = uri or MachineSettings().mlflow_tracking_uri or LOCAL_TRACKING_URI
    if uri.startswith(("http://", "https://")):
        from scripts.core.server import client_env

        # Fail-fast HTTP settings and MLFLOW_TRACKING_USERNAME/PASSWORD from .env (environment wins).
        for key, value in client_env().items():
            os.environ.setdefault(key, value)
    mlflow.set_tracking_uri(uri)  # also for models:/ URIs resolved by the registry helpers
    return MlflowClient(tracking_uri=uri)


def experiment_name(config: EncoreConfig) -> str:
    return config.tracking.experiment_name or config.experiment.name


def setup_tracking(config: EncoreConfig) -> str:
    """Point MLflow at the configured store and return the experiment id.

    For a server, the client is set to fail within seconds when the server is down
    (MLflow's default retries last minutes) and the server is checked before any work.
    """
    import mlflow

    uri = tracking_uri(config)
    if uri.startswith(("http://", "https://")):
        from scripts.core.server import check_tracking_server, client_env

        # Credentials travel only in the environment MLflow's HTTP client reads, never in params or tags.
        for key, value in client_env().items():
            os.environ.setdefault(key, value)
        check_tracking_server(uri, timeout=5.0)  # a wrong password fails here, in one line
    elif uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = experiment_name(config)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        # Local store: keep artifacts beside the database, not in the working directory.
        location = (LOCAL_STORE_DIR / "artifacts").as_uri() if uri.startswith("sqlite:") else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


def git_commit() -> str:
    """Current commit, with ``-dirty`` when the work tree has uncommitted changes."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def package_versions() -> dict[str, str]:
    versions = {}
    for name in KEY_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_tags(config: EncoreConfig, data_sha256: Mapping[str, str] | None = None) -> dict[str, str]:
    """Reproducibility tags every run carries."""
    tags = {
        "encore.git_commit": git_commit(),
        "encore.config_hash": config.fingerprint(),
        "encore.dataset": config.dataset.kind,
        "encore.dataset_hash": config.fingerprint("dataset"),
        "encore.split_hash": config.fingerprint("dataset", "split", "experiment.seed"),
        "encore.seed": str(config.experiment.seed),
    }
    tags |= {f"encore.version.{name}": v for name, v in package_versions().items()}
    tags |= {f"encore.data_sha256.{role}": digest for role, digest in (data_sha256 or {}).items()}
    return tags


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mapping -> ``{"a.b.c": value}``, the form MLflow params take."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat |= flatten(value, f"{name}.")
        else:
            flat[name] = value
    return flat


def metric_key(name: str) -> str:
    """``ndcg@10`` -> ``ndcg_at_10``: MLflow metric names may not contain '@'."""
    return name.replace("@", "_at_")


def log_metrics(metrics: Mapping[str, float], prefix: str = "") -> None:
    import mlflow

    mlflow.log_metrics({prefix + metric_key(k): float(v) for k, v in metrics.items()})


def log_batch(client: Any, run_id: str, *, metrics: Mapping[str, float] | None = None,
              tags: Mapping[str, str] | None = None) -> None:
    """Metrics and tags on another run (a parent) in few requests, not one per value."""
    import time

    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metric_list = [Metric(metric_key(k), float(v), now, 0) for k, v in (metrics or {}).items()]
    tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
    for start in range(0, len(metric_list), 1000):  # MLflow's per-request limits
        client.log_batch(run_id, metrics=metric_list[start:start + 1000])
    for start in range(0, len(tag_list), 100):
        client.log_batch(run_id, tags=tag_list[start:start + 100])


def log_params(params: Mapping[str, Any]) -> None:
    import mlflow

    mlflow.log_params({k: "None" if v is None else v for k, v in flatten(params).items()})


@contextmanager
def pipeline_run(config: EncoreConfig, *, run_name: str | None = None) -> Iterator[Any]:
    """The parent run of one pipeline execution (also exported for nested component runs)."""
    import mlflow

    from scripts.core.server_auth import readable_auth_errors

    setup_tracking(config)
    with readable_auth_errors(), mlflow.start_run(run_name=run_name or config.experiment.name) as run:
        mlflow.set_tags(run_tags(config))
        log_params(config.model_dump(mode="json", exclude={"tracking", "output_dir", "data_dir"}))
        previous = os.environ.get(PARENT_RUN_ENV)
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        try:
            yield run
        finally:
            if previous is None:
                os.environ.pop(PARENT_RUN_ENV, None)
            else:
                os.environ[PARENT_RUN_ENV] = previous


@contextmanager
def component_run(config: EncoreConfig, component: str) -> Iterator[Any]:
    """A component's run: nested under the active (or ``ENCORE_PARENT_RUN_ID``) parent run."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        setup_tracking(config)
    parent_id = parent.info.run_id if parent is not None else os.environ.get(PARENT_RUN_ENV)
    tags = run_tags(config) | {"encore.component": component}
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    from scripts.core.server_auth import readable_auth_errors

    # A refused permission (HTTP 403) becomes one line naming the user and the request.
    with readable_auth_errors(), mlflow.start_run(run_name=component, nested=parent is not None, tags=tags) as run:
        yield run
