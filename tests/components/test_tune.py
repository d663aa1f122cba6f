"""Tuning generator settings on the ranker-target part: the grid, the choice, and its use downstream."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest

from encore.config.experiment import ConfigError, grid_combinations
from encore.data.prepared import PreparedData
from encore.evaluation.evaluator import Evaluator, lists_from_frame
from encore.outputs import GeneratorOutput, TuneOutput
from encore.pipeline.folds import fold_configs
from encore.pipeline.runner import (
    TUNE,
    all_components,
    output_dir,
    parse_components,
    pipeline_components,
    run_pipeline,
    tuned,
)
from tests.conftest import TINY_SYNTHETIC, make_config, ran_pipeline

OFF = {"enabled": False}
KEPT = ("popular", "popular_recent", "ease", "als")
GRID = {"ease": {"l2": [5.0, 300.0, 20000.0]}, "popular_recent": {"recency_half_life_days": [2.0, 60.0]},
        "bpr": {"learning_rate": [0.01, 0.05]}}  # bpr is disabled below: not tuned
TUNED = TINY_SYNTHETIC | {
    "experiment": {"name": "tuned", "seed": 3},
    "split": {"kind": "time", "target_start": "2020-05-01", "test_start": "2020-07-01"},
    "components": TINY_SYNTHETIC["components"] | {
        "ranker": {"iterations": 30, "early_stopping_rounds": 10},
        **{name: OFF for name in ("bpr", "item2item", "itemknn", "friends", "userknn", "als128", "als32",
                                  "bpr128", "ease500", "knncos")}},
    "tuning": {"grid": GRID, "segments": {"popular_recent": "cold"}},
}


def test_grid_combinations_vary_the_first_setting_slowest() -> None:
    assert grid_combinations({"a": [1, 2], "b": ["x", "y", "z"]}) == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"},
        {"a": 2, "b": "x"}, {"a": 2, "b": "y"}, {"a": 2, "b": "z"}]
    assert grid_combinations({"a": [1]}) == [{"a": 1}]


@pytest.mark.parametrize(("tuning", "message"), [
    ({"grid": {"nope": {"l2": [1.0]}}}, r"tuning.grid.nope: no such generator instance"),
    ({"grid": {"ease": {"factors": [8]}}}, r"tuning.grid.ease.factors: not a hyper-parameter of kind 'ease'"),
    ({"grid": {"ease": {"n_candidates": [8]}}}, r"tuning.grid.ease.n_candidates: not a hyper-parameter"),
    ({"grid": {"ease": {"l2": [-1.0]}}}, r"tuning.grid.ease.l2: -1.0 is rejected"),
    ({"grid": {"ease": {"l2": []}}}, r"tuning.grid.ease.l2: give a non-empty list"),
    ({"grid": {"ease": {}}}, r"tuning.grid.ease: no settings to tune"),
    ({"grid": {"ease": {"l2": [1.0, 2.0, 3.0]}}, "max_trials": 2}, r"3 combinations exceed tuning.max_trials"),
    ({"grid": GRID, "segments": {"als": "warm"}}, r"tuning.segments.als: 'als' is not in tuning.grid"),
    ({"grid": GRID, "metric": "ndcg@7"}, r"tuning.metric: 'ndcg@7' must be METRIC@K"),
    ({"grid": GRID, "segment": "cold_items"}, r"tuning.segment"),
    ({"grid": GRID, "typo": 1}, r"tuning.typo"),
])
def test_a_bad_grid_names_the_key(tmp_path: Path, tuning: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, TUNED | {"tuning": tuning})


def test_without_a_grid_nothing_is_tuned(tiny_config) -> None:
    assert TUNE not in pipeline_components(tiny_config) and TUNE not in all_components(tiny_config)
    assert tuned(tiny_config) is tiny_config
    # Asked for by name anyway, it says what to set.
    with pytest.raises(Exception, match=r"component 'tune' failed: tune: tuning.grid is empty"):
        run_pipeline(tiny_config, parse_components(tiny_config, "prepare,tune"))


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory):
    return ran_pipeline(tmp_path_factory, "tuning", TUNED)


def test_each_instance_gets_its_best_trial_on_the_target_part(tuned_run) -> None:
    out = TuneOutput(output_dir(tuned_run, TUNE))
    trials = out.trials()
    assert list(trials["instance"]) == ["ease"] * 3 + ["popular_recent"] * 2  # not the disabled bpr
    assert "bpr" not in out.chosen()
    assert set(trials.loc[trials["instance"] == "popular_recent", "segment"]) == {"cold"}
    assert set(trials.loc[trials["instance"] == "ease", "segment"]) == {"all"}
    for name, rows in trials.groupby("instance"):
        best = rows.loc[rows["ndcg_at_10"].idxmax()]  # idxmax: the first of equals, as tune chooses
        assert bool(best["chosen"]) and rows["chosen"].sum() == 1
        assert out.chosen()[name] == json.loads(best["settings"])
    # The trials' scores are those of different settings, not one list scored five times.
    assert trials.loc[trials["instance"] == "ease", "ndcg_at_10"].nunique() > 1


def test_the_chosen_trial_scores_what_the_generator_itself_proposes_on_target(tuned_run) -> None:
    """The generator's own base stage (fit on base, candidates of the target users) with the chosen
    settings reproduces the chosen trial's score: the pipeline ran with what tune chose."""
    config = tuned(tuned_run)
    chosen = TuneOutput(output_dir(tuned_run, TUNE)).chosen()
    assert config.components.generator("ease").l2 == chosen["ease"]["l2"]
    assert not config.tuning.grid and tuned(config) is config
    prepared = PreparedData(output_dir(config, "prepare"))
    evaluator = Evaluator(prepared, "base", tuple(config.evaluation.ks))
    candidates = GeneratorOutput(output_dir(config, "ease")).candidates("base")
    lists = lists_from_frame(candidates, evaluator.users, max(config.evaluation.ks))
    trials = TuneOutput(output_dir(tuned_run, TUNE)).trials()
    best = trials[(trials["instance"] == "ease") & trials["chosen"]].iloc[0]
    assert evaluator.evaluate(lists)["ndcg@10"] == pytest.approx(best["ndcg_at_10"], abs=1e-9)


