"""End-to-end tests of the production MLflow setup against REAL services.

PostgreSQL (initdb/pg_ctl), S3 (moto_server) and the MLflow server started by
mlflow_server/start.sh; see conftest.py. The stop.sh test runs last (file order).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from sqlalchemy import create_engine, text

from encore.components import compare
from encore.config.envfile import REPO_ROOT
from encore.mlflow_server import cli, schema
from encore.mlflow_server import settings as server_settings
from encore.serving.pyfunc import log_serving_model
from encore.tracking import client as tracking_client
from encore.tracking import model_registry as registry
from encore.tracking.model_registry import PromotionDecision
from tests.integration.itest_support import (
    JOB_RUNNER_MARKS,
    MlflowServer,
    clean_env,
    free_port,
    http_ok,
    live_group_members,
    processes,
    run_python,
    server_leftovers,
    tracking_uri,
    write_env_file,
)

pytestmark = pytest.mark.integration

MODEL_NAME = "encore-toy"
EXPERIMENT = "encore-integration"


def _server_settings(srv: MlflowServer) -> server_settings.ServerSettings:
    return server_settings.load_settings(srv.env_file)


def _pgid(srv: MlflowServer) -> int:
    return int(srv.pid_file.read_text().strip())


# --------------------------------------------------------------------------- server


def test_server_is_healthy_without_job_runner_or_leaked_password(mlflow_server: MlflowServer) -> None:
    with urllib.request.urlopen(f"{mlflow_server.url}/health", timeout=5) as response:
        assert response.status == 200
        assert response.read().decode().strip() == "OK"
    tracking_client.check_tracking_server(mlflow_server.url)
    group = live_group_members(_pgid(mlflow_server))
    assert any("mlflow server" in args for args in group)
    assert any("uvicorn" in args for args in group)
    # MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false: no huey job runner / consumer processes of its own.
    own = server_leftovers(_pgid(mlflow_server), mlflow_server.port)
    assert not [args for args in own if any(mark in args for mark in JOB_RUNNER_MARKS)], own
    # The password is neither on a command line (it travels in MLFLOW_BACKEND_STORE_URI)
    # nor in the log.
    password = mlflow_server.postgres.password
    encoded = quote(password, safe="")
    assert not [a for _, _, _, a in processes() if password in a or encoded in a]
    log = mlflow_server.log_file.read_text()
    assert password not in log and encoded not in log


def test_percent_encoded_uri_connects_and_schema_is_current(mlflow_server: MlflowServer) -> None:
    settings = _server_settings(mlflow_server)
    uri = server_settings.backend_store_uri(settings)
    assert "%40" in uri and "%23" in uri and "%252F" in uri  # @, # and the literal "%2F"
    engine = create_engine(uri)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT current_user")).scalar() == mlflow_server.postgres.user
    engine.dispose()
    status = schema.schema_status(uri)
    assert status.state == "current" and status.current == status.head
    assert "current" in schema.upgrade_schema_if_needed(settings)


def test_db_upgrade_runs_only_when_schema_is_behind(mlflow_server: MlflowServer) -> None:
    from alembic import command
    from mlflow.store.db import utils as db_utils
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase
    from psycopg2 import sql

    pg = mlflow_server.postgres
    with contextlib.closing(pg.admin_connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE mlflow_old OWNER {}").format(sql.Identifier(pg.user)))
    settings = _server_settings(mlflow_server).model_copy(update={"postgres_db": "mlflow_old"})
    uri = server_settings.backend_store_uri(settings)
    assert schema.schema_status(uri).state == "empty"
    # Bring the schema to the revision just before head, as an older MLflow would have left it.
    engine = create_engine(uri)
    InitialBase.metadata.create_all(engine)
    config = db_utils._get_alembic_config(uri)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, f"{db_utils._get_latest_schema_revision()}-1")
    engine.dispose()
    status = schema.schema_status(uri)
    assert status.state == "behind" and status.current != status.head
    assert "upgraded" in schema.upgrade_schema_if_needed(settings)
    assert schema.schema_status(uri).state == "current"


def test_preflight_names_each_problem_without_secrets(
    mlflow_server: MlflowServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, s3 = mlflow_server.postgres, mlflow_server.s3
    dead = free_port()
    env_file = write_env_file(
        tmp_path / "bad.env",
        pg,
        s3,
        free_port(),
        POSTGRES_PASSWORD="'wrong #password'",
        S3_BUCKET="no-such-bucket",
    )
    assert cli.main(["--env-file", str(env_file), "check"]) == 1
    out = capsys.readouterr().out
    assert f"database unreachable: postgresql://{pg.user}@127.0.0.1:{pg.port}/{pg.db}" in out
    assert "password authentication failed" in out
    assert f"bucket 'no-such-bucket' does not exist at {s3.endpoint}" in out
    assert "wrong #password" not in out and s3.secret not in out

    env_file = write_env_file(
        tmp_path / "dead.env",
        pg,
        s3,
        free_port(),
        POSTGRES_PORT=str(dead),
        MLFLOW_S3_ENDPOINT_URL=f"http://127.0.0.1:{dead}",
    )
    assert cli.main(["--env-file", str(env_file), "check"]) == 1
    out = capsys.readouterr().out
    assert f"database unreachable: postgresql://{pg.user}@127.0.0.1:{dead}/{pg.db}" in out
    assert f"S3 endpoint http://127.0.0.1:{dead} unreachable (bucket '{s3.bucket}')" in out
    assert pg.password not in out

    good = cli.main(["--env-file", str(mlflow_server.env_file), "check"])
    assert good == 0, capsys.readouterr().out


def test_start_refuses_default_artifact_root(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    env = mlflow_server.script_env(RUN_DIR=str(tmp_path / "run"))
    result = subprocess.run(
        [str(REPO_ROOT / "mlflow_server" / "start.sh"), "--default-artifact-root", "s3://bucket/direct"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "refusing --default-artifact-root" in result.stdout
    assert not (tmp_path / "run" / "server.pid").exists()


# --------------------------------------------------------------------------- logging


def test_client_without_aws_credentials_logs_to_postgres_and_s3(mlflow_server: MlflowServer) -> None:
    code = f"""
