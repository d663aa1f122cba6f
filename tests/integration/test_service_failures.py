"""The tracking server's services failing while a pipeline runs against it (docs/pipeline.md, "Reliability").

A private PostgreSQL cluster, moto S3 and MLflow server (not the session's shared ones: these
tests stop them). For each service: a pipeline runs against the server, the service is stopped
once a component has finished, and the pipeline must stop within 30 s with one line naming that
service; after the service is back, a re-run completes, reusing complete outputs, and logs every
component exactly once, and no run of the failed pipeline is left RUNNING.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from tests.conftest import TINY_SYNTHETIC
from tests.integration.itest_support import (
    REPO_ROOT,
    MlflowServer,
    MotoS3,
    PostgresCluster,
    clean_env,
    http_ok,
    mlflow_server_started,
    moto_s3,
    postgres_cluster,
)

pytestmark = pytest.mark.integration

COMPONENTS = ["prepare", "popular", "als", "itemknn", "ease"]


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[PostgresCluster, MotoS3, MlflowServer]]:
    with postgres_cluster() as cluster, moto_s3(tmp_path_factory.mktemp("moto-failures")) as moto, \
            mlflow_server_started(cluster.pg, moto.store, tmp_path_factory.mktemp("server-failures")) as (server, _):
        yield cluster, moto, server


def pipeline(server: MlflowServer, work: Path, experiment: str) -> subprocess.Popen[str]:
    path = work / "experiment.yaml"
    path.write_text(yaml.safe_dump(TINY_SYNTHETIC | {"experiment": {"name": experiment, "seed": 3}}))
    env = clean_env(MLFLOW_TRACKING_URI=server.url, ENCORE_OUTPUT_DIR=str(work / "outputs"),
                    PYTHONPATH=str(REPO_ROOT))
    return subprocess.Popen([sys.executable, "-m", "encore.pipeline.runner", "-e", str(path),
                             "-c", ",".join(COMPONENTS)], cwd=REPO_ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def component_runs(client: MlflowClient, experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id], max_results=1000)


def finished(client: MlflowClient, experiment: str, component: str) -> bool:
    return any(r.data.tags.get("encore.component") == component and r.info.status == "FINISHED"
               for r in component_runs(client, experiment))


def fail_and_recover(services, tmp_path: Path, experiment: str, stop: Callable[[], None],
                     start: Callable[[], None], service_word: str) -> None:
    server = services[2]
    client = MlflowClient(tracking_uri=server.url)
    proc = pipeline(server, tmp_path, experiment)
    try:
        wait_until(lambda: finished(client, experiment, "popular") or proc.poll() is not None, 180,
                   "popular to finish")
        assert proc.poll() is None, proc.communicate()
        stop()
        stopped_at = time.monotonic()
        _, err = proc.communicate(timeout=120)
        took = time.monotonic() - stopped_at
    finally:
        if proc.poll() is None:
            proc.kill()
    start()
    wait_until(lambda: http_ok(f"{server.url}/health"), 60, "the server")

    last = err.strip().splitlines()[-1]
    assert proc.returncode == 2, err
    assert took <= 30, f"stopped {took:.1f} s after the service: {last}"
    assert "Traceback" not in err, err
    assert last.startswith("error: component '") and service_word in last, last
    assert "once it is back, run again" in last

    rerun = pipeline(server, tmp_path, experiment)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err

    runs = component_runs(client, experiment)
    assert not [r for r in runs if r.info.status == "RUNNING"], "a run of the failed pipeline is left RUNNING"
    parents = sorted((r for r in runs if "mlflow.parentRunId" not in r.data.tags), key=lambda r: r.info.start_time)
    assert len(parents) == 2 and parents[-1].info.status == "FINISHED"
    latest = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[-1].info.run_id]
    assert sorted(r.data.tags["encore.component"] for r in latest) == sorted(COMPONENTS)  # each once
    assert all(r.info.status == "FINISHED" for r in latest)
    by_name = {r.data.tags["encore.component"]: r for r in latest}
    assert by_name["prepare"].data.tags["encore.reused"] == "true"  # complete before the failure
    for name in COMPONENTS[1:]:
        run = by_name[name]
        assert "ndcg_at_10" in run.data.metrics, name
        history = client.get_metric_history(run.info.run_id, "ndcg_at_10")
        assert len(history) == 1, name  # logged once, not again on top of a half-logged run
        assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {"metrics.json", "metrics_vs_k.png"}
    for run in runs:  # every output marked complete has a finished run that logged it
        if run.info.status != "FINISHED" and run.data.tags.get("encore.component"):
            folder = Path(run.data.tags.get("encore.output_dir", "/nonexistent"))
            if (folder / "_SUCCESS.json").is_file():
                assert any(r.data.tags.get("encore.output_dir") == str(folder) and r.info.status == "FINISHED"
                           for r in latest), folder


def test_postgres_stopping_mid_run_stops_the_pipeline_naming_it(services, tmp_path: Path) -> None:
    cluster = services[0]
    fail_and_recover(services, tmp_path, "pg-failure", cluster.stop, cluster.start, "PostgreSQL")


def test_s3_stopping_mid_run_stops_the_pipeline_naming_it(services, tmp_path: Path) -> None:
    moto = services[1]
    fail_and_recover(services, tmp_path, "s3-failure", moto.stop, moto.start, "S3")
