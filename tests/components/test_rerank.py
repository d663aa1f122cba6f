"""The rerank component on a tiny time-split pipeline: its own output, MLflow run and evaluation
row, exclusions honoured, and a choice made on the ranker-target part only — with ``choose_on:
heldout``, on target users the scoring model never trained on."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from encore.components import rerank
from encore.config.experiment import ConfigError, EncoreConfig, with_settings
from encore.data.prepared import PreparedData
from encore.outputs import EvaluateOutput, RankerOutput, RegisterOutput, RerankOutput
from encore.pipeline.reuse_keys import fingerprint
from encore.pipeline.runner import dependencies, output_dir, pipeline_components, run_pipeline
from encore.ranking import stage
from encore.reranking.steps import Lists, Settings, settings_grid
from encore.tracking.runs import experiment_name, tracking_uri


@pytest.fixture
def run(reranked_run: EncoreConfig) -> EncoreConfig:
    return reranked_run


@pytest.fixture
def heldout_run(reranked_run: EncoreConfig) -> EncoreConfig:
    """The same pipeline choosing on held-out target users, cross-fitted: every target user in one
    of 5 slices (policy_fraction 0.2) ranked by a trial ranker trained without it (prepare and the
    generators are reused by fingerprint; the ranker and rerank run again)."""
    config = with_settings(reranked_run, {"rerank": {"choose_on": "heldout", "heldout_slices": 5}})
    if not (output_dir(config, "rerank") / RerankOutput.CHOSEN).exists():
        run_pipeline(config, list(pipeline_components(config)), note="rerank-heldout")
    return config


def test_rerank_has_its_output_run_and_evaluation_row(run: EncoreConfig) -> None:
    assert "rerank" in dependencies(run, "evaluate")
    out = RerankOutput(output_dir(run, "rerank"))
    grid = out.grid()
    # The ranker's lists, 2 x 2 x 2 x 2 x 2 settings, the content generator's lists.
    assert grid.loc[0, "setting"] == "ranker" and len(grid) == 1 + 2**5 + 1
    assert grid["setting"].iloc[-1] == "content" and not grid["chosen"].iloc[-1]
    assert grid["chosen"].sum() == 1
    chosen = out.chosen()
    # The rule: within 2% of the ranker's ndcg@10 on the target part (and at least the content
    # generator's cold-item ndcg@10 when a setting is), the highest coverage + diversity, scaled.
    within = grid[grid["within_loss"]]
    assert (within["ndcg@10"] >= 0.98 * grid.loc[0, "ndcg@10"]).all()
    assert chosen["objective"] == ["catalog_coverage@10", "diversity@10"]
    assert grid.loc[grid["chosen"], "rule_score"].item() == pytest.approx(within["rule_score"].max())
    cold = "cold_items.ndcg@10"
    if chosen.get("cold_items_matched"):
        assert (within[cold] >= chosen["target_content"][cold]).all()
    assert (out.path / out.PLOT).stat().st_size > 0
    table = EvaluateOutput(output_dir(run, "evaluate")).comparison()
    assert {"ranker", "rerank"} <= set(table.index)
    assert "new_item_exposure@10" in table.columns
    mlflow.set_tracking_uri(tracking_uri(run))
    runs = mlflow.search_runs(experiment_names=[experiment_name(run)])
    mine = runs[runs["tags.encore.component"] == "rerank"]
    assert len(mine) == 1 and pd.notna(mine["metrics.vs_ranker.rel_ci_low"].iloc[0])
    # What is registered is what is served: the re-ranked lists' per-user values.
    registered = pd.read_parquet(RegisterOutput(output_dir(run, "register")).path / RegisterOutput.PER_USER)
    evaluated = EvaluateOutput(output_dir(run, "evaluate")).per_user()
    np.testing.assert_allclose(registered["value"].to_numpy(), evaluated["rerank"].to_numpy())


def test_rejected_and_blocked_items_never_appear(run: EncoreConfig) -> None:
    prepared = PreparedData(output_dir(run, "prepare"))
    final = RerankOutput(output_dir(run, "rerank")).recommendations()
    users = pd.Series(np.arange(prepared.n_users), index=prepared.users["raw_id"].to_numpy())
    items = pd.Series(np.arange(prepared.n_items), index=prepared.items["raw_id"].to_numpy())
    rejected = pd.read_csv(run.components.rerank.rejections_file, dtype=str)
    keys = users[rejected["user"]].to_numpy() * prepared.n_items + items[rejected["item"]].to_numpy()
    assert len(keys) > 0
    assert not np.isin(final["user"].to_numpy() * prepared.n_items + final["item"].to_numpy(), keys).any()
    assert not np.isin(final["item"].to_numpy(), items[run.components.rerank.block_list].to_numpy()).any()
    ranked = RankerOutput(output_dir(run, "ranker")).recommendations()
    assert final.groupby("user").size().min() >= 10 and set(final["user"]) == set(ranked["user"])


def test_the_exposure_cap_and_the_fill_hold_over_every_users_top_k(run: EncoreConfig) -> None:
    out = RerankOutput(output_dir(run, "rerank"))
    final = out.recommendations()
    settings = out.serving()["settings"]
    users = final["user"].nunique()
    top = final[final["rank"] <= settings["exposure_k"]]
    # The floor (after the cap) may lift new items over it; every other item is capped.
    new = np.nan_to_num(out.item_side()["age_days"], nan=np.inf) < settings["new_days"]
    top = top[~new[top["item"].to_numpy()]]
    assert settings["exposure_cap"] == 0.1
    assert top["item"].value_counts().max() <= int(np.ceil(0.1 * users))
    # It bound: the ranker's own top-k exceeds it, and the refusals are recorded for the service.
    ranked = RankerOutput(output_dir(run, "ranker")).recommendations()
    assert ranked[ranked["rank"] <= settings["exposure_k"]]["item"].value_counts().max() > np.ceil(0.1 * users)
    assert len(out.serving()["capped"]) > 0
    # The fill gave places to items in nobody's top k: each promoted item is in one list's top k.
    promoted = np.asarray(out.serving()["promoted"], dtype=np.int64)
    assert settings["coverage_slots"] == 2 and settings["coverage_cost"] == "chance" and len(promoted) > 0
    prepared = PreparedData(output_dir(run, "prepare"))
    counts = final[final["rank"] <= settings["exposure_k"]]["item"].value_counts()
    lifted = final[np.isin(final["user"].to_numpy() * prepared.n_items + final["item"].to_numpy(), promoted)]
    assert (lifted["rank"] <= settings["exposure_k"]).mean() > 0.5  # the floor, after it, may push some down
    assert not np.isin(promoted % prepared.n_items, ranked[ranked["rank"] <= settings["exposure_k"]]["item"]).all()
    assert counts.reindex(np.unique(promoted % prepared.n_items)).fillna(0).max() <= int(np.ceil(0.1 * users))
    # Only the lists of users active in the last 60 days of the stage were filled.
    assert settings["coverage_active_days"] == 60.0
    idle = rerank.idle_days(prepared, "train")[promoted // prepared.n_items]
    assert (idle <= 60.0).all() and (rerank.idle_days(prepared, "train") > 60.0).any()


def test_the_final_lists_carry_the_rankers_probabilities_where_the_ranker_scored(run: EncoreConfig) -> None:
    # Logloss scores are probabilities on one scale for every user: the fill may weigh places by
    # them. A fallback user's list (another generator's scores) and completions have none.
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    prepared = PreparedData(inputs["prepare"])
    lists = rerank.final_stage(run, inputs, prepared, np.zeros(0, dtype=np.int64))[0]
    choice = RankerOutput(inputs["ranker"]).policy()["choice"]
    cold = np.diff(prepared.user_items("train").indptr)[lists.users] == 0
    fallback = cold if choice["cold"] == "fallback" else np.zeros(len(cold), dtype=bool)
    assert fallback.any() and (~fallback).any()
    chance = lists.chance(slice(None))
    assert np.isnan(chance[fallback]).all()
    scored = (lists.items >= 0) & ~fallback[:, None] & ~np.isnan(lists.scores)
    np.testing.assert_array_equal(chance[scored], lists.scores[scored])
    assert ((chance[scored] > 0) & (chance[scored] < 1)).all()
    assert np.isnan(chance[~scored]).all()


def test_the_grid_re_ranks_each_setting_as_alone_from_the_per_user_steps_it_shares(run: EncoreConfig) -> None:
    # The grid computes the per-user steps once per group of settings that share them: every
    # setting still gets the lists it gets alone, and the tiny grid has such groups.
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    prepared = PreparedData(inputs["prepare"])
    blocked, rejected = rerank.exclusions(run, prepared)
    lists, side, blocked = rerank.final_stage(run, inputs, prepared, blocked)
    grid = settings_grid(run.components.rerank, run.components.ranker.top_k)
    # Groups that mix costs too: a setting weighing by relevance re-ranks from lists carrying probabilities.
    grid += [dataclasses.replace(settings, coverage_cost="relevance") for settings in grid[:3]]
    assert len({rerank.before_cap_key(settings) for settings in grid}) < len(grid)
    seen = []
    for n, items in rerank.grid_reranked(lists, side, grid, blocked=blocked, rejected=rejected,
                                         n_items=prepared.n_items):
        alone = rerank.reranked(lists, side, grid[n], blocked=blocked, rejected=rejected, n_items=prepared.n_items)
        np.testing.assert_array_equal(items, alone)
        seen.append(n)
    assert sorted(seen) == list(range(len(grid)))


def test_the_per_user_key_holds_every_field_the_steps_before_the_cap_read(run: EncoreConfig) -> None:
    # Every Settings field is either one the per-user steps read, or changing it leaves their
    # lists as they are: a new field must be placed on one side, or this fails.
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    prepared = PreparedData(inputs["prepare"])
    lists, side, blocked = rerank.final_stage(run, inputs, prepared, np.zeros(0, dtype=np.int64))
    across = {"exposure_m": 2, "exposure_k": 5, "new_days": 3.0, "exposure_cap": 0.3, "coverage_slots": 4,
              "coverage_copies": 2, "coverage_active_days": 7.0, "coverage_active_first": True,
              "coverage_max_cost": 0.01}
    assert {f.name for f in dataclasses.fields(Settings)} == {*rerank.PER_USER_FIELDS, *across, "coverage_cost"}
    base = Settings(top_k=run.components.ranker.top_k, popularity_penalty=0.25, freshness_boost=0.2,
                    content_max_rank=5, coverage_cost="chance")
    nothing = np.zeros(0, dtype=np.int64)

    def before(settings: Settings) -> Lists:
        return rerank.before_cap(lists, side, settings, blocked=blocked, rejected=nothing, n_items=prepared.n_items)

    reference = before(base)
    for name, value in across.items():
        changed = before(dataclasses.replace(base, **{name: value}))
        np.testing.assert_array_equal(changed.items, reference.items, err_msg=name)
        np.testing.assert_array_equal(changed.relevance, reference.relevance, err_msg=name)
        np.testing.assert_array_equal(changed.chance, reference.chance, err_msg=name)
    # The probabilities are carried where the fill weighs by them, or where asked (a group that holds such a setting).
    assert before(dataclasses.replace(base, coverage_cost="relevance")).chance is None
    asked = rerank.before_cap(lists, side, dataclasses.replace(base, coverage_cost="relevance"), blocked=blocked,
                              rejected=nothing, n_items=prepared.n_items, with_chance=True)
    np.testing.assert_array_equal(asked.chance, reference.chance)


def test_the_grid_re_ranks_every_user_and_scores_the_target_users(run: EncoreConfig, tmp_path: Path) -> None:
    # The steps across users spread over every user's lists, as on test; the target users are scored.
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    prepared = PreparedData(inputs["prepare"])
    ranked = rerank.target_ranked(run, inputs, prepared, tmp_path)
    np.testing.assert_array_equal(np.unique(ranked["user"]), np.arange(prepared.n_users))
    assert len(prepared.eval_users("base")) < prepared.n_users
    assert RerankOutput(output_dir(run, "rerank")).chosen()["choice_users"] == len(prepared.eval_users("base"))


def test_the_choice_window_scores_only_the_target_events_within_its_days(run: EncoreConfig, tmp_path: Path) -> None:
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    prepared = PreparedData(inputs["prepare"])
    target = prepared.part("target")
    seconds = target["timestamp"].astype("int64").to_numpy() // 10**9
    start = prepared.last_event_seconds("base")
    days = float(np.median(seconds - start)) / 86400  # about half the target events
    within = target[seconds < start + days * 86400]
    evaluator = rerank.ChoiceEvaluator(prepared, "base", (10,), window_days=days)
    np.testing.assert_array_equal(evaluator.users, np.unique(within["user"]))
    assert 0 < len(evaluator.users) < len(prepared.eval_users("base"))
    assert evaluator.relevant.nnz == len(within.drop_duplicates(["user", "item"]))
    rows = np.searchsorted(evaluator.users, within["user"].to_numpy())
    assert evaluator.relevant[rows, within["item"].to_numpy()].all()
    # The grid is scored on those users only; with the whole window, on every target user.
    windowed = with_settings(run, {"rerank": {"choice_window_days": days}})
    grid, _, users = rerank.target_tradeoff(windowed, inputs, prepared, tmp_path)
    np.testing.assert_array_equal(users, evaluator.users)
    whole, _, every = rerank.target_tradeoff(run, inputs, prepared, tmp_path)
    np.testing.assert_array_equal(every, prepared.eval_users("base"))
    assert grid.loc[0, "ndcg@10"] != whole.loc[0, "ndcg@10"]
    # A window with no target event in it names the key.
    with pytest.raises(ConfigError, match=r"components\.rerank\.choice_window_days"):
        rerank.target_tradeoff(with_settings(run, {"rerank": {"choice_window_days": 1e-9}}), inputs, prepared, tmp_path)
    # The window leaves the fingerprints of the components before rerank as they are.
    assert fingerprint(windowed, "ranker") == fingerprint(run, "ranker")
    assert fingerprint(windowed, "rerank") != fingerprint(run, "rerank")


def test_the_reports_grid_on_test_reproduces_the_components_test_figures(run: EncoreConfig) -> None:
    # benchmarks.rerank_report's diagnosis re-ranks the final lists at every setting; at the
    # chosen one it must give the component's own test figures, and the ranker's at the first row.
    from benchmarks.rerank_report import grid_on_test
    from encore.reranking.steps import settings_grid

    upstream = rerank.DEPENDS_ON(run)
    paths = {"prepare": output_dir(run, "prepare"), "ranker": output_dir(run, "ranker"),
             "generators": {name: output_dir(run, name) for name in upstream if name in run.components.generators}}
    grid = grid_on_test(run, paths)
    assert len(grid) == 1 + len(settings_grid(run.components.rerank, run.components.ranker.top_k))
    out = RerankOutput(output_dir(run, "rerank"))
    chosen, test = out.chosen()["settings"], json.loads((out.path / out.SIGNIFICANCE).read_text())["test"]
    row = next(row for row in grid[1:] if all(row.get(key) == chosen[key] for key in rerank.GRID_KEYS
                                              if chosen[key] is not None))
    for metric in ("ndcg@10", "catalog_coverage@10"):
        assert row[metric] == pytest.approx(test["rerank"][metric])
        assert grid[0][metric] == pytest.approx(test["ranker"][metric])


@pytest.mark.pipeline  # its runs come through getfixturevalue, which the marker detection cannot read
@pytest.mark.parametrize("mode", ["target", "heldout"])
def test_the_choice_never_reads_test(mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """Another test window (half of it dropped, the rest moved to other users) gives the same
    grid and the same choice, on every target user and on the held-out ones."""
    run: EncoreConfig = request.getfixturevalue("run" if mode == "target" else "heldout_run")
    assert run.components.rerank.choose_on == mode
    inputs = {name: output_dir(run, name) for name in rerank.DEPENDS_ON(run)}
    other = tmp_path / "prepare"
    shutil.copytree(inputs["prepare"], other)
    test = pd.read_parquet(other / "test.parquet")
    test = test.iloc[: len(test) // 2].assign(user=lambda f: f["user"].to_numpy()[::-1])
    test.to_parquet(other / "test.parquet")

    def choice(prepare: Path) -> pd.DataFrame:
        return rerank.target_tradeoff(run, inputs | {"prepare": prepare}, PreparedData(prepare), tmp_path)[0]

    assert not PreparedData(other).part("test").equals(PreparedData(inputs["prepare"]).part("test"))
    pd.testing.assert_frame_equal(choice(inputs["prepare"]), choice(other))
    pd.testing.assert_frame_equal(choice(other), RerankOutput(output_dir(run, "rerank")).grid(), check_dtype=False)


def test_the_heldout_choice_is_made_on_users_the_scoring_model_never_trained_on(
        run: EncoreConfig, heldout_run: EncoreConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    served, trial = RankerOutput(output_dir(run, "ranker")), RankerOutput(output_dir(heldout_run, "ranker"))
    # Written only when rerank asks for it, and the ranker's key says so.
    assert not list(served.path.glob("heldout_*")) and served.path != trial.path
    off = with_settings(run, {"rerank": {"enabled": False}})
    assert fingerprint(run, "ranker") == fingerprint(off, "ranker")
    asked_off = with_settings(heldout_run, {"rerank": {"enabled": False}})
    assert fingerprint(asked_off, "ranker") == fingerprint(off, "ranker")
    one_slice = with_settings(heldout_run, {"rerank": {"heldout_slices": 1}})
    assert len({fingerprint(one_slice, "ranker"), fingerprint(heldout_run, "ranker"), fingerprint(run, "ranker")}) == 3
    # The grid is scored on the held-out users: with 5 slices of 0.2, every target user once.
    inputs = {name: output_dir(heldout_run, name) for name in rerank.DEPENDS_ON(heldout_run)}
    prepared = PreparedData(inputs["prepare"])
    held_out, slice_of = rerank.held_out_slices(inputs)
    np.testing.assert_array_equal(held_out, prepared.eval_users("base"))
    slices = stage.held_out_users(heldout_run, prepared, 5)
    for n, users_out in enumerate(slices):
        np.testing.assert_array_equal(held_out[slice_of == n], users_out)
    chosen = RerankOutput(output_dir(heldout_run, "rerank")).chosen()
    assert chosen["choose_on"] == "heldout" and chosen["choice_users"] == len(held_out)
    # No slice's rows reach its trial model's training set, though the full set has them.
    x, y, users, _ = stage.training_set(heldout_run, inputs, prepared)
    fitted: list[np.ndarray] = []
    real = stage.train_ranker

    def recording(x: pd.DataFrame, y: np.ndarray, users: np.ndarray, *args: object, **kwargs: object) -> object:
        fitted.append(np.unique(users))
        return real(x, y, users, *args, **kwargs)

    monkeypatch.setattr(stage, "train_ranker", recording)
    for n, users_out in enumerate(slices):
        assert np.isin(users, users_out).any()
        held = stage.held_out_ranker(heldout_run, prepared, x, y, users, users_out)
        assert not np.isin(fitted[-1], users_out).any() and np.isin(users, fitted[-1]).any()
        # The saved trial model is that model: it scores the slice's rows as the one refitted here.
        saved = rerank.CatBoostClassifier()
        saved.load_model(str(trial.path / stage.HELD_OUT_MODEL.format(slice=f"_{n}" if n else "")))
        rows = x[np.isin(users, users_out)]
        np.testing.assert_allclose(saved.predict_proba(rows[held.model.feature_names])[:, 1],
                                   held.model.score(rows), rtol=1e-6)


@pytest.mark.unit
def test_held_out_slices_are_disjoint_and_the_first_is_the_policys(tiny_config: EncoreConfig) -> None:
    class Targets:
        def eval_users(self, stage_name: str) -> np.ndarray:
            assert stage_name == "base"
            return np.arange(3, 103, dtype=np.int64)

    prepared = Targets()
    one = stage.held_out_users(tiny_config, prepared)  # type: ignore[arg-type]
    every = stage.held_out_users(tiny_config, prepared, 5)  # type: ignore[arg-type]
    assert len(one) == 1 and len(one[0]) == 20
    np.testing.assert_array_equal(every[0], one[0])
    joined = np.concatenate(every)
    assert len(np.unique(joined)) == len(joined)
    np.testing.assert_array_equal(np.sort(joined), np.arange(3, 103))
    three = stage.held_out_users(tiny_config, prepared, 3)  # type: ignore[arg-type]
    assert [len(part) for part in three] == [20, 20, 20]
    with pytest.raises(Exception, match="heldout_slices"):
        stage.held_out_users(tiny_config, prepared, 6)  # type: ignore[arg-type]