import os, json, mlflow
assert not any(k.startswith("AWS_") for k in os.environ), "client must not have AWS credentials"
mlflow.set_tracking_uri({mlflow_server.url!r})
exp = mlflow.set_experiment("encore-client-check")
with mlflow.start_run() as run:
    mlflow.log_params({{"factors": 64, "regularization": 0.01}})
    mlflow.log_metric("ndcg_at_10", 0.42)
    mlflow.log_text("hello from a credential-less client", "reports/hello.txt")
print(json.dumps({{"run_id": run.info.run_id, "experiment_id": exp.experiment_id}}))
"""
    # No AWS_* variables, and a HOME without ~/.aws: the client cannot reach S3 on its own.
    result = run_python(code, clean_env(HOME=str(mlflow_server.env_file.parent)))
    assert result.returncode == 0, result.stderr[-3000:]
    ids = json.loads(result.stdout.strip().splitlines()[-1])

    pg = mlflow_server.postgres
    with contextlib.closing(pg.admin_connect(pg.db)) as conn, conn.cursor() as cur:
        cur.execute("SELECT key, value FROM params WHERE run_uuid = %s ORDER BY key", (ids["run_id"],))
        assert cur.fetchall() == [("factors", "64"), ("regularization", "0.01")]
        cur.execute("SELECT key, value FROM metrics WHERE run_uuid = %s", (ids["run_id"],))
        assert cur.fetchall() == [("ndcg_at_10", 0.42)]
        cur.execute("SELECT artifact_uri FROM runs WHERE run_uuid = %s", (ids["run_id"],))
        assert cur.fetchone()[0].startswith("mlflow-artifacts:/")  # proxied, not a direct s3:// URI

    key = f"{mlflow_server.s3.prefix}/{ids['experiment_id']}/{ids['run_id']}/artifacts/reports/hello.txt"
    assert key in mlflow_server.s3.keys(f"{mlflow_server.s3.prefix}/")
    body = mlflow_server.s3.client().get_object(Bucket=mlflow_server.s3.bucket, Key=key)["Body"].read()
    assert body == b"hello from a credential-less client"


# --------------------------------------------------------------------------- registry


@dataclass
class RegistryStory:
    """Runs, versions and decisions of the registry scenario, computed once."""

    experiment_id: str
    runs: dict[str, str]
    versions: dict[str, str]
    decisions: dict[str, PromotionDecision]
    challenger_after_register: dict[str, str]
    champion_after: dict[str, str | None]
    tags_after: dict[str, dict[str, str]]  # version tags right after each decision


def _log_candidate(bundle: Path, experiment_id: str, name: str, ndcg: float, split: str, **extra: float) -> str:
    with mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({"model": "toy", "factors": {"good": 64, "worse": 32, "other": 128}[name], "seed": 0})
        mlflow.log_metrics({"ndcg_at_10": ndcg, "recall_at_10": ndcg / 2, **extra})
        mlflow.set_tags({registry.DATASET_TAG: "toy-lastfm", registry.SPLIT_TAG: split})
        log_serving_model(bundle, k=5)
        if name == "good":  # a nested run that must not appear in the default comparison
            with mlflow.start_run(experiment_id=experiment_id, run_name="fold-1", nested=True):
                mlflow.log_metric("ndcg_at_10", 0.99)
    return run.info.run_id


@pytest.fixture(scope="module")
def story(mlflow_server: MlflowServer, toy_bundle: Path) -> Iterator[RegistryStory]:
    """Register good/worse/other-split versions and make every promotion decision once."""
    client = MlflowClient(mlflow_server.url)
    with tracking_uri(mlflow_server.url):
        exp_id = client.create_experiment(EXPERIMENT)
        runs = {
            "good": _log_candidate(toy_bundle, exp_id, "good", 0.30, "split-a"),
            "worse": _log_candidate(toy_bundle, exp_id, "worse", 0.25, "split-a", ndcg_at_10_pvalue=0.2),
            "other": _log_candidate(toy_bundle, exp_id, "other", 0.40, "split-b"),
        }
    versions, decisions, challenger, champion, tags = {}, {}, {}, {}, {}

    def champion_version() -> str | None:
        mv = registry.current_alias_version(client, MODEL_NAME, registry.CHAMPION)
        return mv.version if mv else None

    for name in ("good", "worse", "other"):
        mv = registry.register_run_model(runs[name], MODEL_NAME, client=client)
        versions[name] = mv.version
        challenger[name] = client.get_registered_model(MODEL_NAME).aliases[registry.CHALLENGER]
        decisions[name] = registry.promote(MODEL_NAME, mv.version, metric="ndcg_at_10", margin=0.01, client=client)
        champion[name] = champion_version()
        tags[name] = client.get_model_version(MODEL_NAME, mv.version).tags
    decisions["forced"] = registry.promote(MODEL_NAME, versions["worse"], force=True, client=client)
    champion["forced"] = champion_version()
    tags["forced"] = client.get_model_version(MODEL_NAME, versions["worse"]).tags
    yield RegistryStory(exp_id, runs, versions, decisions, challenger, champion, tags)


def test_register_sets_challenger_alias(story: RegistryStory, mlflow_server: MlflowServer) -> None:
    assert story.versions == {"good": "1", "worse": "2", "other": "3"}
    assert story.challenger_after_register == story.versions
    client = MlflowClient(mlflow_server.url)
    mv = client.get_model_version(MODEL_NAME, "1")
    assert mv.run_id == story.runs["good"]
    assert mv.source.startswith("models:/m-")  # the MLflow 3 LoggedModel


def test_first_version_becomes_champion(story: RegistryStory) -> None:
    decision = story.decisions["good"]
    assert decision.promoted and decision.reason == "no champion yet"
    assert story.champion_after["good"] == "1"


def test_worse_version_is_not_promoted_and_decision_recorded(story: RegistryStory) -> None:
    decision = story.decisions["worse"]
    assert decision.decision == "rejected"
    assert story.champion_after["worse"] == "1"
    assert decision.difference == pytest.approx(-0.05)
    tags = story.tags_after["worse"]
    assert tags["encore.promotion.decision"] == "rejected"
    assert float(tags["encore.promotion.candidate_metric"]) == pytest.approx(0.25)
    assert float(tags["encore.promotion.champion_metric"]) == pytest.approx(0.30)
    assert float(tags["encore.promotion.difference"]) == pytest.approx(-0.05)
    assert tags["encore.promotion.significance"] == "p=0.2"  # from the run's ndcg_at_10_pvalue


def test_different_split_is_refused(story: RegistryStory) -> None:
    decision = story.decisions["other"]
    assert decision.decision == "refused"
    assert "encore.split_hash differs" in decision.reason
    assert story.champion_after["other"] == "1"  # a higher metric on another split is not evidence
    assert story.tags_after["other"]["encore.promotion.decision"] == "refused"
    assert "encore.split_hash differs" in story.tags_after["other"]["encore.promotion.reason"]


def test_forced_promotion(story: RegistryStory) -> None:
    assert story.decisions["forced"].promoted and story.decisions["forced"].forced
    assert story.champion_after["forced"] == story.versions["worse"]
    tags = story.tags_after["forced"]
    # The forced promotion is recorded beside the earlier rejection, which is never overwritten.
    assert tags["encore.promotion.2.forced"] == "true"
    assert tags["encore.promotion.2.decision"] == "promoted"
    assert tags["encore.promotion.decision"] == "rejected" and tags["encore.promotion.forced"] == "false"


def test_champion_predicts_in_fresh_process(story: RegistryStory, mlflow_server: MlflowServer) -> None:
    code = f"""
