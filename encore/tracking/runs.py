"""Everything that talks to MLflow tracking lives here.

Embedded default: with no tracking URI configured, runs go to a local SQLite store and a
local artifact folder under ``mlruns/`` (git-ignored), so the pipeline works on a bare
machine. Pointing at a server is one setting (``MLFLOW_TRACKING_URI`` in ``.env`` or
``tracking.tracking_uri`` in the experiment file); nothing else changes.

One pipeline run is one parent MLflow run; each component is a nested run.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from encore.config.validation import ConfigError
from encore.evaluation.metric_names import metric_key
from encore.io import path_lock, process_start_time
from encore.lineage import git_commit, package_versions
from encore.tracking.client import (
    LOCAL_STORE_DIR,
    LOCAL_TRACKING_URI,
    check_tracking_server,
    client_env,
    mask_uri,
)
from encore.tracking.client import cli_client as cli_client  # lives in client.py; the CLIs' old import
from encore.tracking.credentials import readable_auth_errors

if TYPE_CHECKING:
    # Only annotations: the experiment model imports every generator kind.
    from encore.config.experiment import EncoreConfig

log = logging.getLogger(__name__)

PARENT_RUN_ENV = "ENCORE_PARENT_RUN_ID"
DATASET_DIGEST_CHARS = 32  # MLflow stores dataset digests in 36 characters


def tracking_uri(config: EncoreConfig) -> str:
    """The configured URI, or the embedded SQLite store."""
    return config.tracking.tracking_uri or LOCAL_TRACKING_URI


def experiment_name(config: EncoreConfig) -> str:
    return config.tracking.experiment_name or config.experiment.name


TRACKING_SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file", "databricks")
SQLITE_HEADER = b"SQLite format 3\x00"
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
"""The experiment's kind for MLflow: a model-training experiment, not a GenAI one. MLflow 3.17.2's
UI no longer reads it to choose its view (see :data:`UI_VIEW_QUERY`); the API and older UIs do."""
PRIMARY_METRIC_TAG = "mlflow.experiment.primaryMetric.name"
"""Experiment tag MLflow's compare view reads to choose the metric of its first chart (the
parallel-coordinates plot), instead of the first metric it finds."""
NOTE_TAG = "mlflow.note.content"
"""The description MLflow's UI shows (on an experiment's and on a run's page)."""
RUN_COLOR_TAG = "mlflow.runColor"
"""Run tag MLflow's UI (3.17) reads as the run's colour in its table and charts (its colour picker writes it)."""
HEADLINE_VIEW = "encore-headline"
MODELS_VIEW = "encore-models"
VIEW_TAG_PREFIX = "mlflow.sharedViewState."
"""An experiment tag ``mlflow.sharedViewState.<id>`` is a saved view of MLflow's runs table (its
"Views" menu; the URL parameter ``viewStateShareKey=<id>`` opens it): the columns shown and the order."""
UI_VIEW_QUERY = f"workflowType=machine_learning&viewStateShareKey={HEADLINE_VIEW}"
"""What chooses the view in MLflow 3.17.2's UI: the ``workflowType`` URL parameter, else the
browser's saved choice (``localStorage['mlflow.workflowType_v1']``), else GenAI; the experiment tag
is not read. Every link Encore prints carries this query, so it opens on the runs table, with the
headline view's columns."""
RUN_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
              "#bcbd22", "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd",
              "#e6550d", "#31a354", "#756bb1", "#636363")
"""Twenty distinct colours (matplotlib's tab10, then darker and lighter shades of other hues)."""
REUSED_SUFFIX = " (all reused)"
"""Appended to a parent run's name when every component reused its output: nothing was recomputed."""


def run_color(index: int) -> str:
    """The ``index``-th colour of :data:`RUN_COLORS` (cycling)."""
    return RUN_COLORS[index % len(RUN_COLORS)]


def headline_columns(config: EncoreConfig) -> list[str]:
    """The runs-table columns of the headline view: the primary metric (on the parent: the ranker's;
    on a component run: its own, so the ranker and every generator line up), the best generator's,
    the uplift with its interval and p-value, and which generator was best."""
    primary = metric_key(config.evaluation.primary_metric)
    metrics = [primary, f"best_generator.{primary}", "uplift_vs_best_generator", "uplift_vs_best_generator_ci_low",
               "uplift_vs_best_generator_ci_high", "uplift_vs_best_generator_p_value"]
    return [*(f"metrics.`{m}`" for m in metrics), "tags.`encore.best_generator`", "tags.`encore.component`"]


