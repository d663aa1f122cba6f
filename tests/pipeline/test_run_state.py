"""Run state and settings paths (issue #25): a killed folded run leaves no fold run RUNNING, a
model version registered by a killed run is marked, and ``$ENV_FILE`` is the one settings file."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from encore.config.experiment import MachineSettings, load_config
from encore.io import process_start_time
from encore.tracking import runs as tracking
from encore.tracking.model_registry import CHALLENGER
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, local_http_server, make_config

OFF = {"enabled": False}
FOLDED = TINY_SYNTHETIC | {
    "experiment": {"name": "folded_killed", "seed": 3},
    "split": {"kind": "time", "target_start": "2020-03-01", "test_start": "2020-07-01", "folds": 3,
              "fold_days": 60},
}

KILLED_IN_A_FOLD = """
import json, os, signal, sys
from pathlib import Path
from tests.conftest import local_http_server, make_config
from encore.pipeline import execution
config = make_config(Path(sys.argv[1]), json.loads(sys.argv[2]))
execution.run_components = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)  # kill -9 inside fold 1
execution.run_pipeline(config, ["prepare"])
"""


def statuses(config) -> dict[str, str]:
    mlflow.set_tracking_uri(tracking.tracking_uri(config))
    frame = mlflow.search_runs(experiment_names=[tracking.experiment_name(config)])
    return dict(zip(frame["tags.mlflow.runName"], frame["status"], strict=True))


def test_a_killed_folded_run_leaves_no_fold_run_running(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", KILLED_IN_A_FOLD, str(tmp_path), json.dumps(FOLDED)], cwd=REPO_ROOT,
                          env=os.environ | {"PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          check=False, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    config = make_config(tmp_path, FOLDED)
    assert sorted(statuses(config).values()) == ["RUNNING", "RUNNING"]  # the parent and fold1, never ended
    tracking.mark_stale_runs(tracking.setup_tracking(config))  # what the next run does first
    after = statuses(config)
    assert after["fold1"] == "KILLED", after
    assert "RUNNING" not in after.values(), after


def test_fold_runs_carry_the_process_tags_parent_runs_carry(tmp_path: Path) -> None:
    import encore.pipeline.execution as execution

    seen: list[dict[str, str]] = []

    def record(config, to_run, *, force=(), parent_id, reused=None):
        seen.append(mlflow.MlflowClient().get_run(parent_id).data.tags)
        return {}

    config = make_config(tmp_path, FOLDED)
    original = execution.run_components
    execution.run_components = record
    try:
        execution.run_pipeline(config, ["prepare"])
    finally:
        execution.run_components = original
    assert len(seen) == 3
    assert all(tags["encore.pid"] == str(os.getpid()) and tags["encore.host"] == socket.gethostname()
               and "encore.pid_started" in tags for tags in seen)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_version_registered_by_a_killed_run_is_marked_and_loses_challenger(tmp_path: Path) -> None:
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = mlflow.MlflowClient()
    experiment_id = client.create_experiment("killed_register", artifact_location=(tmp_path / "art").as_uri())
    pid = dead_pid()
    assert process_start_time(pid) is None
    killed = client.create_run(experiment_id, tags={"encore.host": socket.gethostname(), "encore.pid": str(pid),
                                                    "encore.pid_started": "1", "mlflow.runName": "register"})
    finished = client.create_run(experiment_id, tags={"mlflow.runName": "register"})
    client.set_terminated(finished.info.run_id)
    client.create_registered_model("encore-ranker")
    good = client.create_model_version("encore-ranker", f"runs:/{finished.info.run_id}/model",
                                       run_id=finished.info.run_id)
    orphan = client.create_model_version("encore-ranker", f"runs:/{killed.info.run_id}/model",
                                         run_id=killed.info.run_id)
    client.set_registered_model_alias("encore-ranker", CHALLENGER, orphan.version)
    assert client.get_model_version("encore-ranker", orphan.version).status == "READY"

    assert tracking.mark_stale_runs(experiment_id) == 1
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    marked = client.get_model_version("encore-ranker", orphan.version)
    assert marked.tags.get(tracking.KILLED_RUN_TAG) == killed.info.run_id
    assert CHALLENGER not in marked.aliases  # promote finds no challenger, not one nobody finished
    assert tracking.KILLED_RUN_TAG not in client.get_model_version("encore-ranker", good.version).tags


# ----------------------------------------------------------------------- one settings path: $ENV_FILE
def test_env_file_sets_the_tracking_uri_as_it_sets_credentials(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    team = tmp_path / "team.env"
    team.write_text("MLFLOW_TRACKING_URI=http://team-server.example:5000\nENCORE_OUTPUT_DIR=/srv/encore-out\n")
    for key in ("MLFLOW_TRACKING_URI", "ENCORE_OUTPUT_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("ENV_FILE", str(team))
    assert MachineSettings().mlflow_tracking_uri == "http://team-server.example:5000"
    config = load_config(None)
    assert config.tracking.tracking_uri == "http://team-server.example:5000"
    assert config.output_dir == Path("/srv/encore-out")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")  # the environment still wins
    assert load_config(None).tracking.tracking_uri == "sqlite:///elsewhere.db"


@pytest.mark.parametrize("relative", [False, True], ids=["absolute", "relative-to-the-caller"])
def test_run_sh_logs_where_env_file_says(tmp_path: Path, relative: bool) -> None:
    team = tmp_path / "team.env"
    team.write_text("MLFLOW_TRACKING_URI=nosuchscheme://team-server\n")
    experiment = tmp_path / "experiment.yaml"
    experiment.write_text(json.dumps(TINY_SYNTHETIC))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # ENCORE_HOME in tmp_path: were the URI ignored, the local store would be made there, not in the checkout.
    env |= {"ENV_FILE": "team.env" if relative else str(team), "ENCORE_HOME": str(tmp_path),
            "ENCORE_OUTPUT_DIR": str(tmp_path / "outputs")}
    done = subprocess.run([str(REPO_ROOT / "scripts/pipeline/run.sh"), "--experiment", str(experiment),
                           "--components", "prepare"], capture_output=True, text=True, env=env, check=False,
                          timeout=300, cwd=tmp_path)
    assert done.returncode != 0, done
    assert "Traceback" not in done.stderr
    assert "nosuchscheme://team-server" in done.stderr  # the team's URI, not the local store


# ----------------------------------------------------------------------- register / compare: wrong password
class _RefusingServer(http.server.BaseHTTPRequestHandler):
    """A basic-auth MLflow server that knows nobody: every request is 401."""

    def _refuse(self) -> None:
        body = b"You are not authenticated. Please see the documentation for details."
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="mlflow"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = do_DELETE = _refuse

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def refusing_server() -> Iterator[str]:
    with local_http_server(_RefusingServer) as port:
        yield f"http://127.0.0.1:{port}"


@pytest.mark.parametrize("command", [
    ["encore.components.register", "--run-id", "0123456789abcdef", "--model-name", "encore-ranker"],
    ["encore.components.compare", "--experiment", "lastfm2k"],
    ["encore.components.compare", "--diff", "0123456789abcdef", "fedcba9876543210"],
], ids=["register", "compare", "compare-diff"])
def test_register_and_compare_with_a_wrong_password_say_so_in_one_line(command: list[str], refusing_server: str,
                                                                       tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env |= {"MLFLOW_TRACKING_URI": refusing_server, "MLFLOW_TRACKING_USERNAME": "encore-pipeline",
            "MLFLOW_TRACKING_PASSWORD": "wr0ng-pa55", "ENV_FILE": str(tmp_path / "absent.env"),
            "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-m", *command], capture_output=True, text=True, env=env, check=False,
                          timeout=120, cwd=REPO_ROOT)
    assert done.returncode == 1, done
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: MLflow server refused user 'encore-pipeline'") and "HTTP 401" in lines[0]
    assert "wr0ng-pa55" not in done.stderr + done.stdout
