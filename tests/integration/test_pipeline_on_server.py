"""The whole Encore pipeline on real Last.fm 2K against the production MLflow setup.

``scripts/pipeline/run.sh`` runs every component (prepare ... evaluate, register, promote)
twice against the MLflow server started by ``mlflow_server/start.sh`` (PostgreSQL + moto S3
behind the artifact proxy, see conftest.py): a strong run, then a weaker one (a 5-tree
ranker) reusing the first run's output folder. Everything is then checked FROM THE
SERVER: runs, tags, params and metrics through the REST API, artifacts in the S3 bucket,
the registry's aliases and decisions, the champion served in a fresh process, the
comparison CLI. Neither the pipeline, the test process nor the serving process holds AWS
credentials: artifacts travel through the server's proxy.

The dataset is the real HetRec 2011 Last.fm 2K folder (``ENCORE_LASTFM2K_DIR`` or
``<repo>/../shared/datasets/hetrec2011-lastfm-2k``); when it is missing the tests FAIL.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import Run
from mlflow.exceptions import MlflowException

from encore.config.experiment import load_config
from encore.data.lastfm2k import FILES as LASTFM2K_FILES
from encore.evaluation.metric_names import RANKING_METRIC_NAMES
from encore.outputs import RegisterOutput
from encore.pipeline.runner import all_components, generator_names
from tests.integration.itest_support import REPO_ROOT, MlflowServer, clean_env, free_port

pytestmark = pytest.mark.integration

LASTFM2K_DIR = Path(os.environ.get("ENCORE_LASTFM2K_DIR", REPO_ROOT.parent / "shared/datasets/hetrec2011-lastfm-2k"))
RUN_SH = REPO_ROOT / "scripts" / "pipeline" / "run.sh"
EXPERIMENT_FILE = REPO_ROOT / "experiments" / "lastfm2k.yaml"
EXPERIMENT = "lastfm2k"  # experiment.name in EXPERIMENT_FILE = the MLflow experiment
MODEL_NAME = "encore-ranker-itest"
KS = (5, 10, 20, 50)
ALL_COMPONENTS = all_components(load_config(EXPERIMENT_FILE))
GENERATORS = generator_names(load_config(EXPERIMENT_FILE))  # every instance, feature-only ones too
KNOWN_USER = "2"  # the first user of Last.fm 2K
KNOWN_ITEM = "289"  # Britney Spears, one of the most played artists
# Fewer trees / epochs than the defaults so CI stays short; every component still runs.
COMMON = (
    "dataset.download=false",
    f"tracking.registered_model_name={MODEL_NAME}",
    "components.bpr.iterations=30",
    "components.bpr128.iterations=30",
    # EASE inverts a dense max_items x max_items Gram matrix: 20 s at 8000 items, < 1 s at 2000.
    "components.ease.max_items=2000",
    "components.ease500.max_items=2000",
    "components.item2item.n_components=64",
)
STRONG = (*COMMON, "components.ranker.iterations=60")
WEAK = (*COMMON, "components.ranker.iterations=5", "components.ranker.learning_rate=0.01")
PIPELINE_TIMEOUT = 300


def _lastfm2k_dir() -> Path:
    if not (LASTFM2K_DIR / "user_artists.dat").is_file():
        pytest.fail(
            f"HetRec 2011 Last.fm 2K not found at {LASTFM2K_DIR}: set ENCORE_LASTFM2K_DIR to the unzipped "
            "hetrec2011-lastfm-2k folder (see docs/data.md, 'Data'); the integration tests never skip real data"
        )
    return LASTFM2K_DIR


@pytest.fixture(scope="module", autouse=True)
def no_aws_credentials(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """No AWS_* variables and a HOME without ~/.aws in this process: reads must go through the proxy."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith("AWS_")]:
            mp.delenv(key)
        mp.setenv("HOME", str(home))
        yield home


def _env(home: Path, **extra: str) -> dict[str, str]:
    """A child's environment: no AWS/MLflow/Encore settings of this machine, plus ``extra``.

    OpenBLAS runs single-threaded (what implicit recommends): on a busy 2-core CI machine its
    threaded Cholesky inverse (EASE) is up to 40x slower than one thread (10 s vs 0.25 s).
    """
    return clean_env(HOME=str(home), ENCORE_PYTHON=sys.executable, OPENBLAS_NUM_THREADS="1", **extra)


