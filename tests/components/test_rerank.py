"""The rerank component on a tiny time-split pipeline: its own output, MLflow run and evaluation
row, exclusions honoured, and a choice made on the ranker-target part only."""

from __future__ import annotations

import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from encore.components import rerank
from encore.config.experiment import EncoreConfig
from encore.data.prepared import PreparedData
from encore.outputs import EvaluateOutput, RankerOutput, RerankOutput
from encore.pipeline.runner import dependencies, output_dir, pipeline_components, run_pipeline
from encore.tracking.runs import experiment_name, tracking_uri
from tests.conftest import TINY_SYNTHETIC, make_config

OFF = {"enabled": False}
EXPERIMENT = TINY_SYNTHETIC | {
    "split": {"kind": "time", "target_start": 0.6, "test_start": 0.8},
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 30},
        # Fewer instances: the component, not the generators, is under test.
        **{name: OFF for name in ("bpr", "itemknn", "friends", "userknn", "als128", "als32", "bpr128", "ease500",
                                  "knncos")},
        "rerank": {"enabled": True, "lambdas": [1.0, 0.7, 0.3], "freshness_boosts": [0.0, 0.5],
                   "exposure_ms": [0, 2]}},
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> EncoreConfig:
    folder = tmp_path_factory.mktemp("rerank")
    # The ranker's own lists are known only after it ran: run up to it, then reject and block
    # items it recommends, then run the rest (rerank reads the file: its key holds the content).
    first = make_config(folder, EXPERIMENT)
    upstream = pipeline_components(first)
    run_pipeline(first, list(upstream[:upstream.index("ranker") + 1]), note="rerank-ranker")
    ranked = RankerOutput(output_dir(first, "ranker")).recommendations()
    prepared = PreparedData(output_dir(first, "prepare"))
    top = ranked[ranked["rank"] <= 3]
    users, items = prepared.users["raw_id"].to_numpy(), prepared.items["raw_id"].to_numpy()
    rejected = pd.DataFrame({"user": users[top["user"].to_numpy()], "item": items[top["item"].to_numpy()]})
    rejected.to_csv(folder / "rejections.csv", index=False)
    blocked = str(items[ranked["item"].value_counts().index[0]])
    experiment = EXPERIMENT | {"components": EXPERIMENT["components"] | {
        "rerank": EXPERIMENT["components"]["rerank"] | {"rejections_file": str(folder / "rejections.csv"),
                                                        "block_list": [blocked]}}}
    config = make_config(folder, experiment)
    run_pipeline(config, note="rerank")
    return config


def test_rerank_has_its_output_run_and_evaluation_row(ran: EncoreConfig) -> None:
    assert "rerank" in dependencies(ran, "evaluate")
    out = RerankOutput(output_dir(ran, "rerank"))
    grid = out.grid()
    assert grid.loc[0, "setting"] == "ranker" and len(grid) == 1 + 3 * 2 * 2
    assert grid["chosen"].sum() == 1
    chosen = out.chosen()
    # The rule: the most diverse setting within 2% of the ranker's ndcg@10 on the target part.
    within = grid[grid["within_loss"]]
    assert (within["ndcg@10"] >= 0.98 * grid.loc[0, "ndcg@10"]).all()
    assert chosen["target"]["diversity@10"] == pytest.approx(within["diversity@10"].max())
    assert (out.path / out.PLOT).stat().st_size > 0
    table = EvaluateOutput(output_dir(ran, "evaluate")).comparison()
    assert {"ranker", "rerank"} <= set(table.index)
    assert "new_item_exposure@10" in table.columns
    mlflow.set_tracking_uri(tracking_uri(ran))
    runs = mlflow.search_runs(experiment_names=[experiment_name(ran)])
    mine = runs[runs["tags.encore.component"] == "rerank"]
    assert len(mine) == 1 and pd.notna(mine["metrics.vs_ranker.rel_ci_low"].iloc[0])


def test_rejected_and_blocked_items_never_appear(ran: EncoreConfig) -> None:
    prepared = PreparedData(output_dir(ran, "prepare"))
    final = RerankOutput(output_dir(ran, "rerank")).recommendations()
    users = pd.Series(np.arange(prepared.n_users), index=prepared.users["raw_id"].to_numpy())
    items = pd.Series(np.arange(prepared.n_items), index=prepared.items["raw_id"].to_numpy())
    rejected = pd.read_csv(ran.components.rerank.rejections_file, dtype=str)
    keys = users[rejected["user"]].to_numpy() * prepared.n_items + items[rejected["item"]].to_numpy()
    assert len(keys) > 0
    assert not np.isin(final["user"].to_numpy() * prepared.n_items + final["item"].to_numpy(), keys).any()
    assert not np.isin(final["item"].to_numpy(), items[ran.components.rerank.block_list].to_numpy()).any()
    ranked = RankerOutput(output_dir(ran, "ranker")).recommendations()
    assert final.groupby("user").size().min() >= 10 and set(final["user"]) == set(ranked["user"])


def test_the_choice_never_reads_test(ran: EncoreConfig, tmp_path: Path) -> None:
    """Another test window (half of it dropped, the rest moved to other users) gives the same
    grid and the same choice."""
    inputs = {name: output_dir(ran, name) for name in rerank.DEPENDS_ON(ran)}
    other = tmp_path / "prepare"
    shutil.copytree(inputs["prepare"], other)
    test = pd.read_parquet(other / "test.parquet")
    test = test.iloc[: len(test) // 2].assign(user=lambda f: f["user"].to_numpy()[::-1])
    test.to_parquet(other / "test.parquet")

    def choice(prepare: Path) -> pd.DataFrame:
        prepared = PreparedData(prepare)
        here = inputs | {"prepare": prepare}
        blocked, rejected = rerank.exclusions(ran, prepared)
        lists = rerank.stage_lists(ran, here, prepared, "base", rerank.target_ranked(ran, here, prepared, tmp_path),
                                   prepared.eval_users("base"))
        side = rerank.item_side(ran, here, prepared, "base")
        return rerank.tradeoff(ran, prepared, side, lists, blocked=blocked, rejected=rejected)[0]

    assert not PreparedData(other).part("test").equals(PreparedData(inputs["prepare"]).part("test"))
    pd.testing.assert_frame_equal(choice(inputs["prepare"]), choice(other))
    pd.testing.assert_frame_equal(choice(other), RerankOutput(output_dir(ran, "rerank")).grid(), check_dtype=False)
