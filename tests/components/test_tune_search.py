"""The Optuna search of ``tune`` on its own: space-filling start-up points, search without
replacement on a space of lists, the fit budget, seeding. A scorer function stands in for fitting,
so these tests run in milliseconds; ``test_tune.py`` runs the search on real fits and MLflow."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from encore.components.tune import (
    ScoredTrials,
    expected_improvement,
    nearest_untried,
    optuna_params,
    optuna_search,
    space_filling,
)
from encore.config.experiment import SearchRange, grid_combinations

L2 = [10.0, 20.0, 50.0, 150.0, 500.0, 1500.0, 3000.0, 10000.0]


def search(space: dict[str, Any], score: Callable[[dict[str, Any]], float], trials: int, seed: int,
           sampler: str = "auto") -> ScoredTrials:
    config = SimpleNamespace(tuning=SimpleNamespace(trials=trials, pruning=False, timeout_seconds=None,
                                                    sampler=sampler),
                             experiment=SimpleNamespace(seed=seed))
    scored = ScoredTrials(score)
    optuna_search(scored, space, config)  # type: ignore[arg-type]
    return scored


@pytest.mark.parametrize("seed", range(5))
def test_start_up_points_cover_each_setting_in_equal_strata(seed: int) -> None:
    """Four points on an 8-value list fall in its four quarters (random draws share one 7 times in 8)."""
    starts = space_filling({"l2": L2, "factors": [32, 64, 128, 256]}, 4, seed)
    assert sorted(start["l2#position"] // 2 for start in starts) == [0, 1, 2, 3]
    assert sorted(start["factors#position"] for start in starts) == [0, 1, 2, 3]
    assert space_filling({"l2": L2, "factors": [32, 64, 128, 256]}, 4, seed) == starts  # seeded


def test_start_up_points_are_seeded_and_stay_in_ranges() -> None:
    space = {"lr": SearchRange(low=1e-4, high=1e-1, log=True), "dropout": SearchRange(low=0.0, high=0.5),
             "layers": SearchRange(low=1, high=4), "loss": ["softmax", "cosine"]}
    starts = space_filling(space, 3, 0)
    assert len(starts) == 3 and starts != space_filling(space, 3, 1)
    for start in starts:
        assert 1e-4 <= start["lr"] <= 1e-1 and 0.0 <= start["dropout"] <= 0.5
        assert start["layers"] in {1, 2, 3, 4} and start["loss"] in {"softmax", "cosine"}
    assert sorted(int(np.log10(start["lr"]) + 4) for start in space_filling(space, 2, 5)) in ([0, 1], [0, 2],
                                                                                             [1, 2])  # both halves


def test_optuna_params_name_ordered_lists_by_position() -> None:
    space = {"l2": L2, "loss": ["softmax", "cosine"], "flag": [True, False]}
    assert optuna_params(space, {"l2": 3000.0, "loss": "cosine", "flag": False}) == \
        {"l2#position": 6, "loss": "cosine", "flag": False}


def test_the_nearest_untried_point_is_a_neighbour_and_ties_are_drawn() -> None:
    space = {"l2": L2}
    tried = {json.dumps({"l2": value}) for value in (500.0, 1500.0)}
    sides = {nearest_untried(space, {"l2": 1500.0}, tried, np.random.default_rng(seed))["l2"] for seed in range(20)}
    assert sides == {3000.0}  # 500 is tried: the one untried neighbour
    tried.remove(json.dumps({"l2": 500.0}))
    sides = {nearest_untried(space, {"l2": 1500.0}, tried, np.random.default_rng(seed))["l2"] for seed in range(20)}
    assert sides == {500.0, 3000.0}  # equally near: drawn
    # A categorical setting differs by 1 whatever the choice: a step along the ordered axis is nearer.
    mixed = {"loss": ["softmax", "cosine", "bpr"], "l2": L2}
    done = {json.dumps({"l2": 1500.0, "loss": "softmax"}, sort_keys=True)}
    assert nearest_untried(mixed, {"loss": "softmax", "l2": 1500.0}, done, np.random.default_rng(0))["loss"] == \
        "softmax"


def test_expected_improvement_proposes_beside_the_best_score_never_a_tried_point() -> None:
    """Scores rising to position 5 of 8 (positions 1, 3, 5 and 7 scored, 6 tried and pruned): the
    proposal is an untried neighbour of the best, not an end of the axis nor the pruned point."""
    space = {"l2": L2}
    scored = {json.dumps({"l2": L2[i]}): score for i, score in ((1, 0.10), (3, 0.14), (5, 0.18), (7, 0.15))}
    tried = set(scored) | {json.dumps({"l2": L2[6]})}
    proposals = {expected_improvement(space, scored, tried, np.random.default_rng(seed))["l2"] for seed in range(5)}
    assert proposals == {L2[4]}


def test_expected_improvement_in_two_settings_looks_between_the_best_scores() -> None:
    """Two settings, the score driven by ``b`` alone (peak at ``b`` = 4, scored at 1, 3 and 5), ``a``
    irrelevant: the proposal is at ``b`` = 4, between the two best rows — not an untried ``a`` of a
    scored row (its score is known: no improvement expected) nor the low end."""
    space = {"a": [1, 2, 3, 4, 5], "b": [1, 2, 3, 4, 5]}
    scored = {json.dumps({"a": a, "b": b}, sort_keys=True): -float((b - 4) ** 2) for a, b in
              ((1, 1), (3, 1), (5, 1), (1, 3), (3, 3), (5, 3), (1, 5), (3, 5))}
    proposals = [expected_improvement(space, scored, set(scored), np.random.default_rng(seed)) for seed in range(3)]
    assert all(proposal["b"] == 4 for proposal in proposals)


@pytest.mark.parametrize(("seed", "sampler"), [(0, "auto"), (1, "auto"), (0, "tpe"), (1, "tpe")])
def test_a_space_of_lists_is_searched_without_replacement(seed: int, sampler: str) -> None:
    """No point is fitted twice and no proposal is answered as a repeat; with a budget above the
    grid's size the search ends once every point is scored."""
    space = {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0, 5.0, 20.0], "loss": ["a", "b"]}
    scored = search(space, lambda s: -abs(np.log10(s["regularization"])) - s["factors"] / 100 +
                    (s["loss"] == "a"), trials=40, seed=seed, sampler=sampler)
    fitted = scored.fitted()
    assert len(fitted) == len(grid_combinations(space)) == 30
    assert len({json.dumps(point, sort_keys=True) for point in fitted}) == 30
    assert all(row["state"] == "complete" for row in scored.rows)


