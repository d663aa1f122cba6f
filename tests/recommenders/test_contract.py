"""The recommender contract (``encore.testing.check_recommender``): every built-in kind and the
README's plug-in example keep it, and a class that breaks a promise is caught by name."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import scipy.sparse as sp

from encore.recommenders.base import Recommender, as_ids, drop_self, topk
from encore.recommenders.ease import EASERecommender
from encore.recommenders.generator_config import GeneratorConfig
from encore.recommenders.kinds import KINDS
from encore.testing import CHECKS, check_recommender, sample_stage_view
from tests.recommenders.test_plugins import USER_MODULE

FEW_EPOCHS = {"epochs": 3, "factors": 16, "num_threads": 1}
"""The neural kinds' contract holds at any size: a few small epochs keep the suite fast."""


@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "als_spark"])
def test_every_builtin_kind_keeps_the_contract(kind: str) -> None:
    # The suite hands each kind the side data it declares (friends: social links; item2item:
    # tags; popular: timestamps), so every kind is fitted the way the pipeline fits it.
    # als_spark fits on Spark: tests/recommenders/test_als_spark.py checks it on the test cluster.
    check_recommender(KINDS[kind], params=FEW_EPOCHS if kind in ("sasrec", "twotower") else None)


def test_the_readme_plugin_example_keeps_the_contract(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "contract_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plays.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    check_recommender(importlib.import_module("contract_plugin.plays").PlaysRecommender)


def test_given_data_and_params_are_used() -> None:
    view = sample_stage_view(("social",), n_users=25, n_items=30, random_state=5)
    check_recommender(KINDS["ease"], user_items=view.user_items, params={"l2": 10.0}, random_state=5, N=4)
    # Side data given explicitly replaces the sample: friends cannot fit without social links.
    with pytest.raises(AssertionError, match=r"FriendsRecommender fails 'fit': raised SideDataMissing"):
        check_recommender(KINDS["friends"], user_items=view.user_items, side_data={"social": None})


# --------------------------------------------------------------------------------------- broken classes
class ListensConfig(GeneratorConfig):
    power: float = 1.0


class Listens(Recommender):
    """A correct minimal kind: every user gets items by total plays ** power."""

    config_class = ListensConfig

    def __init__(self, power: float = 1.0):
        self.power = power

    def fit(self, user_items: sp.csr_matrix) -> Self:
        self.plays_ = np.asarray(user_items.sum(axis=0), dtype=np.float32).ravel() ** self.power
        self.n_users_, self.n_items_ = user_items.shape
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.plays_, (len(as_ids(user_ids)), self.n_items_)).copy()

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        item_ids = as_ids(item_ids)
        ids, scores = topk(self.plays_[None, :], N + 1)
        return drop_self(item_ids, np.repeat(ids, len(item_ids), 0), np.repeat(scores, len(item_ids), 0), N)

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"plays": self.plays_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.plays_ = state["plays"]


class DriftedDefaults(Listens):
    def __init__(self, power: float = 2.0):
        super().__init__(power)


class DriftedEASE(EASERecommender):
    """The drift this suite was written for: the config capped EASE at 8000 items, the
    constructor did not."""

    name = "ease"  # the built-in kind itself, as it was, so only the defaults differ

    def __init__(self, l2: float = 3000.0, weighting: Any = "log1p", min_item_users: int = 2,
                 max_items: int | None = None):
        super().__init__(l2, weighting, min_item_users, max_items)


class PickledState(Listens):
    def _get_state(self) -> dict[str, np.ndarray]:
        return {"plays": self.plays_, "extra": np.array([{"power": self.power}], dtype=object)}


class Float64Scores(Listens):
    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return super().score(user_ids, user_items).astype(np.float64)


class WrongWidth(Listens):
    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return super().score(user_ids, user_items)[:, :-1]


class OwnNeighbour(Listens):
    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        ids, scores = topk(np.tile(self.plays_, (len(as_ids(item_ids)), 1)), N)
        return ids, scores


class SeenNotFiltered(Listens):
    def recommend(self, user_ids: np.ndarray, user_items: sp.csr_matrix, N: int, *,
                  filter_already_liked_items: bool = True, batch_size: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        return super().recommend(user_ids, user_items, N, filter_already_liked_items=False, batch_size=batch_size)


class Unseeded(Listens):
    def fit(self, user_items: sp.csr_matrix) -> Self:
        super().fit(user_items)
        self.plays_ = self.plays_ + np.random.default_rng().random(self.n_items_).astype(np.float32)
        return self


class NotAGeneratorConfig(Listens):
    config_class = dict  # type: ignore[assignment]


@pytest.mark.parametrize(("cls", "check", "detail"), [
    (DriftedDefaults, "config defaults equal constructor defaults", "power: ListensConfig says 1.0"),
    (DriftedEASE, "config defaults equal constructor defaults", "max_items: EASEConfig says 8000"),
    (PickledState, "save/load round trip", "object array: it would be pickled"),
    (Float64Scores, "score", "dtype float64, expected float32"),
    (WrongWidth, "score", "shape"),
    (OwnNeighbour, "similar_items", "its own neighbour"),
    (SeenNotFiltered, "recommend", "seen item"),
    (Unseeded, "same seed, same lists", "second fit with the same seed"),
    (NotAGeneratorConfig, "declaration", "config_class must be a subclass"),
])
def test_a_broken_class_is_caught_by_name(cls: type[Recommender], check: str, detail: str) -> None:
    assert check in CHECKS
    expected = f"(?s)^{cls.__qualname__} fails '{re.escape(check)}': .*{re.escape(detail)}"
    with pytest.raises(AssertionError, match=expected):
        check_recommender(cls)


def test_the_correct_minimal_class_passes() -> None:
    # Every broken class above differs from this one by the one thing its test names.
    check_recommender(Listens)