import json, mlflow, pandas as pd
mlflow.set_tracking_uri({mlflow_server.url!r})
model = mlflow.pyfunc.load_model("models:/{MODEL_NAME}@champion")
users = model.predict(pd.DataFrame({{"user_id": ["u1", "stranger", "u2"], "k": [3, 4, 5]}}))
items = model.predict(pd.DataFrame({{"item_id": ["a0"], "k": [4]}}))
print(json.dumps({{"users": users.to_dict("records"), "items": items.to_dict("records")}}))
"""
    result = run_python(code, clean_env())
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    rows = out["users"]
    u1 = [r for r in rows if r["user_id"] == "u1"]
    assert [(r["rank"], r["item_id"], r["source"]) for r in u1] == [
        (1, "a10", "ranker"),
        (2, "a11", "ranker"),
        (3, "a12", "ranker"),
    ]
    stranger = [r for r in rows if r["user_id"] == "stranger"]
    assert [r["item_id"] for r in stranger] == ["a0", "a1", "a2", "a3"]
    assert {r["source"] for r in stranger} == {"popular"}
    u2 = [(r["item_id"], r["source"]) for r in rows if r["user_id"] == "u2"]
    # 3 ranked items, then popular ones it does not already have (a0 and a1 are skipped)
    assert u2 == [("a0", "ranker"), ("a25", "ranker"), ("a1", "ranker"), ("a2", "popular"), ("a3", "popular")]
    similar = [(r["similar_item_id"], r["source"]) for r in out["items"]]
    assert similar == [("a5", "similar"), ("a6", "similar"), ("a7", "similar"), ("a1", "popular")]


def test_compare_and_diff(
    story: RegistryStory, mlflow_server: MlflowServer, capsys: pytest.CaptureFixture[str]
) -> None:
    client = MlflowClient(mlflow_server.url)
    table = compare.compare_runs(client, EXPERIMENT, "ndcg_at_10")
    assert list(table["run_name"]) == ["other", "good", "worse"]  # parents only, best first
    assert list(table["ndcg_at_10"]) == pytest.approx([0.40, 0.30, 0.25])
    assert "params.factors" in table.columns and "params.seed" not in table.columns  # only varying params
    with_children = compare.compare_runs(client, EXPERIMENT, "ndcg_at_10", include_children=True)
    assert with_children["run_name"].iloc[0] == "fold-1"

    diff = compare.diff_runs(client, story.runs["good"], story.runs["worse"]).set_index("key")
    assert diff.loc["ndcg_at_10", "difference"] == pytest.approx(-0.05)
    assert diff.loc["factors", "run_a"] == "64" and diff.loc["factors", "run_b"] == "32"
    assert diff.loc["factors", "difference"] == pytest.approx(-32)
    assert "seed" not in diff.index and "model" not in diff.index

    assert compare.main(["--tracking-uri", mlflow_server.url, "--experiment", EXPERIMENT, "--top", "2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 3 and "other" in printed[1] and "good" in printed[2]


# --------------------------------------------------------------------------- failure modes


def test_dead_server_fails_fast_with_readable_error() -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(tracking_client.TrackingServerUnreachable, match=r"is not reachable.*mlflow_server/start\.sh"):
        tracking_client.check_tracking_server(dead, timeout=2)
    assert time.monotonic() - start < 3

    # A plain MLflow client with the fail-fast settings gives up within seconds too.
    code = f"""
