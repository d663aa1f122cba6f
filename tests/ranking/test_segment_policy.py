"""The per-segment policy: chosen on held-out target users, applied per segment, never serving
cold users from a ranker that saw none; the fallback completes lists and is served to unknown users."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from encore.config.experiment import ConfigError
from encore.data.prepared import PreparedData
from encore.outputs import GeneratorOutput, RankerOutput, RegisterOutput
from encore.pipeline.runner import dependencies, output_dir, pipeline_components, run_pipeline
from encore.ranking.model import complete_from_list
from encore.ranking.segment_policy import FALLBACK, RANKER, choose_policy, cold_users
from encore.recommenders import recommender_class
from tests.conftest import TINY_SYNTHETIC, make_config

TIME_SPLIT = TINY_SYNTHETIC | {
    "split": {"kind": "time", "target_start": 0.6, "test_start": 0.8},
    "components": TINY_SYNTHETIC["components"] | {
        "popular_recent": {"kind": "popular", "recency_half_life_days": 30},
        "ranker": {"iterations": 40, "fallback": "popular_recent"}},
}


def test_choice_follows_the_validation_means_per_segment() -> None:
    cold = np.array([False, False, True, True, True])
    ranker = np.array([0.5, 0.3, 0.1, 0.0, 0.2])
    fallback = np.array([0.2, 0.2, 0.3, 0.1, 0.2])
    policy = choose_policy(cold, ranker, fallback, trained_cold_users=10)
    assert policy.choice == {"warm": RANKER, "cold": FALLBACK}
    assert policy.validation["warm"] == {"users": 2.0, "ranker": pytest.approx(0.4), "fallback": pytest.approx(0.2)}
    assert policy.validation["cold"]["ranker"] == pytest.approx(0.1)
    assert policy.uses_fallback(np.array([True, False])).tolist() == [True, False]
    # Ties go to the ranker; a ranker trained on no cold user never serves the cold segment.
    assert choose_policy(cold, fallback, fallback, trained_cold_users=10).choice == {"warm": RANKER, "cold": RANKER}
    assert choose_policy(cold, ranker + 1, fallback, trained_cold_users=0).choice["cold"] == FALLBACK
    # No validation user in a segment: the warm segment keeps the ranker, the cold one falls back.
    none_cold = choose_policy(np.zeros(2, bool), np.ones(2), np.zeros(2), trained_cold_users=5)
    assert none_cold.choice == {"warm": RANKER, "cold": FALLBACK}


def test_cold_users_are_rows_without_history() -> None:
    import scipy.sparse as sp

    history = sp.csr_matrix(np.array([[1, 0], [0, 0], [0, 2]]))
    assert cold_users(history, np.array([0, 1, 2])).tolist() == [False, True, False]


def test_completion_from_a_list_skips_what_is_listed_and_keeps_its_order() -> None:
    recs = pd.DataFrame({"user": [0, 0], "item": [5, 6], "score": [1.0, 0.5], "rank": [1, 2]}).astype(
        {"user": np.int32, "item": np.int32, "score": np.float32, "rank": np.int32})
    listed = pd.DataFrame({"user": [0, 0, 0, 1, 1], "item": [6, 7, 8, 7, 9], "score": [3.0, 2, 1, 2, 1],
                           "rank": [1, 2, 3, 1, 2]})
    filled = complete_from_list(recs, listed, n_items=10, k=3)
    assert filled[filled.user == 0]["item"].tolist() == [5, 6, 7]
    assert filled[filled.user == 1]["item"].tolist() == [7, 9]


def test_fallback_must_be_an_enabled_popular_instance(tmp_path) -> None:
    experiment = TINY_SYNTHETIC | {"components": {"ranker": {"fallback": "als"}}}
    with pytest.raises(ConfigError, match=r"ranker\.fallback: 'als' is of kind als"):
        make_config(tmp_path, experiment)
    experiment = TINY_SYNTHETIC | {"components": {"ranker": {"fallback": "nope"}}}
    with pytest.raises(ConfigError, match="'nope' is not an enabled generator instance"):
        make_config(tmp_path, experiment)


@pytest.fixture(scope="module")
def time_split_run(tmp_path_factory: pytest.TempPathFactory):
    config = make_config(tmp_path_factory.mktemp("policy"), TIME_SPLIT)
    run_pipeline(config, [*pipeline_components(config), "register"])
    return config


def test_unknown_users_are_served_the_fallback(time_split_run) -> None:
    config = time_split_run
    prepared = PreparedData(output_dir(config, "prepare"))
    model = GeneratorOutput(output_dir(config, "popular_recent")).model("train", recommender_class("popular"))
    expected = prepared.items["raw_id"].to_numpy()[np.argsort(-model.popularity_, kind="stable")[:50]]
    served = pd.read_parquet(RegisterOutput(output_dir(config, "register")).bundle / "popular.parquet")
    assert served["item_id"].astype(str).head(50).tolist() == [str(i) for i in expected]


def test_policy_is_chosen_on_target_users_and_applied_per_segment(time_split_run) -> None:
    config = time_split_run
    prepared = PreparedData(output_dir(config, "prepare"))
    ranker = RankerOutput(output_dir(config, "ranker"))
    policy = ranker.policy()
    metrics = ranker.metrics()
    assert metrics["policy_validation_users"] > 0 and metrics["train_cold_users"] > 0
    for segment in ("warm", "cold"):
        assert metrics[f"policy.{segment}.uses_fallback"] == float(policy["choice"][segment] == FALLBACK)
        assert metrics[f"policy.{segment}.validation_users"] == policy["validation"][segment]["users"]
    for segment, evidence in policy["validation"].items():
        if evidence["users"]:
            expected = RANKER if evidence["ranker"] >= evidence["fallback"] else FALLBACK
            assert policy["choice"][segment] == expected, segment
    # Users of a fallback segment get the fallback's list exactly; the others the ranker's scores.
    recs = ranker.recommendations()
    fallback = GeneratorOutput(output_dir(config, "popular_recent")).candidates("train", max_rank=50)
    cold = cold_users(prepared.user_items("train"), np.arange(prepared.n_users))
    assert cold.any() and (~cold).any()
    for segment, users in (("warm", np.flatnonzero(~cold)), ("cold", np.flatnonzero(cold))):
        mine = recs[recs.user.isin(users)].sort_values(["user", "rank"])
        theirs = fallback[fallback.user.isin(users)].sort_values(["user", "rank"])
        same = np.array_equal(mine["item"].to_numpy(), theirs["item"].to_numpy())
        assert same == (policy["choice"][segment] == FALLBACK), segment
        if policy["choice"][segment] == RANKER:
            assert mine["score"].notna().any()


def test_a_ranker_that_saw_no_cold_user_never_serves_cold_users(tmp_path) -> None:
    # A per-user holdout keeps every target user's history in base: no cold training user.
    experiment = TINY_SYNTHETIC | {"components": TIME_SPLIT["components"]}
    config = make_config(tmp_path, experiment)
    run_pipeline(config, [*dependencies(config, "ranker"), "ranker"])
    ranker = RankerOutput(output_dir(config, "ranker"))
    assert ranker.metrics()["train_cold_users"] == 0
    assert ranker.policy()["choice"]["cold"] == FALLBACK
    assert "no cold user" in ranker.policy()["reason"]["cold"]