def saved_view(name: str, state: Mapping[str, Any], created_ms: int) -> str:
    """A saved view of MLflow's runs table (JSON, as MLflow 3.17's "Save view" writes it)."""
    return json.dumps({"name": name, "createdAt": created_ms, "updatedAt": created_ms, "state": json.dumps(state)})


def saved_views(config: EncoreConfig, created_ms: int) -> dict[str, str]:
    """Experiment tags of two views: *Encore headline* (:func:`headline_columns`, newest run first)
    and *Encore models* (every generator and ranker run, best primary metric first: the ranker
    beside every generator, one click from the runs table)."""
    primary = metric_key(config.evaluation.primary_metric)
    headline = {"selectedColumns": headline_columns(config), "orderByKey": "attributes.start_time",
                "orderByAsc": False}
    models = {"selectedColumns": [f"metrics.`{primary}`", "tags.`encore.component`", "tags.`encore.kind`",
                                  "tags.`encore.reused`"],
              # component runs with the primary metric: generators and the ranker (evaluate's and
              # register's are the ranker's again)
              "searchFilter": f"metrics.`{primary}` >= 0 and tags.`encore.component` != 'evaluate' "
                              "and tags.`encore.component` != 'register'",
              "orderByKey": f"metrics.`{primary}`", "orderByAsc": False}
    return {VIEW_TAG_PREFIX + HEADLINE_VIEW: saved_view("Encore headline", headline, created_ms),
            VIEW_TAG_PREFIX + MODELS_VIEW: saved_view("Encore models", models, created_ms)}


def experiment_tags(config: EncoreConfig, created_ms: int) -> dict[str, str]:
    """What the UI reads from an experiment: its kind, its primary metric, its description, and the
    headline view of its runs table."""
    tags = {EXPERIMENT_KIND_TAG: EXPERIMENT_KIND,
            PRIMARY_METRIC_TAG: metric_key(config.evaluation.primary_metric),
            **saved_views(config, created_ms)}
    if config.experiment.description:
        tags[NOTE_TAG] = config.experiment.description
    return tags