def test_the_choice_never_reads_test(tuned_run, tmp_path: Path) -> None:
    """Another test window (test_end cuts it to a few days), the same base and target parts: the
    same choice and the same accuracy scores, to the last digit.

    Diversity is the exception: it is measured with the base part's item features, from which
    users' own (undated) tags on every pair outside base are removed, so it moves with which
    pairs are held out; no tuning metric is a diversity metric.
    """
    other = make_config(tmp_path, TUNED | {"split": TUNED["split"] | {"test_end": "2020-07-05"}})
    run_pipeline(other, ["prepare", TUNE])
    assert output_dir(other, "prepare") != output_dir(tuned_run, "prepare")
    mine, theirs = (TuneOutput(output_dir(c, TUNE)).trials().drop(columns="seconds").filter(regex="^(?!diversity)")
                    for c in (tuned_run, other))
    assert {"ndcg_at_10", "recall_at_50", "chosen"} <= set(mine.columns)
    assert mine.equals(theirs)


def test_mlflow_holds_the_choice_and_the_generator_runs_with_it(tuned_run) -> None:
    mlflow.set_tracking_uri(tuned_run.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[tuned_run.experiment.name], output_format="list")
    by_name = {r.info.run_name: r for r in runs}
    chosen = TuneOutput(output_dir(tuned_run, TUNE)).chosen()
    assert float(by_name[TUNE].data.params["ease.l2"]) == chosen["ease"]["l2"]
    assert float(by_name["ease"].data.params["l2"]) == chosen["ease"]["l2"]
    assert float(by_name["popular_recent"].data.params["recency_half_life_days"]) == \
        chosen["popular_recent"]["recency_half_life_days"]
    assert "ease.target_ndcg_at_10" in by_name[TUNE].data.metrics


def test_a_component_after_tune_without_its_output_says_to_run_tune(tmp_path: Path) -> None:
    config = make_config(tmp_path, TUNED)
    run_pipeline(config, ["prepare"])
    with pytest.raises(Exception, match=r"component 'ease' failed: tuning.grid is set, but 'tune' has no output.*"
                                        r"--components prepare,tune"):
        run_pipeline(config, ["ease"])


def test_every_fold_tunes_on_its_own_target_part(tmp_path: Path) -> None:
    experiment = TUNED | {"split": TUNED["split"] | {"folds": 2, "fold_days": 45},
                          "tuning": {"grid": {"ease": {"l2": [5.0, 20000.0]}}}}
    config = make_config(tmp_path, experiment)
    run_pipeline(config, ["prepare", TUNE])
    folds = [TuneOutput(output_dir(c, TUNE)).trials() for c in fold_configs(config)]
    assert len({tuple(f["ndcg_at_10"]) for f in folds}) == 2  # two target parts, two sets of scores
    assert all(np.isfinite(f["ndcg_at_10"]).all() for f in folds)
