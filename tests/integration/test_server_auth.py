"""The team tracking server with authentication on, against REAL services.

One MLflow server (``mlflow_server/start.sh`` with ``ENCORE_SERVER_AUTH=on``: MLflow's
basic-auth app, user store in its own schema of a real PostgreSQL database, artifacts in
moto_server S3) is shared by every test here. Users are created by the documented command
(``python -m encore.mlflow_server auth setup`` and ``add-viewer``). Then: anonymous requests
get 401; a viewer reads but cannot log, delete or move an alias; the pipeline user runs the
whole pipeline on Last.fm 2K and registers a version but cannot move ``champion``; the
release user can; a wrong password fails fast in one line; no credential appears in the
server log, the run data, the artifacts or the client output.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from encore.config.experiment import load_config
from encore.pipeline.runner import all_components
from encore.tracking import client as tracking_client
from tests.integration.itest_support import (
    REPO_ROOT,
    S3,
    MlflowServer,
    Postgres,
    clean_env,
    free_port,
    mlflow_server_started,
    processes,
    server_leftovers,
    write_env_file,
)

pytestmark = pytest.mark.integration

ADMIN_PW = "Adm%n #pw:1-long"  # '%' (configparser interpolation) and ' #' (.env comments)
PIPELINE_PW = "pipe-Secret-42"
RELEASE_PW = "rel-Secret-77"
VIEWER, VIEWER_PW = "alice", "view-Secret-13"
MODEL = "encore-ranker-auth"
DB = "mlflow_authtest"
SECRETS = (ADMIN_PW, PIPELINE_PW, RELEASE_PW, VIEWER_PW)

LASTFM2K_DIR = Path(os.environ.get("ENCORE_LASTFM2K_DIR", REPO_ROOT.parent / "shared/datasets/hetrec2011-lastfm-2k"))
RUN_SH = REPO_ROOT / "scripts" / "pipeline" / "run.sh"
COMMON = (
    "dataset.download=false",
    f"tracking.registered_model_name={MODEL}",
    "tracking.experiment_name=lastfm2k-auth",
    "components.bpr.iterations=10",
    "components.bpr128.iterations=10",
    "components.ease.max_items=1000",
    "components.ease500.max_items=1000",
    "components.item2item.n_components=32",
    "components.ranker.iterations=20",
    # Permissions are what this file tests: the feature-only variants and user-kNN add component
    # runs (and CI minutes) but no permission the other instances do not exercise.
    *(f"components.{name}.enabled=false" for name in ("als128", "als32", "bpr128", "ease500", "knncos", "userknn")),
)


@dataclass(frozen=True)
class AuthServer:
    srv: MlflowServer
    start_output: str
    setup_output: str

    @property
    def url(self) -> str:
        return self.srv.url


@contextlib.contextmanager
def as_user(username: str | None, password: str | None) -> Iterator[None]:
    """MLflow clients in this process authenticate as ``username`` inside the block."""
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    for key, value in zip(keys, (username, password), strict=True):
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def http_status(url: str, method: str = "GET", body: dict | bytes | None = None,
                auth: tuple[str, str] | None = None) -> int:
    data = body if isinstance(body, bytes) else json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


def _auth_env_file(path: Path, pg: Postgres, s3: S3, port: int, **overrides: str) -> Path:
    values = {
        "POSTGRES_DB": DB,
        "S3_PREFIX": "mlflow-auth",
        "ENCORE_SERVER_AUTH": "on",
        "ENCORE_AUTH_ADMIN_PASSWORD": f"'{ADMIN_PW}'",
        "ENCORE_PIPELINE_PASSWORD": PIPELINE_PW,
        "ENCORE_RELEASE_PASSWORD": RELEASE_PW,
        "ENCORE_REGISTERED_MODELS": MODEL,
    }
    return write_env_file(path, pg, s3, port, **{**values, **overrides})


@pytest.fixture(scope="module")
def auth_server(postgres: Postgres, s3: S3, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuthServer]:
    """start.sh with authentication on, then setup + add-viewer; stop.sh at teardown."""
    from psycopg2 import sql

    with contextlib.closing(postgres.admin_connect()) as conn, conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(DB), sql.Identifier(postgres.user)))
    base = tmp_path_factory.mktemp("auth_server")
    with mlflow_server_started(postgres, s3, base, env_writer=_auth_env_file) as (srv, start_log):
        env = clean_env(ENV_FILE=str(srv.env_file))
        cmd = [sys.executable, "-m", "encore.mlflow_server", "auth"]
        setup = subprocess.run([*cmd, "setup"], env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        viewer = subprocess.run([*cmd, "add-viewer", VIEWER, "--password-stdin"], input=VIEWER_PW + "\n", env=env,
                                capture_output=True, text=True, timeout=60, cwd=REPO_ROOT)
        assert viewer.returncode == 0, viewer.stdout + viewer.stderr
        yield AuthServer(srv, start_log, setup.stdout + setup.stderr + viewer.stdout)


# --------------------------------------------------------------------------- starting


def test_network_bind_without_auth_is_refused(postgres: Postgres, s3: S3, tmp_path: Path) -> None:
    env_file = _auth_env_file(tmp_path / "open.env", postgres, s3, free_port(), MLFLOW_HOST="0.0.0.0",
                              ENCORE_SERVER_AUTH="off")
    srv = MlflowServer("http://unused", 0, env_file, tmp_path / "run", postgres, s3)
    result = srv.run_script("start.sh", timeout=120)
    assert result.returncode == 1
    assert "MLFLOW_HOST=0.0.0.0 reaches beyond this machine but ENCORE_SERVER_AUTH=off" in result.stdout
    assert not (tmp_path / "run" / "server.pid").exists()
    # auto (the default) turns authentication on off loopback, and then needs an admin password.
    env_file = _auth_env_file(tmp_path / "auto.env", postgres, s3, free_port(), MLFLOW_HOST="0.0.0.0",
                              ENCORE_SERVER_AUTH="auto", ENCORE_AUTH_ADMIN_PASSWORD="")
    result = MlflowServer("http://unused", 0, env_file, tmp_path / "run", postgres, s3).run_script("start.sh")
    assert result.returncode == 1
    assert "ENCORE_AUTH_ADMIN_PASSWORD is not set" in result.stdout
    assert "without --allowed-hosts" in result.stdout


def test_auth_config_is_private_and_no_password_in_ps_or_log(auth_server: AuthServer) -> None:
    config = auth_server.srv.run_dir / "auth" / "basic_auth.ini"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    assert "default_permission = NO_PERMISSIONS" in config.read_text()
    assert "--app-name basic-auth" in auth_server.start_output
    command_lines = [args for _, _, _, args in processes()]
    log = auth_server.srv.log_file.read_text()
    for secret in (*SECRETS, auth_server.srv.postgres.password):
        assert not [a for a in command_lines if secret in a]
        assert secret not in log and secret not in auth_server.start_output and secret not in auth_server.setup_output


# --------------------------------------------------------------------------- who may do what


ANONYMOUS_CALLS = (
    ("GET", "/api/2.0/mlflow/experiments/search?max_results=10", None),
    ("POST", "/api/2.0/mlflow/experiments/search", {"max_results": 10}),
    ("POST", "/ajax-api/2.0/mlflow/experiments/search", {"max_results": 10}),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name?experiment_name=Default", None),
    ("POST", "/api/2.0/mlflow/experiments/create", {"name": "anon"}),
    ("POST", "/api/2.0/mlflow/runs/search", {"experiment_ids": ["0"]}),
    ("POST", "/ajax-api/2.0/mlflow/runs/search", {"experiment_ids": ["0"]}),
    ("POST", "/api/2.0/mlflow/runs/create", {"experiment_id": "0"}),
    ("GET", "/api/2.0/mlflow/registered-models/search", None),
    ("GET", f"/api/2.0/mlflow/registered-models/get?name={MODEL}", None),
    ("GET", f"/api/2.0/mlflow/registered-models/alias?name={MODEL}&alias=champion", None),
    ("POST", "/api/2.0/mlflow/registered-models/alias", {"name": MODEL, "alias": "champion", "version": "1"}),
    ("GET", "/api/2.0/mlflow/model-versions/search", None),
    ("GET", "/api/2.0/mlflow/artifacts/list?run_id=x", None),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", None),
    ("GET", "/get-artifact?path=x&run_uuid=y", None),
    ("GET", "/api/2.0/mlflow/users/current", None),
    ("GET", "/api/2.0/mlflow/metrics/get-history?run_id=x&metric_key=m", None),
    ("POST", "/api/2.0/mlflow/logged-models/search", {"experiment_ids": ["0"]}),
)


def test_anonymous_gets_401_on_every_api(auth_server: AuthServer) -> None:
    assert http_status(f"{auth_server.url}/health") == 200
    refused = {f"{m} {p}": http_status(auth_server.url + p, m, b) for m, p, b in ANONYMOUS_CALLS}
    assert set(refused.values()) == {401}, refused
    wrong = {f"{m} {p}": http_status(auth_server.url + p, m, b, ("alice", "nope")) for m, p, b in ANONYMOUS_CALLS}
    assert set(wrong.values()) == {401}, wrong


def _refused(call, *args, **kwargs) -> str:
    with pytest.raises(MlflowException) as info:
        call(*args, **kwargs)
    assert "403" in str(info.value), str(info.value)
    return str(info.value)


@dataclass
class PipelineOutcome:
    result: subprocess.CompletedProcess[str]
    seconds: float
    aliases_after: dict[str, str]  # right after the pipeline user's run
    version_tags_after: dict[str, str]
    promote: subprocess.CompletedProcess[str]
    promote_seconds: float
    outputs: Path


def _run_sh(env: dict[str, str], components: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    cmd = [str(RUN_SH), "--experiment", str(REPO_ROOT / "experiments" / "lastfm2k.yaml"), "--components", components]
    for override in COMMON:
        cmd += ["--set", override]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stderr or b"")[-4000:]
        pytest.fail(f"run.sh --components {components} did not finish in {timeout:.0f} s:\n"
                    f"{tail.decode(errors='replace') if isinstance(tail, bytes) else tail}")


def _client_env(auth_server: AuthServer, home: Path, outputs: Path, **extra: str) -> dict[str, str]:
    if not (LASTFM2K_DIR / "user_artists.dat").is_file():
        pytest.fail(f"HetRec 2011 Last.fm 2K not found at {LASTFM2K_DIR}: set ENCORE_LASTFM2K_DIR")
    return clean_env(HOME=str(home), ENCORE_PYTHON=sys.executable, OPENBLAS_NUM_THREADS="1",
                     MLFLOW_TRACKING_URI=auth_server.url, ENCORE_OUTPUT_DIR=str(outputs),
                     ENCORE_DATA_DIR=str(LASTFM2K_DIR.parent), ENV_FILE=str(home / "none.env"), **extra)


@pytest.fixture(scope="module")
def pipeline(auth_server: AuthServer, tmp_path_factory: pytest.TempPathFactory) -> PipelineOutcome:
    """The whole pipeline as the pipeline user (no release user configured), then promote alone
    with the release user's credentials in the client's .env."""
    home, outputs = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("outputs")
    pipeline_user = {"MLFLOW_TRACKING_USERNAME": "encore-pipeline", "MLFLOW_TRACKING_PASSWORD": PIPELINE_PW}
    env = _client_env(auth_server, home, outputs, **pipeline_user)
    started = time.monotonic()
    result = _run_sh(env, ",".join(all_components(load_config(REPO_ROOT / "experiments" / "lastfm2k.yaml"))))
    seconds = time.monotonic() - started
    with as_user("admin", ADMIN_PW):
        admin = MlflowClient(auth_server.url)
        aliases = dict(admin.get_registered_model(MODEL).aliases)
        tags = dict(admin.get_model_version(MODEL, "1").tags) if aliases else {}
    # The release user's password only in a .env file: clients read it from there.
    (home / "none.env").write_text(f"ENCORE_RELEASE_USERNAME=encore-release\nENCORE_RELEASE_PASSWORD={RELEASE_PW}\n")
    started = time.monotonic()
    promote = _run_sh(env, "promote")
    print(f"auth pipeline run {seconds:.0f} s, promote-only run {time.monotonic() - started:.0f} s", file=sys.stderr)
    return PipelineOutcome(result, seconds, aliases, tags, promote, time.monotonic() - started, outputs)


def test_pipeline_user_runs_pipeline_and_registers_but_cannot_promote(
    auth_server: AuthServer, pipeline: PipelineOutcome
) -> None:
    result = pipeline.result
    assert result.returncode != 0, result.stdout[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-4000:]
    assert "component 'promote' failed" in errors[0]
    assert "only the release user" in errors[0] and "'encore-pipeline' may not" in errors[0]
    assert "ENCORE_RELEASE_USERNAME" in errors[0]
    assert "Traceback" not in result.stderr
    assert pipeline.aliases_after == {"challenger": "1"}  # register ran as the pipeline user; no champion
    assert "encore.promotion.decision" not in pipeline.version_tags_after  # promote wrote nothing
    client = MlflowClient(auth_server.url)
    with as_user("admin", ADMIN_PW):  # a teammate's experiment: the pipeline holds EDIT there, not MANAGE
        team_run = client.create_run(client.create_experiment("team-experiment")).info.run_id
    # The pipeline user holds EDIT on the model (it registers versions), yet cannot move champion.
    with as_user("encore-pipeline", PIPELINE_PW):
        message = _refused(client.set_registered_model_alias, MODEL, "champion", "1")
        assert "user 'encore-pipeline' may not move alias 'champion'" in message
        _refused(client.delete_registered_model_alias, MODEL, "champion")
        _refused(client.create_registered_model, "some-new-model")
        client.set_registered_model_alias(MODEL, "challenger", "1")  # its own alias: allowed
        client.log_metric(team_run, "pipeline_metric", 1.0)  # EDIT on every experiment
        _refused(client.delete_run, team_run)  # but no deletes outside the experiments it created


def test_release_user_promotes(auth_server: AuthServer, pipeline: PipelineOutcome) -> None:
    assert pipeline.promote.returncode == 0, pipeline.promote.stderr[-4000:]
    assert "PROMOTED" in pipeline.promote.stdout + pipeline.promote.stderr
    client = MlflowClient(auth_server.url)
    with as_user("encore-release", RELEASE_PW):
        assert client.get_registered_model(MODEL).aliases["champion"] == "1"
        assert client.get_model_version(MODEL, "1").tags["encore.promotion.decision"] == "promoted"
        # and by hand: the release user alone may move (or remove) it
        client.delete_registered_model_alias(MODEL, "champion")
        client.set_registered_model_alias(MODEL, "champion", "1")
        _refused(client.log_metric, client.get_model_version(MODEL, "1").run_id, "x", 1.0)  # READ on runs


def test_registered_version_files_are_immutable(auth_server: AuthServer, pipeline: PipelineOutcome) -> None:
    """#25 item 10: the pipeline role logs runs through the artifact proxy, but may not change (or delete)
    the files of a registered version, so it cannot alter what ``champion`` serves without moving it."""
    client = MlflowClient(auth_server.url)
    with as_user("admin", ADMIN_PW):
        location = client.get_model_version_download_uri(MODEL, "1")
    assert location.startswith("mlflow-artifacts:/"), location
    relative = location.removeprefix("mlflow-artifacts:").strip("/")
    s3 = auth_server.srv.s3
    key = next(k for k in s3.keys(f"mlflow-auth/{relative}/") if k.endswith("/MLmodel"))
    before = s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read()
    api = f"{auth_server.url}/api/2.0/mlflow-artifacts"
    pipeline_user = ("encore-pipeline", PIPELINE_PW)
    head, _, tail = relative.partition("/")
    for method, url in (
        ("PUT", f"{api}/artifacts/{relative}/MLmodel"),
        ("PUT", f"{api}/artifacts/{head}/./{tail}//MLmodel"),  # the same file, spelled otherwise
        ("PUT", f"{api}/artifacts/{head}/x/../{tail}/MLmodel"),
        ("PUT", f"{api}/artifacts/{relative}/new-file.txt"),
        ("DELETE", f"{api}/artifacts?path={relative}"),
        ("DELETE", f"{api}/artifacts?path={head}"),  # a parent of the version's files
        ("POST", f"{api}/mpu/create/{relative}"),
    ):
        assert http_status(url, method, b"hacked", auth=pipeline_user) == 403, (method, url)
    assert s3.client().get_object(Bucket=s3.bucket, Key=key)["Body"].read() == before
    # The proxy still takes the pipeline's own run artifacts.
    with as_user("admin", ADMIN_PW):
        run = client.create_run(client.get_experiment_by_name("lastfm2k-auth").experiment_id).info
    path = run.artifact_uri.removeprefix("mlflow-artifacts:").strip("/")
    assert http_status(f"{api}/artifacts/{path}/note.txt", "PUT", b"ok", auth=pipeline_user) == 200


def test_viewer_reads_but_cannot_log_delete_or_set_alias(auth_server: AuthServer, pipeline: PipelineOutcome,
                                                         tmp_path: Path) -> None:
    client = MlflowClient(auth_server.url)
    with as_user(VIEWER, VIEWER_PW):
        experiment = client.get_experiment_by_name("lastfm2k-auth")
        runs = client.search_runs([experiment.experiment_id])
        assert len(runs) >= 13  # parent + 12 components (+ the promote-only run)
        run_id = client.get_model_version(MODEL, "1").run_id
        assert client.get_run(run_id).data.metrics
        assert client.get_registered_model(MODEL).aliases["champion"] == "1"
        assert client.list_artifacts(run_id)
        assert Path(client.download_artifacts(run_id, "per_user_metric.parquet", str(tmp_path))).is_file()
        for call, args in (
            (client.log_metric, (run_id, "hacked", 1.0)),
            (client.set_tag, (run_id, "hacked", "yes")),
            (client.delete_run, (run_id,)),
            (client.set_registered_model_alias, (MODEL, "champion", "1")),
            (client.set_registered_model_alias, (MODEL, "challenger", "1")),
            (client.delete_registered_model_alias, (MODEL, "champion")),
            (client.create_run, (experiment.experiment_id,)),
            (client.create_experiment, ("viewer-experiment",)),
        ):
            _refused(call, *args)


def test_wrong_password_fails_fast_in_one_line(auth_server: AuthServer, tmp_path: Path) -> None:
    started = time.monotonic()
    refused = "refused user 'encore-pipeline': wrong username or pass"
    with pytest.raises(tracking_client.TrackingServerAuthError, match=refused):
        tracking_client.check_tracking_server(auth_server.url, environ={"MLFLOW_TRACKING_USERNAME": "encore-pipeline",
                                                                        "MLFLOW_TRACKING_PASSWORD": "wrong-Secret-9"})
    with pytest.raises(tracking_client.TrackingServerAuthError, match="requires authentication"):
        tracking_client.check_tracking_server(auth_server.url, environ={})
    assert time.monotonic() - started < 5
    env = _client_env(auth_server, tmp_path, tmp_path / "out", MLFLOW_TRACKING_USERNAME="encore-pipeline",
                      MLFLOW_TRACKING_PASSWORD="wrong-Secret-9")
    started = time.monotonic()
    result = _run_sh(env, "prepare", timeout=60)
    assert time.monotonic() - started < 20
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("error: MLflow server at")
    assert "refused user 'encore-pipeline'" in result.stderr and "Traceback" not in result.stderr
    assert "wrong-Secret-9" not in result.stdout + result.stderr


def test_tracking_uri_with_credentials_passes_the_check(auth_server: AuthServer) -> None:
    """Issue #9 item 6: userinfo in the URI used to fail with 'Name or service not known'."""
    host = auth_server.url.removeprefix("http://")
    tracking_client.check_tracking_server(f"http://encore-pipeline:{PIPELINE_PW}@{host}", environ={})
    tracking_client.check_tracking_server(auth_server.url, environ={"MLFLOW_TRACKING_USERNAME": "encore-pipeline",
                                                           "MLFLOW_TRACKING_PASSWORD": PIPELINE_PW})
    with pytest.raises(tracking_client.TrackingServerAuthError) as info:
        tracking_client.check_tracking_server(f"http://encore-pipeline:bad-Secret-5@{host}", environ={})
    assert "bad-Secret-5" not in str(info.value) and "encore-pipeline:****@" in str(info.value)