@pytest.mark.parametrize("sampler", ["auto", "tpe"])
def test_the_fit_budget_is_respected_and_the_search_is_seeded(sampler: str) -> None:
    space = {"l2": L2, "factors": [32, 64, 128]}

    def score(s: dict[str, Any]) -> float:
        return -abs(np.log10(s["l2"]) - 2.5) - s["factors"] / 1000

    first = search(space, score, trials=7, seed=3, sampler=sampler)
    assert len(first.rows) == 7 and first.fitted() == search(space, score, trials=7, seed=3, sampler=sampler).fitted()
    assert first.fitted() != search(space, score, trials=7, seed=4, sampler=sampler).fitted()


def test_a_range_that_repeats_is_answered_from_the_scored_trial() -> None:
    """An integer range is not a list of points: a value proposed again is a repeat, not a fit."""
    scored = search({"layers": SearchRange(low=1, high=3)}, lambda s: -float(s["layers"]), trials=5, seed=0)
    assert sorted(point["layers"] for point in scored.fitted()) == [1, 2, 3]
    assert any(row["state"] == "repeat" for row in scored.rows) and scored.fits <= 5


def test_the_first_fits_are_the_space_filling_points() -> None:
    """TPE's random start-up never runs: the first ``max(2, trials // 5)`` fits are the Sobol points."""
    space = {"l2": L2, "factors": [32, 64, 128]}
    fitted = search(space, lambda s: -abs(np.log10(s["l2"]) - 2.5), trials=10, seed=7).fitted()
    starts = space_filling(space, 2, 7)
    assert [optuna_params(space, point) for point in fitted[:2]] == starts
