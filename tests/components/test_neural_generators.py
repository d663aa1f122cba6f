"""The neural kinds in the pipeline: early stopping on the ranker-target part, the refit for the best
epoch count, never a test event, and the dataset named when sasrec has no timestamps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from encore.outputs import GeneratorOutput
from encore.pipeline.runner import ComponentFailed, output_dir, run_pipeline
from tests.conftest import TINY_SYNTHETIC, make_config
from tests.recommenders.test_runtime_checks import _tabular

TINY_NEURAL = {"epochs": 6, "patience": 2, "factors": 16, "num_threads": 1, "n_similar": 5}
NEURAL = TINY_SYNTHETIC | {
    "experiment": {"name": "tiny_time", "seed": 3},  # as test_tune's Optuna runs: one prepare for both
    "split": {"kind": "time", "target_start": "2020-05-01", "test_start": "2020-07-01"},
    "components": TINY_SYNTHETIC["components"] | {
        "sasrec": {"kind": "sasrec", "max_len": 20} | TINY_NEURAL,
        "twotower": {"kind": "twotower"} | TINY_NEURAL},
}
RUN = ["prepare", "sasrec", "twotower"]


@pytest.fixture(scope="module")
def neural_run(time_split_dir: Path):
    config = make_config(time_split_dir, NEURAL)
    run_pipeline(config, RUN)
    return config


@pytest.mark.parametrize("name", ["sasrec", "twotower"])
def test_the_base_fit_stops_on_the_target_part_and_the_refit_uses_its_best_epoch(neural_run, name: str) -> None:
    out = GeneratorOutput(output_dir(neural_run, name))
    metrics = out.metrics()
    base, train = out.model("base"), out.model("train")
    assert 1 <= metrics["best_epoch"] <= TINY_NEURAL["epochs"]
    assert base.best_epoch_ == metrics["best_epoch"]
    assert train.get_params()["epochs"] == metrics["best_epoch"]
    assert np.isfinite(metrics["ndcg@10"]) and metrics["candidate_recall"] > 0
    assert base.item_factors_.shape == (base.n_items_, TINY_NEURAL["factors"])


def test_sasrec_never_sees_a_test_window_event(neural_run, time_split_dir: Path) -> None:
    """Another test window (test_end cuts it to a few days), the same base and target parts: the
    same early stopping and the same embeddings, to the last bit, for both stages."""
    other = make_config(time_split_dir, NEURAL | {"split": NEURAL["split"] | {"test_end": "2020-07-05"}})
    run_pipeline(other, ["prepare", "sasrec"])
    assert output_dir(other, "prepare") != output_dir(neural_run, "prepare")
    mine, theirs = (GeneratorOutput(output_dir(c, "sasrec")) for c in (neural_run, other))
    for stage in ("base", "train"):
        a, b = mine.model(stage), theirs.model(stage)
        assert a.get_params() == b.get_params()
        np.testing.assert_array_equal(a.item_factors_, b.item_factors_)
        np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_sasrec_on_data_without_timestamps_names_the_dataset(tmp_path: Path) -> None:
    config = make_config(tmp_path, _tabular(tmp_path, sasrec={"kind": "sasrec"}))  # plays without times
    with pytest.raises(ComponentFailed, match=r"components\.sasrec: kind 'sasrec' needs timestamps, which dataset "
                                              r"'\w+' does not have; set components\.sasrec\.enabled: false"):
        run_pipeline(config, ["prepare", "sasrec"])