def test_no_credential_in_run_data_artifacts_or_output(auth_server: AuthServer, pipeline: PipelineOutcome) -> None:
    texts = [pipeline.result.stdout, pipeline.result.stderr, pipeline.promote.stdout, pipeline.promote.stderr,
             auth_server.srv.log_file.read_text()]
    client = MlflowClient(auth_server.url)
    with as_user("admin", ADMIN_PW):
        experiment = client.get_experiment_by_name("lastfm2k-auth")
        for run in client.search_runs([experiment.experiment_id]):
            texts.append(json.dumps({"params": run.data.params, "tags": run.data.tags}))
        texts += [json.dumps(mv.tags) for mv in client.search_model_versions(f"name = '{MODEL}'")]
    store = auth_server.srv.s3
    for key in store.keys("mlflow-auth/"):
        body = store.client().get_object(Bucket=store.bucket, Key=key)["Body"].read()
        texts.append(body.decode("latin-1"))
    texts += [p.read_text(errors="replace") for p in pipeline.outputs.rglob("*") if p.is_file()
              and p.suffix in (".json", ".txt", ".log", ".yaml", ".csv")]
    for secret in SECRETS:
        assert not [t[:200] for t in texts if secret in t], secret


def test_clean_runs_as_the_admin(auth_server: AuthServer) -> None:
    client = MlflowClient(auth_server.url)
    with as_user("admin", ADMIN_PW):
        exp_id = client.create_experiment("auth-gc")
        run = client.create_run(exp_id)
        client.log_text(run.info.run_id, "to be collected", "junk/data.txt")
        client.set_terminated(run.info.run_id)
        client.delete_run(run.info.run_id)
    prefix = f"mlflow-auth/{exp_id}/{run.info.run_id}/"
    assert auth_server.srv.s3.keys(prefix)
    result = auth_server.srv.run_script("clean.sh", "--run-ids", run.info.run_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Run with ID {run.info.run_id} has been permanently deleted" in result.stdout
    assert auth_server.srv.s3.keys(prefix) == []
    assert ADMIN_PW not in result.stdout + result.stderr


def test_stop_leaves_nothing_and_removes_the_auth_config(auth_server: AuthServer) -> None:
    """Last in this module: stops the shared auth server (the fixture's stop.sh is then a no-op)."""
    pgid = int(auth_server.srv.pid_file.read_text().strip())
    result = auth_server.srv.run_script("stop.sh", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert server_leftovers(pgid, auth_server.srv.port) == []
    assert not (auth_server.srv.run_dir / "auth").exists()  # the admin password does not outlive the server
