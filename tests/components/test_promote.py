"""Registry and promotion on a real MLflow store filled by a tiny pipeline: the version's
description, metric tags and parent-run link; re-promoting the champion is a no-op; a dry run
acts on nothing; a decision is never overwritten; a version of a killed run is refused; and the
README's pyfunc snippet runs exactly as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pandas as pd
import pytest
from mlflow import MlflowClient

from encore.components import promote as promote_cli
from encore.tracking.model_registry import CHAMPION, register_run_model
from encore.tracking.runs import KILLED_RUN_TAG
from tests.conftest import REPO_ROOT, TinyRegistry


@pytest.fixture(scope="module")
def store(tiny_registry: TinyRegistry) -> TinyRegistry:
    return tiny_registry


def promote_main(store: TinyRegistry, *args: str) -> int:
    return promote_cli.main(["--model-name", store.name, "--tracking-uri", store.uri, *args])


def promotion_tags(client: MlflowClient, name: str, version: str) -> dict[str, str]:
    return {k: v for k, v in client.get_model_version(name, version).tags.items() if k.startswith("encore.promotion")}


def test_version_carries_description_metric_tags_and_parent_run_link(store: TinyRegistry) -> None:
    client = MlflowClient(store.uri)
    version = client.get_model_version(store.name, "1")
    register_run = client.get_run(version.run_id)
    parent_id = register_run.data.tags["mlflow.parentRunId"]
    parent = client.get_run(parent_id)
    assert version.run_link == f"#/experiments/{parent.info.experiment_id}/runs/{parent_id}"
    assert version.tags["encore.parent_run_id"] == parent_id
    ranker = store.evaluate.comparison().loc["ranker"]
    assert float(version.tags["encore.metric.ndcg_at_10"]) == pytest.approx(ranker["ndcg@10"], rel=1e-5)
    assert float(version.tags["encore.metric.recall_at_10"]) == pytest.approx(ranker["recall@10"], rel=1e-5)
    vs = store.evaluate.significance()["vs_best_generator"]
    assert version.tags["encore.uplift_vs_best_generator"].startswith(f"{100 * vs['rel_uplift']:+.1f}% (95% CI ")
    assert version.tags["encore.data_digest"] == f"config:{register_run.data.tags['encore.dataset_hash']}"
    description = version.description
    assert description.startswith("**tiny**") and parent.info.run_name in description
    assert f"| all | {vs['n_users']} | {ranker['ndcg@10']:.4f} | als " in description
    assert f"{100 * vs['rel_ci_low']:+.1f}% .. {100 * vs['rel_ci_high']:+.1f}%" in description


def test_promoting_the_champion_again_is_a_no_op(store: TinyRegistry, capsys: pytest.CaptureFixture) -> None:
    client = MlflowClient(store.uri)
    before = promotion_tags(client, store.name, "1")
    assert before["encore.promotion.decision"] == "promoted"
    assert promote_main(store, "--version", "1") == 0
    out = capsys.readouterr().out
    assert "version 1: UNCHANGED - version 1 is already the champion; nothing to do" in out
    assert promotion_tags(client, store.name, "1") == before
    assert str(client.get_model_version_by_alias(store.name, CHAMPION).version) == "1"


def test_dry_run_shows_the_comparison_and_changes_nothing(store: TinyRegistry, capsys: pytest.CaptureFixture) -> None:
    client = MlflowClient(store.uri)
    version = register_run_model(store.run_id, store.name, client=client)  # same run: equal metric
    assert promote_main(store, "--dry-run") == promote_cli.EXIT_NOT_PROMOTED
    out = capsys.readouterr().out
    assert f"version {version.version}: would be REJECTED - ndcg_at_10" in out
    assert re.search(r"difference  \+0 \(\+0\.00%\), margin 0", out), out
    assert "significance paired over " in out and "diff +0.0000" in out  # the paired test, computed here
    assert promotion_tags(client, store.name, version.version) == {}
    assert promote_main(store, "--version", str(version.version), "--dry-run", "--force") == 0
    assert "would be PROMOTED - forced promotion" in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(store.name, CHAMPION).version) == "1"
    assert promotion_tags(client, store.name, version.version) == {}


def test_a_decision_is_never_overwritten(store: TinyRegistry) -> None:
    client = MlflowClient(store.uri)
    version = register_run_model(store.run_id, store.name, client=client).version
    champion_tags = promotion_tags(client, store.name, "1")
    assert promote_main(store, "--version", str(version)) == promote_cli.EXIT_NOT_PROMOTED
    first = promotion_tags(client, store.name, version)
    assert first["encore.promotion.decision"] == "rejected"
    assert promote_main(store, "--version", str(version)) == promote_cli.EXIT_NOT_PROMOTED
    assert promote_main(store, "--version", str(version), "--force") == 0
    after = promotion_tags(client, store.name, version)
    assert {k: after[k] for k in first} == first  # the first decision is still there, unchanged
    assert after["encore.promotion.2.decision"] == "rejected"
    assert after["encore.promotion.3.decision"] == "promoted" and after["encore.promotion.3.forced"] == "true"
    assert promotion_tags(client, store.name, "1") == champion_tags  # the old champion is not written to
    assert promote_main(store, "--version", "1", "--force") == 0  # back, for the other tests
    assert "encore.promotion.2.decision" in promotion_tags(client, store.name, "1")


def test_a_version_of_a_killed_run_is_refused(store: TinyRegistry, capsys: pytest.CaptureFixture) -> None:
    client = MlflowClient(store.uri)
    version = register_run_model(store.run_id, store.name, client=client).version
    client.set_model_version_tag(store.name, version, KILLED_RUN_TAG, store.run_id)
    assert promote_main(store, "--version", str(version), "--force") == promote_cli.EXIT_NOT_PROMOTED
    err = capsys.readouterr().err.strip()
    assert err == (f"refused: {store.name} version {version} was registered by run {store.run_id}, which was "
                   f"killed before it finished (tag {KILLED_RUN_TAG}); it cannot be promoted, register a "
                   "finished run")
    assert promotion_tags(client, store.name, version) == {}


def test_recommendations_carry_raw_ids_and_names(store: TinyRegistry) -> None:
    recs = store.ranker.recommendations()
    items = pd.read_parquet(store.prepare / "items.parquet")
    assert recs["item_id"].tolist() == items["raw_id"].astype(str).to_numpy()[recs["item"]].tolist()
    assert recs["name"].tolist() == items["name"].to_numpy()[recs["item"]].tolist()
    assert recs["name"].str.startswith("artist_").all()


def readme_snippet() -> str:
    """The Python block of README.md that loads the champion."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)
    found = [b for b in blocks if "models:/encore-ranker@champion" in b]
    assert len(found) == 1, "README.md must hold one python block loading models:/encore-ranker@champion"
    return found[0]


def test_readme_pyfunc_snippet_runs_as_written(store: TinyRegistry) -> None:
    # A folder laid out as a checkout after `make run`: mlruns/mlflow.db is the embedded store.
    checkout = store.tmp / "checkout"
    (checkout / "mlruns").mkdir(parents=True)
    (checkout / "mlruns/mlflow.db").symlink_to(store.tmp / "mlflow.db")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", readme_snippet()], cwd=checkout, env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "new-user" in done.stdout and "popular" in done.stdout, done.stdout
    assert " name " in done.stdout and "artist_" in done.stdout  # names beside the ids
    assert sorted(p.name for p in checkout.iterdir()) == ["mlruns"]  # no stray ./mlflow.db
