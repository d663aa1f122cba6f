"""Tuning generator settings on the ranker-target part: the grid, the choice, and its use downstream."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml

from encore.config.experiment import ConfigError, grid_combinations, with_settings
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


# --------------------------------------------------------------------------------------- Optuna
OPTUNA_SPACE = {"ease": {"l2": {"low": 1.0, "high": 30000.0, "log": True}},
                "sasrec": {"learning_rate": {"low": 1e-6, "high": 0.05, "log": True}, "dropout": [0.0, 0.3]}}
OPTUNA = TUNED | {
    "experiment": {"name": "tiny_time", "seed": 3},  # as test_neural_generators': one prepare for both
    "components": TUNED["components"] | {"sasrec": {"kind": "sasrec", "epochs": 4, "patience": 2, "factors": 16,
                                                    "max_len": 20, "num_threads": 1}},
    "tuning": {"search": "optuna", "grid": OPTUNA_SPACE, "trials": 5},
}


@pytest.fixture(scope="module")
def optuna_run(time_split_dir: Path):
    config = make_config(time_split_dir, OPTUNA)
    run_pipeline(config, ["prepare", TUNE])
    return config


def test_optuna_runs_the_trial_budget_and_chooses_the_best_complete_trial(optuna_run) -> None:
    out = TuneOutput(output_dir(optuna_run, TUNE))
    trials = out.trials()
    assert list(trials["instance"]) == ["ease"] * 5 + ["sasrec"] * 5
    ease = trials[trials["instance"] == "ease"]
    l2 = [json.loads(s)["l2"] for s in ease["settings"]]
    assert all(1.0 <= v <= 30000.0 for v in l2) and len(set(l2)) == 5  # sampled from the range
    for name, rows in trials.groupby("instance"):
        complete = rows[rows["state"] == "complete"]
        best = complete.loc[complete["ndcg_at_10"].idxmax()]
        assert bool(best["chosen"]) and rows["chosen"].sum() == 1
        assert out.chosen()[name] == json.loads(best["settings"])
    # sasrec reports its target score every epoch and stops early on it.
    sasrec = trials[(trials["instance"] == "sasrec") & (trials["state"] == "complete")]
    assert sasrec["best_epoch"].between(1, 4).all()
    assert set(trials["state"]) <= {"complete", "pruned"}
    assert trials.loc[trials["state"] == "pruned", "ndcg_at_10"].isna().all()
    # The experiment-file fragment holds the same choice and loads as an experiment's components.
    fragment = yaml.safe_load((out.path / out.FRAGMENT).read_text())
    assert fragment == {"components": out.chosen()}
    rerun = with_settings(optuna_run, fragment["components"])
    assert rerun.components.generator("ease").l2 == out.chosen()["ease"]["l2"]


def test_optuna_prunes_hopeless_trials_on_their_epoch_scores(optuna_run) -> None:
    """learning_rate down to 1e-6 leaves a trial's target score flat at its first epochs' level: the
    median pruner stops such trials once two trials have completed."""
    trials = TuneOutput(output_dir(optuna_run, TUNE)).trials()
    sasrec = trials[trials["instance"] == "sasrec"]
    assert (sasrec["state"] == "pruned").any(), sasrec[["settings", "state", "ndcg_at_10"]]
    assert (sasrec["state"] == "complete").sum() >= 2


def test_every_optuna_trial_is_a_nested_run_of_the_tune_run(optuna_run) -> None:
    mlflow.set_tracking_uri(optuna_run.tracking.tracking_uri)
    runs = mlflow.search_runs(experiment_names=[optuna_run.experiment.name], output_format="list")
    tune_run = next(r for r in runs if r.info.run_name == TUNE
                    and r.data.tags["encore.output_dir"] == str(output_dir(optuna_run, TUNE)))
    nested = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == tune_run.info.run_id]
    trials = TuneOutput(output_dir(optuna_run, TUNE)).trials()
    assert len(nested) == len(trials)
    by_trial = {(r.data.tags["encore.tune.instance"], int(r.data.tags["encore.tune.trial"])): r for r in nested}
    for row in trials.itertuples():
        run = by_trial[(row.instance, row.trial)]
        settings = json.loads(row.settings)
        assert {k: float(v) for k, v in run.data.params.items()} == \
            {k: float(v) for k, v in settings.items()}
        if row.state == "complete":
            assert run.data.metrics["target_ndcg_at_10"] == pytest.approx(row.ndcg_at_10)
        else:
            assert run.data.tags["encore.tune.state"] == "pruned"
    assert tune_run.data.params["search"] == "optuna"
    assert tune_run.data.metrics["trials"] == len(trials)


def test_optuna_never_reads_test_and_respects_the_time_budget(optuna_run, time_split_dir: Path) -> None:
    """Another test window: the same ease trials, to the last digit. A time budget shorter than one
    trial: one trial per instance (Optuna starts no trial after it)."""
    ease_only = {"grid": {"ease": OPTUNA_SPACE["ease"]}}
    other = make_config(time_split_dir, OPTUNA | {"split": OPTUNA["split"] | {"test_end": "2020-07-05"},
                                            "tuning": OPTUNA["tuning"] | ease_only})
    run_pipeline(other, ["prepare", TUNE])
    mine = TuneOutput(output_dir(optuna_run, TUNE)).trials()
    theirs = TuneOutput(output_dir(other, TUNE)).trials()
    columns = ["instance", "trial", "settings", "ndcg_at_10", "recall_at_50", "chosen"]
    assert mine[mine["instance"] == "ease"][columns].reset_index(drop=True).equals(theirs[columns])

    timed = make_config(time_split_dir, OPTUNA | {"split": other.split.model_dump(mode="json"),  # prepare reused
                                            "tuning": OPTUNA["tuning"] | {"timeout_seconds": 0.001}})
    run_pipeline(timed, ["prepare", TUNE])
    assert list(TuneOutput(output_dir(timed, TUNE)).trials()["instance"]) == ["ease", "sasrec"]


@pytest.mark.parametrize(("tuning", "message"), [
    ({"grid": {"ease": {"l2": {"low": 1.0, "high": 10.0}}}}, r"tuning.grid.ease.l2: a range \{low, high\} needs "
                                                             r"tuning.search: optuna"),
    ({"search": "optuna", "grid": {"ease": {"l2": {"low": 10.0, "high": 1.0}}}}, r"low \(10.0\) must be below"),
    ({"search": "optuna", "grid": {"ease": {"l2": {"low": -1.0, "high": 10.0}}}}, r"tuning.grid.ease.l2: -1.0 is "
                                                                                   r"rejected"),
    ({"search": "random", "grid": GRID}, r"tuning.search"),
    ({"grid": GRID, "searches": {"ease": "optuna", "als": "optuna"}}, r"tuning.searches.als: 'als' is not in "
                                                                     r"tuning.grid"),
    ({"grid": {"ease": {"l2": {"low": 1.0, "high": 10.0}}}, "searches": {"ease": "grid"}, "search": "optuna"},
     r"tuning.grid.ease.l2: a range \{low, high\} needs tuning.search: optuna \(or tuning.searches.ease: optuna\)"),
])
def test_a_bad_search_space_names_the_key(tmp_path: Path, tuning: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        make_config(tmp_path, TUNED | {"tuning": tuning})


def test_optuna_fits_each_point_of_a_list_space_once(optuna_run, time_split_dir: Path) -> None:
    """On a space of lists the search is without replacement: a proposal already scored moves to
    the nearest unscored point, so each of the two points is fitted once, no trial is a repeat, and
    the search ends once both are scored, well before 5 fits."""
    discrete = make_config(time_split_dir, OPTUNA | {"tuning": OPTUNA["tuning"] | {
        "grid": {"ease": {"l2": [100.0, 1000.0]}}}})
    run_pipeline(discrete, ["prepare", TUNE])  # prepare reused from optuna_run
    trials = TuneOutput(output_dir(discrete, TUNE)).trials()
    assert sorted(json.loads(s)["l2"] for s in trials["settings"]) == [100.0, 1000.0]
    assert (trials["state"] == "complete").all() and trials["chosen"].sum() == 1


def test_searches_sets_the_search_per_instance(optuna_run, time_split_dir: Path) -> None:
    """``searches: {sasrec: optuna}``: EASE's list is searched as a grid — every point, in grid order,
    beyond the trial budget — and sasrec's range by Optuna within it. Without ``searches`` the
    tuning section dumps as before it existed (existing outputs keep their reuse keys)."""
    mixed = make_config(time_split_dir, OPTUNA | {"tuning": {
        "grid": {"ease": {"l2": [5.0, 300.0, 20000.0]}, "sasrec": OPTUNA_SPACE["sasrec"]},
        "searches": {"sasrec": "optuna"}, "trials": 2}})
    run_pipeline(mixed, ["prepare", TUNE])  # prepare reused from optuna_run
    trials = TuneOutput(output_dir(mixed, TUNE)).trials()
    ease, sasrec = trials[trials["instance"] == "ease"], trials[trials["instance"] == "sasrec"]
    assert [json.loads(s)["l2"] for s in ease["settings"]] == [5.0, 300.0, 20000.0]
    assert len(sasrec) == 2
    assert mixed.tuning.search_of("ease") == "grid" and mixed.tuning.search_of("sasrec") == "optuna"
    assert "searches" not in optuna_run.tuning.model_dump() and "searches" in mixed.tuning.model_dump()