def ui_url(uri: str, experiment_id: str, run_id: str | None = None, view: str = HEADLINE_VIEW) -> str:
    """The MLflow UI address of an experiment's runs table in saved view ``view`` (or of a run), in
    the model-training view. A server's UI is the tracking URI itself; a local store's is
    ``mlflow ui``'s default address."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else "http://127.0.0.1:5000"
    base = mask_uri(base)
    page = f"runs/{run_id}" if run_id else "runs"
    return f"{base}/#/experiments/{experiment_id}/{page}?{UI_VIEW_QUERY.replace(HEADLINE_VIEW, view)}"


class TrackingStoreError(ConfigError):
    """The tracking store cannot be used; the message names the URI or file and what to do."""


def check_tracking_uri(uri: str) -> None:
    """Reject what MLflow would misread: a bare path or an unknown scheme becomes MLflow's
    deprecated file store with a misleading "maintenance mode" message; a damaged local
    database fails deep inside SQLAlchemy."""
    scheme = uri.split(":", 1)[0].split("+", 1)[0].lower() if "://" in uri or uri.startswith("file:") else ""
    if scheme not in TRACKING_SCHEMES:
        raise TrackingStoreError(
            f"tracking URI {mask_uri(uri)!r} (MLFLOW_TRACKING_URI or tracking.tracking_uri) is not one MLflow can use: "
            "give http(s)://host:port for a tracking server, sqlite:///path/to/mlflow.db for a local store, "
            "or leave it unset for the embedded store under mlruns/"
        )
    if scheme == "sqlite":
        path = Path(uri.removeprefix("sqlite:///"))
        if path.is_file() and path.stat().st_size > 0:
            with path.open("rb") as fh:
                header = fh.read(len(SQLITE_HEADER))
            if header != SQLITE_HEADER:
                raise TrackingStoreError(
                    f"{path}: the local MLflow store is not an SQLite database (damaged or overwritten); "
                    f"move it aside (mv {path} {path}.bad) and run again to start a new store"
                )


def setup_tracking(config: EncoreConfig) -> str:
    """Point MLflow at the configured store and return the experiment id.

    For a server, the client is set to fail within seconds when the server is down
    (MLflow's default retries last minutes) and the server is checked before any work.
    """
    import mlflow

    uri = tracking_uri(config)
    check_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        # Credentials travel only in the environment MLflow's HTTP client reads, never in params or tags.
        for key, value in client_env().items():
            os.environ.setdefault(key, value)
        check_tracking_server(uri, timeout=5.0)  # a wrong password fails here, in one line
    mlflow.set_tracking_uri(uri)
    # Two runs starting at once on a new local store would both create its tables and one fails.
    lock = path_lock(Path(uri.removeprefix("sqlite:///"))) if uri.startswith("sqlite:///") else nullcontext()
    with lock:
        return _experiment_id(config, uri)


def _experiment_id(config: EncoreConfig, uri: str) -> str:
    import mlflow

    name = experiment_name(config)
    try:
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            # Local store: keep artifacts beside the database, not in the working directory.
            location = (LOCAL_STORE_DIR / "artifacts").as_uri() if uri.startswith("sqlite:") else None
            experiment_id = mlflow.create_experiment(name, artifact_location=location)
            experiment = mlflow.get_experiment(experiment_id)
        else:
            experiment_id = experiment.experiment_id
        # Set on a new experiment, and fixed on one made by an older Encore (or switched to GenAI in the UI).
        for key, value in experiment_tags(config, experiment.creation_time or 0).items():
            if experiment.tags.get(key) != value:
                mlflow.MlflowClient().set_experiment_tag(experiment_id, key, value)
        mlflow.set_experiment(experiment_id=experiment_id)
    except TrackingStoreError:
        raise
    except Exception as exc:  # any store failure here is one line naming the store
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingStoreError(f"tracking store {mask_uri(uri)} cannot be used: {first}") from exc
    return experiment_id


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


def log_metrics(metrics: Mapping[str, float], prefix: str = "") -> None:
    import mlflow

    mlflow.log_metrics({prefix + metric_key(k): float(v) for k, v in metrics.items()})


def log_batch(client: Any, run_id: str, *, metrics: Mapping[str, float] | None = None,
              tags: Mapping[str, str] | None = None) -> None:
    """Metrics and tags on another run (a parent) in few requests, not one per value."""
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


def log_data_inputs(run_ids: Sequence[str | None], files: Mapping[str, Path], digests: Mapping[str, str]) -> None:
    """Log the data files a component read as MLflow dataset inputs of each run in ``run_ids``
    (the UI's Dataset column and lineage), digested by the same SHA-256 that keys reuse."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for role, path in sorted(files.items()):
        digest = digests.get(role, "missing")
        with warnings.catch_warnings():  # "can be interpreted in multiple ways": both ways are the local file
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(Path(path).resolve().as_uri())
        dataset = MetaDataset(source, name=f"{role}:{Path(path).name}", digest=digest[:DATASET_DIGEST_CHARS])
        inputs.append(DatasetInput(dataset._to_mlflow_entity(), tags=[
            InputTag("mlflow.data.context", role), InputTag("encore.sha256", digest)]))
    client = mlflow.MlflowClient()
    for run_id in (r for r in run_ids if r):
        client.log_inputs(run_id, datasets=inputs)


def process_tags() -> dict[str, str]:
    """Which process owns a run: lets a later run tell a killed run from a live one."""
    return {"encore.host": socket.gethostname(), "encore.pid": str(os.getpid()),
            "encore.pid_started": f"{process_start_time(os.getpid()) or 0.0:.0f}"}


def mark_stale_runs(experiment_id: str) -> int:
    """Mark this machine's runs still RUNNING whose process is gone as KILLED; return how many.

    A run killed with ``kill -9`` (or by a crash) never ends itself; its process tags say it is
    dead when no process with that id runs, or the one that does started at another time.
    Runs of other machines are left alone: their processes cannot be seen from here.
    """
    import mlflow
    from mlflow.entities import RunStatus

    client = mlflow.MlflowClient()
    host = socket.gethostname().replace("'", "")
    stale = []
    for run in client.search_runs([experiment_id], filter_string=f"attributes.status = 'RUNNING' and "
                                  f"tags.`encore.host` = '{host}'", max_results=1000):
        pid, started = run.data.tags.get("encore.pid", ""), run.data.tags.get("encore.pid_started", "")
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        now_started = process_start_time(int(pid))
        if now_started is None or (now_started and started and abs(now_started - float(started)) > 2):
            stale.append(run.info.run_id)
    for run_id in stale:
        client.set_terminated(run_id, status=RunStatus.to_string(RunStatus.KILLED))
    if stale:
        log.info("marked %d run(s) of interrupted pipelines on this machine as KILLED", len(stale))
        mark_versions_of_killed_runs(client, stale)
    return len(stale)


KILLED_RUN_TAG = "encore.run_killed"
"""Tag of a model version whose registering run was killed (value: that run's id)."""


def mark_versions_of_killed_runs(client: Any, run_ids: Sequence[str]) -> int:
    """Tag the model versions registered by killed runs (``encore.run_killed``) and take the
    ``challenger`` alias off them: a ``kill -9`` right after ``register`` created a version leaves
    it READY, but the run never finished (no metrics, tags or output), so it must not be promoted.
    A store that refuses (no permission) is warned about; the new run goes on. Returns how many."""
    from encore.tracking.model_registry import CHALLENGER

    marked = 0
    for run_id in run_ids:
        try:
            versions = client.search_model_versions(f"run_id = '{run_id}'")
            for found in versions:
                version = client.get_model_version(found.name, found.version)  # a search leaves aliases out
                client.set_model_version_tag(version.name, version.version, KILLED_RUN_TAG, run_id)
                challenger = CHALLENGER in (version.aliases or [])
                if challenger:
                    client.delete_registered_model_alias(version.name, CHALLENGER)
                log.warning("model %s version %s was registered by run %s, which was killed before it finished: "
                            "tagged %s%s", version.name, version.version, run_id, KILLED_RUN_TAG,
                            f", alias '{CHALLENGER}' removed" if challenger else "")
                marked += 1
        except Exception as exc:  # the registry may refuse this user; the runs are marked already
            log.warning("could not check model versions of killed run %s: %s", run_id,
                        (str(exc).strip().splitlines() or [type(exc).__name__])[0])
    return marked


def parent_run_name(config: EncoreConfig, note: str | None = None, started: float | None = None) -> str:
    """``<experiment> <yyyy-mm-dd hh:mm> <config hash> [note]`` (local time): parent runs told apart in
    the runs table, even two of the same configuration."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(started))
    return " ".join(p for p in (config.experiment.name, when, config.fingerprint()[:8], note) if p)


def parent_color(client: Any, experiment_id: str) -> str:
    """A new parent run's colour: the next of :data:`RUN_COLORS` after the experiment's last parent
    run, so consecutive runs never share one (MLflow's own colour is a hash of the run id)."""
    last = client.search_runs([experiment_id], filter_string="tags.`encore.config_hash` != ''",
                              order_by=["attributes.start_time DESC"], max_results=50)
    parents = [r for r in last if "mlflow.parentRunId" not in r.data.tags]
    previous = parents[0].data.tags.get(RUN_COLOR_TAG) if parents else None
    return run_color(RUN_COLORS.index(previous) + 1 if previous in RUN_COLORS else len(parents))


def mark_all_reused(client: Any, run_id: str) -> None:
    """Say on parent run ``run_id`` (name and ``encore.all_reused`` tag) that nothing was recomputed."""
    name = client.get_run(run_id).info.run_name or ""
    tags = {"encore.all_reused": "true"}
    if not name.endswith(REUSED_SUFFIX):
        tags["mlflow.runName"] = name + REUSED_SUFFIX
    log_batch(client, run_id, tags=tags)


@contextmanager
def pipeline_run(config: EncoreConfig, *, note: str | None = None) -> Iterator[Any]:
    """The parent run of one pipeline execution (also exported for nested component runs)."""
    import mlflow

    experiment_id = setup_tracking(config)
    with readable_auth_errors():
        mark_stale_runs(experiment_id)
        color = parent_color(mlflow.MlflowClient(), experiment_id)
    tags = run_tags(config) | process_tags() | {RUN_COLOR_TAG: color}
    if note:
        tags |= {"encore.note": note, NOTE_TAG: note}
    with readable_auth_errors(), active_run(mlflow.start_run(run_name=parent_run_name(config, note), tags=tags)) as run:
        log_params(config.model_dump(mode="json", exclude={"tracking", "output_dir", "data_dir"}))
        previous = os.environ.get(PARENT_RUN_ENV)
        os.environ[PARENT_RUN_ENV] = run.info.run_id
        try:
            yield run
            log.info("MLflow: %s (run %r)", ui_url(tracking_uri(config), experiment_id), run.info.run_name)
        finally:
            if previous is None:
                os.environ.pop(PARENT_RUN_ENV, None)
            else:
                os.environ[PARENT_RUN_ENV] = previous


@contextmanager
def active_run(run: Any) -> Iterator[Any]:
    """End ``run`` FINISHED, or FAILED when the block raises. When ending it fails too (the
    store may be what failed), the block's own error is kept: the run stays RUNNING and the
    next run marks it KILLED (:func:`mark_stale_runs`)."""
    import mlflow

    try:
        yield run
    except BaseException:
        try:
            mlflow.end_run("FAILED")
        except Exception as exc:  # the original error says more
            log.warning("could not mark run %s FAILED: %s", run.info.run_id, str(exc).splitlines()[0])
        raise
    mlflow.end_run()


@contextmanager
def component_run(config: EncoreConfig, component: str, *, color: str | None = None) -> Iterator[Any]:
    """A component's run: nested under the active (or ``ENCORE_PARENT_RUN_ID``) parent run, in
    ``color`` (one per component, the same in every pipeline run: the compare view's legend)."""
    import mlflow

    parent = mlflow.active_run()
    if parent is None:
        mark_stale_runs(setup_tracking(config))
    parent_id = parent.info.run_id if parent is not None else os.environ.get(PARENT_RUN_ENV)
    tags = run_tags(config) | process_tags() | {"encore.component": component}
    if color:
        tags[RUN_COLOR_TAG] = color
    if parent_id:
        tags["mlflow.parentRunId"] = parent_id
    # A refused permission (HTTP 403) becomes one line naming the user and the request.
    with readable_auth_errors(), active_run(mlflow.start_run(run_name=component, nested=parent is not None,
                                                             tags=tags)) as run:
        yield run


_SERVICE_SIGNS = (
    ("PostgreSQL, the tracking server's database",
     ("psycopg2", "postgresql", "connection to server", "server closed the connection", "operationalerror")),
    ("S3, the tracking server's artifact store", ("botocore", "endpointconnectionerror", "could not connect to the "
                                                   "endpoint url", "nosuchbucket")),
)


def service_failure(exc: BaseException, uri: str) -> str | None:
    """One line naming the service behind a tracking failure (its database, its artifact store,
    or the server itself), or None when ``exc`` is not a tracking failure."""
    from mlflow.exceptions import MlflowException
    from requests.exceptions import RequestException

    chain: list[BaseException] = []
    while exc is not None and exc not in chain:
        chain.append(exc)
        exc = exc.__cause__ or exc.__context__
    failures = [e for e in chain if isinstance(e, MlflowException | RequestException | ConnectionError)]
    if not failures:
        return None
    text = " ".join(str(e) for e in chain).lower()
    service = next((name for name, signs in _SERVICE_SIGNS if any(sign in text for sign in signs)), None)
    if service is None and uri.startswith(("http://", "https://")):
        service = _probe_server(uri)  # a 5xx after retries says nothing: ask the server once
    service = service or "the MLflow tracking server"
    detail = " ".join(str(failures[0]).split())
    detail = detail if len(detail) <= 240 else detail[:237] + "..."
    return (f"{service} failed while logging to {mask_uri(uri)}: {detail}; once it is back, run again: "
            "complete outputs are reused and the interrupted runs are marked KILLED")


def _probe_server(uri: str) -> str | None:
    """Which of the server's services fails: one unretried request that needs its database and
    one that needs its artifact store (a 5xx body does not say why). The service whose request
    fails (an error or no answer in 5 s) while the other's works is named; None otherwise."""
    import requests

    auth = None
    if os.environ.get("MLFLOW_TRACKING_USERNAME"):
        auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))
    failing = []
    for service, path, params in ((_SERVICE_SIGNS[0][0], "api/2.0/mlflow/experiments/search", {"max_results": 1}),
                                  (_SERVICE_SIGNS[1][0], "api/2.0/mlflow-artifacts/artifacts", {"path": ""})):
        try:
            ok = requests.get(f"{uri.rstrip('/')}/{path}", params=params, timeout=5, auth=auth).status_code < 500
        except requests.RequestException:
            ok = False
        if not ok:
            failing.append(service)
    return failing[0] if len(failing) == 1 else None
