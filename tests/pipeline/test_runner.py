"""The whole pipeline on tiny synthetic data: MLflow layout, reuse, atomic outputs, CLI errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from encore.config.experiment import EncoreConfig
from encore.evaluation.metric_names import RANKING_METRIC_NAMES
from encore.pipeline import runner
from encore.pipeline.runner import generator_names, output_dir, pipeline_components, run_pipeline
from encore.tracking.runs import experiment_name, tracking_uri
from tests.conftest import REPO_ROOT

KS = (5, 10, 20, 50)


def runs_of(config: EncoreConfig) -> pd.DataFrame:
    mlflow.set_tracking_uri(tracking_uri(config))
    return mlflow.search_runs(experiment_names=[experiment_name(config)])


def test_pipeline_logs_one_parent_with_nested_component_runs(tiny_config: EncoreConfig) -> None:
    results = run_pipeline(tiny_config)
    assert set(results) == set(pipeline_components(tiny_config))
    runs = runs_of(tiny_config)
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1
    parent_id = parents["run_id"].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent_id]
    assert sorted(children["tags.encore.component"]) == sorted(pipeline_components(tiny_config))
    # Each computed component's CPU seconds (all threads) beside its wall time.
    assert (children["metrics.cpu_run_seconds"] > 0).all() and (children["metrics.time_run_seconds"] > 0).all()

    parent = parents.iloc[0]
    for tag in ("git_commit", "config_hash", "split_hash", "version.implicit", "version.catboost"):
        assert parent[f"tags.encore.{tag}"], tag
    assert parent["params.components.als.factors"] == "64"
    assert parent["metrics.ndcg_at_10"] == pytest.approx(results["evaluate"].metrics["ranker.ndcg@10"])
    assert "metrics.uplift_vs_best_generator_ci_low" in parents.columns
    # <experiment> <yyyy-mm-dd hh:mm> <config hash>; a headline, not every model x segment x metric x k
    name = parent["tags.mlflow.runName"]
    assert re.fullmatch(rf"tiny \d{{4}}-\d\d-\d\d \d\d:\d\d {tiny_config.fingerprint()[:8]}", name), name
    client = mlflow.MlflowClient()
    headline = client.get_run(parent_id).data.metrics
    assert 20 <= len(headline) <= 50, sorted(headline)
    assert {f"{model}.ndcg_at_10" for model in (*generator_names(tiny_config), "ranker")} <= set(headline)
    assert headline["best_generator.ndcg_at_10"] == headline[f"{parent['tags.encore.best_generator']}.ndcg_at_10"]
    assert {"uplift_vs_best_generator.warm_p_value", "ranker.warm.ndcg_at_10"} <= set(headline)
    assert "als.warm.recall_at_50" not in headline  # in evaluate's comparison_segments.csv
    everything = tiny_config.model_copy(update={"tracking": tiny_config.tracking.model_copy(
        update={"log_all_metrics": True})})
    assert everything.fingerprint() == tiny_config.fingerprint()  # a logging choice, in no reuse key
    run_pipeline(everything, ["evaluate"], force=["evaluate"])
    latest = runs_of(tiny_config).sort_values("start_time").iloc[-1]
    assert latest["metrics.als.warm.recall_at_50"] >= 0 and latest["metrics.ranker.novelty_at_5"] > 0
    # Every component in its own colour, the same one in every pipeline run.
    colors = children.set_index("tags.encore.component")["tags.mlflow.runColor"]
    assert colors.notna().all() and colors.nunique() == len(colors)

    # The ranker's run carries its test metrics under the generators' keys: comparable in the UI.
    ranker = children[children["tags.encore.component"] == "ranker"].iloc[0]
    assert ranker["metrics.ndcg_at_10"] == pytest.approx(headline["ranker.ndcg_at_10"])
    for _, child in children[children["tags.encore.component"].isin([*generator_names(tiny_config), "ranker"])
                             ].iterrows():
        for metric in RANKING_METRIC_NAMES:
            for k in KS:
                assert pd.notna(child[f"metrics.{metric}_at_{k}"])
        if child["tags.encore.component"] == "ranker":
            continue
        assert pd.notna(child["metrics.candidate_recall"])
        artifacts = {a.path for a in client.list_artifacts(child["run_id"])}
        assert {"candidates_train.parquet", "metrics_vs_k.png", "metrics.json"} <= artifacts


def test_second_run_reuses_every_output(tiny_config: EncoreConfig) -> None:
    first = run_pipeline(tiny_config, ["prepare", "popular", "als"])
    second = run_pipeline(tiny_config, ["prepare", "popular", "als"])
    assert first["als"].metrics["ndcg@10"] == second["als"].metrics["ndcg@10"]
    runs = runs_of(tiny_config)
    latest_parent = runs[runs["tags.mlflow.parentRunId"].isna()]["run_id"].iloc[0]
    latest = runs[runs["tags.mlflow.parentRunId"] == latest_parent]
    assert set(latest["tags.encore.reused"]) == {"true"}
    parents = runs[runs["tags.mlflow.parentRunId"].isna()].sort_values("start_time")
    assert list(parents["tags.encore.all_reused"].fillna("")) == ["", "true"]
    assert parents["tags.mlflow.runName"].iloc[1].endswith(" (all reused)")
    assert parents["tags.mlflow.runColor"].nunique() == 2  # consecutive runs never share a colour


def test_same_seed_gives_same_metrics_in_a_fresh_output_folder(tmp_path: Path, tiny_config: EncoreConfig) -> None:
    first = run_pipeline(tiny_config, ["prepare", "bpr", "item2item"])
    again = tiny_config.model_copy(update={"output_dir": tmp_path / "elsewhere"})
    second = run_pipeline(again, ["prepare", "bpr", "item2item"])
    for name in ("bpr", "item2item"):
        assert first[name].metrics["ndcg@10"] == second[name].metrics["ndcg@10"]


def test_a_failing_component_leaves_no_output_and_is_named(tiny_config: EncoreConfig, monkeypatch) -> None:
    run_pipeline(tiny_config, ["prepare"])

    def explode(config, ctx):
        (ctx.output / "partial.parquet").write_text("half")
        raise RuntimeError("boom")

    monkeypatch.setattr(runner.component_module(tiny_config, "als"), "run", explode)
    with pytest.raises(runner.ComponentFailed, match="component 'als' failed: boom"):
        run_pipeline(tiny_config, ["prepare", "als"])
    out = output_dir(tiny_config, "als")
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".als")]


def test_component_without_its_inputs_says_what_to_run(tiny_config: EncoreConfig) -> None:
    with pytest.raises(runner.ComponentFailed, match="run it first"):
        run_pipeline(tiny_config, ["als"])


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(REPO_ROOT / "scripts/pipeline/run.sh"), *args], capture_output=True, text=True,
                          check=False, env=env)


def test_run_sh_help_and_unknown_component() -> None:
    assert "--components" in cli("--help").stdout
    done = cli("--components", "prepare,nonsense")
    assert done.returncode == 2
    assert "unknown component(s) nonsense" in done.stderr


def test_bad_config_exits_non_zero_naming_the_key() -> None:
    done = cli("--components", "prepare", "--set", "components.als.factors=-1")
    assert done.returncode == 2
    assert "components.als.factors" in done.stderr


def test_every_component_runs_alone_as_a_module(tiny_config: EncoreConfig, tmp_path: Path) -> None:
    fixed = {*runner.FIRST, *runner.LAST, *runner.ON_DEMAND}
    assert fixed <= {p.stem for p in (REPO_ROOT / "scripts/components").glob("*.py")}
    for module in ("encore.components.prepare", runner.GENERATOR_MODULE):
        done = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True,
                              text=True, check=False, cwd=tmp_path)
        assert done.returncode == 0 and "--experiment" in done.stdout


def test_register_then_promote_only_a_better_model(tiny_config: EncoreConfig) -> None:
    components = [*pipeline_components(tiny_config), "register", "promote"]
    first = run_pipeline(tiny_config, components)
    assert first["promote"].tags["encore.promotion.decision"] == "promoted"
    second = run_pipeline(tiny_config, components)  # same data and seed: equal, so not better
    assert second["promote"].tags["encore.promotion.decision"] == "rejected"

    client = mlflow.MlflowClient()
    name = tiny_config.tracking.registered_model_name
    model = client.get_registered_model(name)
    assert {k: str(v) for k, v in model.aliases.items()} == {"champion": "1", "challenger": "2"}
    version = client.get_model_version(name, "2")
    assert version.tags["encore.promotion.decision"] == "rejected"
    significance = client.get_run(version.run_id).data.tags["encore.significance.ndcg_at_10"]
    assert significance.startswith("paired over") and "diff +0.0000" in significance

    champion = mlflow.pyfunc.load_model(f"models:/{name}@champion")
    known = pd.read_parquet(output_dir(tiny_config, "prepare") / "users.parquet")["raw_id"].iloc[0]
    out = champion.predict(pd.DataFrame({"user_id": [known, "nobody"], "k": [5, 5]}))
    assert len(out) == 10
    assert set(out[out["user_id"] == "nobody"]["source"]) == {"popular"}
    assert set(out[out["user_id"] == known]["source"]) == {"ranker"}