import time, mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
start = time.monotonic()
try:
    MlflowClient({dead!r}).search_experiments()
except Exception as exc:
    print(f"{{time.monotonic() - start:.2f}} {{type(exc).__name__}}: {{str(exc)[:300]}}")
"""
    env = clean_env(**tracking_client.client_fail_fast_env(environ={}, env_file=Path("/nonexistent")))
    result = run_python(code, env)
    elapsed, message = result.stdout.strip().split(" ", 1)
    assert float(elapsed) < 10, result.stdout
    assert "Max retries exceeded" in message or "Connection refused" in message


def test_clean_removes_deleted_run_and_its_artifacts(mlflow_server: MlflowServer, tmp_path: Path) -> None:
    client = MlflowClient(mlflow_server.url)
    exp_id = client.create_experiment("encore-gc")
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "to be collected", "junk/data.txt")
    # An MLflow 3 logged model lives outside the run's folder and is deleted on its own.
    model = client.create_logged_model(exp_id, name="junk-model", source_run_id=run.info.run_id)
    (tmp_path / "weights.txt").write_text("w")
    client.log_model_artifact(model.model_id, str(tmp_path / "weights.txt"))
    client.set_terminated(run.info.run_id)
    run_prefix = f"{mlflow_server.s3.prefix}/{exp_id}/{run.info.run_id}/"
    model_prefix = f"{mlflow_server.s3.prefix}/{exp_id}/models/{model.model_id}/"
    assert mlflow_server.s3.keys(run_prefix) and mlflow_server.s3.keys(model_prefix)
    client.delete_run(run.info.run_id)
    client.delete_logged_model(model.model_id)

    result = mlflow_server.run_script("clean.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Run with ID {run.info.run_id} has been permanently deleted" in result.stdout
    assert mlflow_server.postgres.password not in result.stdout + result.stderr
    assert mlflow_server.s3.keys(run_prefix) == []
    assert mlflow_server.s3.keys(model_prefix) == []
    with pytest.raises(MlflowException):
        client.get_run(run.info.run_id)


def test_orphan_check_ignores_job_runners_of_other_servers() -> None:
    """Issue #9 item 8: a huey_consumer of someone's own `mlflow ui` is not the server's orphan."""
    import os
    import signal

    stranger = subprocess.Popen(["bash", "-c", "exec -a huey_consumer sleep 60"], start_new_session=True)
    ours = subprocess.Popen(["bash", "-c", "exec -a huey_consumer sleep 60"], start_new_session=True)
    try:
        deadline = time.monotonic() + 5
        while not [a for _, _, _, a in processes() if a.startswith("huey_consumer")] and time.monotonic() < deadline:
            time.sleep(0.1)
        # `ours` stands for a job runner left in the server's own session; `stranger` is elsewhere.
        leftovers = server_leftovers(ours.pid, free_port())
        assert leftovers == ["huey_consumer 60"], leftovers
    finally:
        for proc in (stranger, ours):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_stop_leaves_no_orphans(mlflow_server: MlflowServer) -> None:
    """Runs last: stops the session's server (the fixture's own stop.sh is then a no-op)."""
    pgid = _pgid(mlflow_server)
    members = live_group_members(pgid)
    assert sum("multiprocessing.spawn" in args for args in members) == 2, members  # the 2 uvicorn workers
    result = mlflow_server.run_script("stop.sh", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert live_group_members(pgid) == []
    assert server_leftovers(pgid, mlflow_server.port) == []
    assert not mlflow_server.pid_file.exists()
    assert not http_ok(f"{mlflow_server.url}/health")
    again = mlflow_server.run_script("stop.sh", timeout=30)
    assert again.returncode == 0 and "not running" in again.stdout