def _run_sh(env: dict[str, str], components: tuple[str, ...], overrides: tuple[str, ...],
            timeout: float = PIPELINE_TIMEOUT) -> subprocess.CompletedProcess[str]:
    cmd = [str(RUN_SH), "--experiment", str(EXPERIMENT_FILE), "--components", ",".join(components)]
    for override in overrides:
        cmd += ["--set", override]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


# --------------------------------------------------------------------------- fail fast (no fixture)


def test_pipeline_against_dead_server_fails_fast(no_aws_credentials: Path, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    env = _env(no_aws_credentials, MLFLOW_TRACKING_URI=dead, ENCORE_OUTPUT_DIR=str(tmp_path / "outputs"),
               ENCORE_DATA_DIR=str(_lastfm2k_dir().parent))
    started = time.monotonic()
    result = _run_sh(env, ("prepare",), COMMON, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode != 0, result.stdout[-2000:]
    assert elapsed < 15, f"took {elapsed:.1f} s to give up on a dead server"
    assert "not reachable" in result.stderr, result.stderr[-3000:]
    assert "mlflow_server/start.sh" in result.stderr or "MLFLOW_TRACKING_URI" in result.stderr
    assert dead in result.stderr
    assert not list((tmp_path / "outputs").rglob("summary.json")), "prepare ran although the server is down"


# --------------------------------------------------------------------------- the two pipeline runs


@dataclass
class PipelineRun:
    """One run.sh invocation as the server recorded it."""

    seconds: float
    stdout: str
    parent: Run
    children: dict[str, Run]  # by tag encore.component


@dataclass
class Story:
    strong: PipelineRun
    weak: PipelineRun
    experiment_id: str
    client: MlflowClient
    home: Path


def _parents(client: MlflowClient) -> dict[str, Run]:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        return {}
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    return {r.info.run_id: r for r in runs if "mlflow.parentRunId" not in r.data.tags}


def _pipeline(client: MlflowClient, env: dict[str, str], overrides: tuple[str, ...]) -> PipelineRun:
    before = set(_parents(client))
    started = time.monotonic()
    result = _run_sh(env, ALL_COMPONENTS, overrides)
    seconds = time.monotonic() - started
    if result.returncode != 0:
        pytest.fail(f"run.sh {' '.join(overrides)} failed ({result.returncode}):\n"
                    f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    new = [run for run_id, run in _parents(client).items() if run_id not in before]
    assert len(new) == 1, f"expected one new parent run, got {[r.info.run_id for r in new]}"
    parent = new[0]
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        max_results=1000,
    )
    by_component: dict[str, Run] = {}
    for child in children:
        component = child.data.tags.get("encore.component")
        assert component not in by_component, f"two runs of component {component}"
        by_component[component] = child
    return PipelineRun(seconds, result.stdout + result.stderr, parent, by_component)


@pytest.fixture(scope="module")
def story(mlflow_server: MlflowServer, tmp_path_factory: pytest.TempPathFactory,
          no_aws_credentials: Path) -> Story:
    """The strong run, then the weaker one reusing its output folder (generators are reused)."""
    data_dir = _lastfm2k_dir().parent
    outputs = tmp_path_factory.mktemp("outputs")
    env = _env(no_aws_credentials, MLFLOW_TRACKING_URI=mlflow_server.url, ENCORE_OUTPUT_DIR=str(outputs),
               ENCORE_DATA_DIR=str(data_dir))
    client = MlflowClient(mlflow_server.url)
    strong = _pipeline(client, env, STRONG)
    weak = _pipeline(client, env, WEAK)
    for label, run in (("strong", strong), ("weak", weak)):
        # Per component: its own work / its whole MLflow run (tracking calls included).
        times = {name: (next((v for k, v in child.data.metrics.items() if k.startswith("time_")), 0.0),
                        (child.info.end_time - child.info.start_time) / 1000)
                 for name, child in run.children.items()}
        print(f"{label} pipeline run: {run.seconds:.0f} s; "
              + ", ".join(f"{n} {times[n][0]:.1f}/{times[n][1]:.1f}" for n in ALL_COMPONENTS), file=sys.stderr)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    return Story(strong, weak, experiment.experiment_id, client, no_aws_credentials)


def test_each_run_is_one_parent_with_a_nested_run_per_component(story: Story) -> None:
    assert story.strong.parent.info.run_name != story.weak.parent.info.run_name
    for run in (story.strong, story.weak):
        assert run.parent.info.status == "FINISHED"
        # <experiment> <yyyy-mm-dd hh:mm> <config hash>: the strong and the weak run are told apart
        name = run.parent.info.run_name.split(" ")
        assert (name[0], name[3]) == (EXPERIMENT, run.parent.data.tags["encore.config_hash"][:8]), name
        assert sorted(run.children) == sorted(ALL_COMPONENTS)
        for name, child in run.children.items():
            assert child.info.status == "FINISHED", name
            assert child.info.run_name == name
            assert child.data.tags["mlflow.parentRunId"] == run.parent.info.run_id
            assert child.info.experiment_id == run.parent.info.experiment_id
    # The weaker run reused every generator and prepare; ranker onwards were recomputed.
    reused = {name: child.data.tags["encore.reused"] for name, child in story.weak.children.items()}
    assert {name: reused[name] for name in ("prepare", *GENERATORS)} == dict.fromkeys(("prepare", *GENERATORS),
                                                                                       "true")
    assert {reused[name] for name in ("ranker", "evaluate", "register", "promote")} == {"false"}
    assert {child.data.tags["encore.reused"] for child in story.strong.children.values()} == {"false"}
    assert story.weak.seconds < story.strong.seconds


def test_parent_carries_reproducibility_tags_and_params(story: Story) -> None:
    tags, params = story.strong.parent.data.tags, story.strong.parent.data.params
    commit = tags["encore.git_commit"]
    if (REPO_ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", commit), commit
    else:
        assert commit == "unknown"
    assert re.fullmatch(r"[0-9a-f]{16}", tags["encore.config_hash"])
    assert re.fullmatch(r"[0-9a-f]{16}", tags["encore.split_hash"])
    assert tags["encore.dataset"] == "lastfm2k"
    assert tags["encore.seed"] == "42"
    # One tag per input file, named by its role (interactions = user_artists.dat, ...).
    for role, name in LASTFM2K_FILES.items():
        digest = hashlib.sha256((LASTFM2K_DIR / name).read_bytes()).hexdigest()
        assert tags[f"encore.data_sha256.{role}"] == digest, role
        assert story.strong.children["prepare"].data.tags[f"encore.data_sha256.{role}"] == digest
    assert tags["encore.version.mlflow"] == mlflow.__version__
    assert tags["encore.version.pandas"] == pd.__version__
    for package in ("catboost", "implicit", "scikit-learn", "numpy", "scipy"):
        assert tags[f"encore.version.{package}"] not in ("", "not installed"), package

    assert params["components.als.factors"] == "64"
    assert params["components.bpr.iterations"] == "30"
    assert params["components.ranker.iterations"] == "60"
    assert params["evaluation.primary_metric"] == "ndcg@10"
    assert params["experiment.seed"] == "42"
    assert not [k for k in params if k.startswith(("tracking.", "output_dir", "data_dir"))]
    # A component run logs its own section's params.
    assert story.strong.children["als"].data.params["factors"] == "64"

    weak_tags, weak_params = story.weak.parent.data.tags, story.weak.parent.data.params
    assert weak_params["components.ranker.iterations"] == "5"
    assert weak_params["components.ranker.learning_rate"] == "0.01"
    # Same data and split (so promotion may compare them), different configuration.
    assert weak_tags["encore.split_hash"] == tags["encore.split_hash"]
    assert weak_tags["encore.data_sha256.interactions"] == tags["encore.data_sha256.interactions"]
    assert weak_tags["encore.config_hash"] != tags["encore.config_hash"]


def test_generator_and_ranker_runs_log_every_metric_at_every_k(story: Story) -> None:
    # Every generator run and the ranker run carry their own test metrics under the same keys;
    # evaluate's headline (<model>.ndcg_at_10) has the same values, computed the same way.
    evaluate = story.strong.children["evaluate"].data.metrics
    for name in (*GENERATORS, "ranker"):
        metrics = story.strong.children[name].data.metrics
        for k in KS:
            for metric in RANKING_METRIC_NAMES:
                key = f"{metric}_at_{k}"
                assert key in metrics, f"{name}: {key} missing"
                assert 0.0 <= metrics[key] <= 1.0, f"{name}: {key}={metrics[key]}"
            assert 0.5 <= metrics[f"user_coverage_at_{k}"] <= 1.0, name  # friends: users with friends
        assert evaluate[f"{name}.ndcg_at_10"] == pytest.approx(metrics["ndcg_at_10"]), name
        # Recall grows with k, and a useful model finds something.
        assert [metrics[f"recall_at_{k}"] for k in KS] == sorted(metrics[f"recall_at_{k}"] for k in KS), name
        assert metrics["ndcg_at_10"] > 0.01, name
    # The ranker completes every list from popularity.
    assert {story.strong.children["ranker"].data.metrics[f"user_coverage_at_{k}"] for k in KS} == {1.0}
    assert story.strong.children["ranker"].data.metrics["trees"] == 60
    assert story.weak.children["ranker"].data.metrics["trees"] == 5


def test_evaluate_reports_uplift_with_interval_on_run_and_parent(story: Story) -> None:
    for run in (story.strong, story.weak):
        evaluate = run.children["evaluate"].data.metrics
        parent = run.parent.data.metrics
        for metrics in (evaluate, parent):
            low, high = metrics["uplift_vs_best_generator_ci_low"], metrics["uplift_vs_best_generator_ci_high"]
            assert low < high
            assert low <= metrics["uplift_vs_best_generator"] <= high
            assert 0.0 <= metrics["uplift_vs_best_generator_p_value"] <= 1.0
        for key in ("uplift_vs_best_generator", "uplift_vs_best_generator_ci_low",
                    "uplift_vs_best_generator_ci_high", "ndcg_at_10"):
            assert parent[key] == pytest.approx(evaluate[key]), key
        # <model>.<primary> for every generator, feature model and the ranker (the rest is the
        # comparison_segments.csv artifact); headline = ranker.
        for model in (*GENERATORS, "ranker"):
            assert f"{model}.ndcg_at_10" in parent, f"{model}.ndcg_at_10"
        assert len(parent) <= 50, sorted(parent)
        assert parent["ndcg_at_10"] == pytest.approx(parent["ranker.ndcg_at_10"])
        assert parent["ranker.ndcg_at_10"] == pytest.approx(evaluate["ranker.ndcg_at_10"])
        best = run.children["evaluate"].data.tags["encore.best_generator"]
        assert f"{best}.ndcg_at_10" in parent
        assert parent["uplift_vs_best_generator"] == pytest.approx(
            parent["ranker.ndcg_at_10"] / parent[f"{best}.ndcg_at_10"] - 1, rel=1e-6
        )
    # The 5-tree ranker is the weaker one.
    assert story.weak.parent.data.metrics["ndcg_at_10"] < story.strong.parent.data.metrics["ndcg_at_10"]


def test_artifacts_live_in_s3_behind_the_proxy(story: Story, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    s3 = mlflow_server.s3
    base = f"{s3.prefix}/{story.experiment_id}"
    keys = set(s3.keys(f"{base}/"))

    def run_key(run: Run, path: str) -> str:
        return f"{base}/{run.info.run_id}/artifacts/{path}"

    children = story.strong.children
    for run in (story.strong.parent, *children.values()):
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    expected = {run_key(children["prepare"], "summary.json")}
    for name in GENERATORS:
        expected |= {run_key(children[name], f) for f in ("candidates_train.parquet", "metrics.json",
                                                          "metrics_vs_k.png")}
    expected |= {run_key(children["ranker"], f) for f in ("model.cbm", "recommendations.parquet",
                                                          "feature_importance.png")}
    expected |= {run_key(children["evaluate"], f) for f in ("metrics_vs_k.png", "comparison.csv",
                                                            "significance.json")}
    expected |= {run_key(story.strong.parent, f"evaluation/{f}") for f in ("metrics_vs_k.png", "comparison.md")}
    expected |= {run_key(children["register"], f) for f in ("per_user_metric.parquet", "registered.json")}
    expected |= {run_key(children["promote"], "decision.json")}
    assert not expected - keys, sorted(expected - keys)

    # The registered serving model: an MLflow 3 logged model with its bundle, also in S3.
    version = story.client.get_model_version(MODEL_NAME, "1")
    assert version.source.startswith("models:/m-"), version.source
    model_id = version.source.removeprefix("models:/")
    model_keys = {k.removeprefix(f"{base}/models/{model_id}/artifacts/") for k in keys
                  if k.startswith(f"{base}/models/{model_id}/artifacts/")}
    tables = ("recommendations.parquet", "popular.parquet", "similar_items.parquet", "items.parquet")
    expected_model = {"MLmodel", "pyfunc.py", "requirements.txt", *(f"artifacts/bundle/{t}" for t in tables)}
    assert not expected_model - model_keys, sorted(model_keys)

    # This process has no AWS credentials: the download goes through the server's proxy.
    assert not [k for k in os.environ if k.startswith("AWS_")]
    local = story.client.download_artifacts(children["register"].info.run_id, "per_user_metric.parquet",
                                            str(tmp_path))
    body = s3.client().get_object(Bucket=s3.bucket, Key=run_key(children["register"],
                                                                "per_user_metric.parquet"))["Body"].read()
    assert Path(local).read_bytes() == body
    per_user = pd.read_parquet(local)
    assert list(per_user.columns) == ["user_id", "segment", "value"]
    assert per_user["value"].mean() == pytest.approx(children["register"].data.metrics["ndcg_at_10"])


def test_registry_first_version_champion_second_challenger_rejected(story: Story) -> None:
    client = story.client
    model = client.get_registered_model(MODEL_NAME)
    assert model.aliases == {"champion": "1", "challenger": "2"}
    strong_register, weak_register = story.strong.children["register"], story.weak.children["register"]
    v1, v2 = client.get_model_version(MODEL_NAME, "1"), client.get_model_version(MODEL_NAME, "2")
    assert v1.run_id == strong_register.info.run_id and v2.run_id == weak_register.info.run_id
    assert strong_register.data.tags["encore.registered_version"] == "1"
    assert weak_register.data.tags["encore.registered_version"] == "2"
    with pytest.raises(MlflowException):
        client.get_model_version(MODEL_NAME, "3")

    assert v1.tags["encore.promotion.decision"] == "promoted"
    assert v1.tags["encore.promotion.reason"] == "no champion yet"
    assert v1.tags["encore.promotion.champion_version"] == ""
    assert v1.tags["encore.promotion.forced"] == "false"
    assert story.strong.children["promote"].data.metrics["promoted"] == 1.0
    assert story.strong.children["promote"].data.tags["encore.promotion.decision"] == "promoted"

    strong_ndcg = strong_register.data.metrics["ndcg_at_10"]
    weak_ndcg = weak_register.data.metrics["ndcg_at_10"]
    assert weak_ndcg < strong_ndcg
    assert strong_ndcg == pytest.approx(story.strong.children["evaluate"].data.metrics["ranker.ndcg_at_10"])
    tags = v2.tags
    assert tags["encore.promotion.decision"] == "rejected"
    assert tags["encore.promotion.metric"] == "ndcg_at_10"
    assert tags["encore.promotion.champion_version"] == "1"
    assert float(tags["encore.promotion.candidate_metric"]) == pytest.approx(weak_ndcg)
    assert float(tags["encore.promotion.champion_metric"]) == pytest.approx(strong_ndcg)
    assert float(tags["encore.promotion.difference"]) == pytest.approx(weak_ndcg - strong_ndcg)
    assert "not higher by more than margin 0" in tags["encore.promotion.reason"]
    assert story.weak.children["promote"].data.metrics["promoted"] == 0.0
    assert story.weak.children["promote"].data.tags["encore.promotion.decision"] == "rejected"


def test_challenger_significance_is_a_paired_comparison(story: Story, tmp_path: Path) -> None:
    weak_register = story.client.get_run(story.weak.children["register"].info.run_id)  # tagged by promote
    text = weak_register.data.tags["encore.significance.ndcg_at_10"]
    match = re.fullmatch(
        r"paired over (\d+) users: diff ([+-]\d+\.\d{4}) \(95% CI ([+-]\d+\.\d{4}) \.\. ([+-]\d+\.\d{4})\), "
        r"t-test p(?:=(\S+)| < 1e-4)",  # p-values below 1e-4 read as such
        text,
    )
    assert match, text
    n_users, diff, low, high, p_value = (int(match[1]), float(match[2]), float(match[3]), float(match[4]),
                                         float(match[5] or 0.0))
    per_user = pd.read_parquet(story.client.download_artifacts(weak_register.info.run_id,
                                                               "per_user_metric.parquet", str(tmp_path)))
    assert n_users == len(per_user) > 1000  # every Last.fm 2K test user, paired by raw id
    candidate = weak_register.data.metrics["ndcg_at_10"]
    champion = story.strong.children["register"].data.metrics["ndcg_at_10"]
    assert diff == pytest.approx(candidate - champion, abs=6e-5)
    assert low < diff < high
    assert 0.0 <= p_value <= 1.0
    # promote copies it onto the version, so the registry UI shows it next to the decision.
    assert story.client.get_model_version(MODEL_NAME, "2").tags["encore.promotion.significance"] == text
    # The champion had nothing to be compared with.
    assert "encore.significance.ndcg_at_10" not in story.client.get_run(
        story.strong.children["register"].info.run_id).data.tags
    assert "encore.promotion.significance" not in story.client.get_model_version(MODEL_NAME, "1").tags
    vs_best = json.loads(weak_register.data.tags["encore.significance.vs_best_generator"])
    assert {"p_value", "rel_uplift"} <= set(vs_best)


def test_champion_serves_in_a_fresh_process_without_credentials(story: Story, mlflow_server: MlflowServer) -> None:
    code = f"""
import json, os
assert not [k for k in os.environ if k.startswith("AWS_")], "the consumer must not hold AWS credentials"
import mlflow, pandas as pd
model = mlflow.pyfunc.load_model("models:/{MODEL_NAME}@champion")
users = model.predict(pd.DataFrame({{"user_id": [{KNOWN_USER!r}, "no-such-user"], "k": [10, 10]}}))
items = model.predict(pd.DataFrame({{"item_id": [{KNOWN_ITEM!r}]}}))
print(json.dumps({{"users": users.to_dict("records"), "items": items.to_dict("records")}}))
"""
    # Outside the repository: the models-from-code pyfunc needs neither it nor S3 credentials.
    result = subprocess.run([sys.executable, "-c", code], env=_env(story.home, MLFLOW_TRACKING_URI=mlflow_server.url),
                            capture_output=True, text=True, timeout=180, cwd=story.home)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])

    # What the champion (version 1 = the strong run's ranker) precomputed: register's bundle.
    bundle = RegisterOutput(Path(story.strong.children["register"].data.tags["encore.output_dir"])).bundle
    recs = pd.read_parquet(bundle / "recommendations.parquet")
    expected_user = recs[recs["user_id"] == KNOWN_USER].sort_values("rank")["item_id"].head(10).tolist()
    popular = pd.read_parquet(bundle / "popular.parquet")["item_id"].head(10).tolist()
    similar = pd.read_parquet(bundle / "similar_items.parquet")
    expected_similar = similar[similar["item_id"] == KNOWN_ITEM].sort_values("rank")["similar_item_id"].tolist()

    known = [r for r in out["users"] if r["user_id"] == KNOWN_USER]
    assert [r["rank"] for r in known] == list(range(1, 11))
    assert {r["source"] for r in known} == {"ranker"}
    assert [r["item_id"] for r in known] == expected_user
    unknown = [r for r in out["users"] if r["user_id"] == "no-such-user"]
    assert [r["rank"] for r in unknown] == list(range(1, 11))
    assert {r["source"] for r in unknown} == {"popular"}
    assert [r["item_id"] for r in unknown] == popular
    assert len(out["users"]) == 20

    assert len(expected_similar) >= 10
    assert [r["rank"] for r in out["items"]] == list(range(1, 11))
    assert {r["item_id"] for r in out["items"]} == {KNOWN_ITEM}
    assert {r["source"] for r in out["items"]} == {"similar"}
    assert [r["similar_item_id"] for r in out["items"]] == expected_similar[:10]
    assert KNOWN_ITEM not in [r["similar_item_id"] for r in out["items"]]


def test_compare_cli_lists_both_runs_best_first(story: Story, mlflow_server: MlflowServer) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "encore.components.compare", "--experiment", EXPERIMENT, "--metric", "ndcg_at_10"],
        env=_env(story.home, MLFLOW_TRACKING_URI=mlflow_server.url),
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    strong_id, weak_id = story.strong.parent.info.run_id, story.weak.parent.info.run_id
    assert len(lines) == 3, result.stdout  # header + the two parent runs, no component runs
    assert "ndcg_at_10" in lines[0] and "params.components.ranker.iterations" in lines[0]
    assert lines[1].startswith(strong_id) and lines[2].startswith(weak_id), result.stdout
    # run_id, run_name, ndcg_at_10, ...: the printed metric is each parent run's, to 4 decimals. Run names hold
    # spaces (`<experiment> <date> <time> <hash>`): the value is the first word after the run's name.
    runs = (story.strong.parent, story.weak.parent)
    printed = [float(line.split(run.info.run_name, 1)[1].split()[0]) for line, run in zip(lines[1:], runs, strict=True)]
    assert printed == pytest.approx([story.strong.parent.data.metrics["ndcg_at_10"],
                                     story.weak.parent.data.metrics["ndcg_at_10"]], abs=5e-5)
    assert printed[0] > printed[1]
