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

from encore.components.tune import nearest_unscored, optuna_params, optuna_search, space_filling
from encore.config.experiment import SearchRange, grid_combinations

L2 = [10.0, 20.0, 50.0, 150.0, 500.0, 1500.0, 3000.0, 10000.0]


class ScoredBy:
    """``tune.Trials``' bookkeeping (rows, ``scored``, ``fits``, ``repeat``) with a function for the fit."""

    def __init__(self, score: Callable[[dict[str, Any]], float]):
        self.name, self.score = "x", score
        self.rows: list[dict[str, Any]] = []
        self.scored: dict[str, float] = {}

    @property
    def fits(self) -> int:
        return sum(row["state"] != "repeat" for row in self.rows)

    def repeat(self, settings: dict[str, Any]) -> float | None:
        key = json.dumps(settings, sort_keys=True)
        if key not in self.scored:
            return None
        self.rows.append({"settings": key, "state": "repeat"})
        return self.scored[key]

    def run(self, settings: dict[str, Any], on_epoch: Any = None) -> float:
        key = json.dumps(settings, sort_keys=True)
        self.scored[key] = self.score(settings)
        self.rows.append({"settings": key, "state": "complete", "score": self.scored[key]})
        return self.scored[key]

    def fitted(self) -> list[dict[str, Any]]:
        return [json.loads(row["settings"]) for row in self.rows if row["state"] == "complete"]


def search(space: dict[str, Any], score: Callable[[dict[str, Any]], float], trials: int, seed: int) -> ScoredBy:
    config = SimpleNamespace(tuning=SimpleNamespace(trials=trials, pruning=False, timeout_seconds=None),
                             experiment=SimpleNamespace(seed=seed))
    scored = ScoredBy(score)
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


def test_the_nearest_unscored_point_is_a_neighbour_and_ties_are_drawn() -> None:
    space = {"l2": L2}
    scored = {json.dumps({"l2": value}): 0.0 for value in (500.0, 1500.0)}
    sides = {nearest_unscored(space, {"l2": 1500.0}, scored, np.random.default_rng(seed))["l2"] for seed in range(20)}
    assert sides == {3000.0}  # 500 is scored: the one unscored neighbour
    del scored[json.dumps({"l2": 500.0})]
    sides = {nearest_unscored(space, {"l2": 1500.0}, scored, np.random.default_rng(seed))["l2"] for seed in range(20)}
    assert sides == {500.0, 3000.0}  # equally near: drawn
    # A categorical setting differs by 1 whatever the choice: a step along the ordered axis is nearer.
    mixed = {"loss": ["softmax", "cosine", "bpr"], "l2": L2}
    done = {json.dumps({"l2": 1500.0, "loss": "softmax"}, sort_keys=True): 0.0}
    assert nearest_unscored(mixed, {"loss": "softmax", "l2": 1500.0}, done, np.random.default_rng(0))["loss"] == \
        "softmax"


@pytest.mark.parametrize("seed", range(4))
def test_a_space_of_lists_is_searched_without_replacement(seed: int) -> None:
    """No point is fitted twice and no proposal is answered as a repeat; with a budget above the
    grid's size the search ends once every point is scored."""
    space = {"factors": [32, 64, 128], "regularization": [0.01, 0.1, 1.0, 5.0, 20.0], "loss": ["a", "b"]}
    scored = search(space, lambda s: -abs(np.log10(s["regularization"])) - s["factors"] / 100 +
                    (s["loss"] == "a"), trials=40, seed=seed)
    fitted = scored.fitted()
    assert len(fitted) == len(grid_combinations(space)) == 30
    assert len({json.dumps(point, sort_keys=True) for point in fitted}) == 30
    assert all(row["state"] == "complete" for row in scored.rows)


def test_the_fit_budget_is_respected_and_the_search_is_seeded() -> None:
    space = {"l2": L2, "factors": [32, 64, 128]}
    first = search(space, lambda s: -abs(np.log10(s["l2"]) - 2.5) - s["factors"] / 1000, trials=7, seed=3)
    again = search(space, lambda s: -abs(np.log10(s["l2"]) - 2.5) - s["factors"] / 1000, trials=7, seed=3)
    assert len(first.rows) == 7 and first.fitted() == again.fitted()


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
