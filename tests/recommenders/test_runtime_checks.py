"""Runtime checks of models (issue #25): a kind's missing side data, a setting that leaves
a model nothing to fit, and a model (a plug-in) returning arrays of the wrong shape, dtype or
values each stop the run with one line naming the instance, the key or the class."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from encore.config.experiment import ConfigError
from encore.pipeline import runner
from encore.pipeline.runner import run_pipeline
from encore.recommenders import EASERecommender, Item2ItemRecommender, ModelOutputError, SettingUnfit, SideDataMissing
from encore.recommenders.base import Recommender, as_ids, check_lists, check_scores
from encore.recommenders.generator_config import StageView
from tests.conftest import TINY_SYNTHETIC, make_config

MODULE = __name__


# ----------------------------------------------------------------------------- plug-ins
class ConstantScores(Recommender):
    """A user's generator whose score block is whatever the class attribute ``value`` says."""

    value: float = float("nan")

    def fit(self, user_items):
        self.n_users_, self.n_items_ = user_items.shape
        return self

    def score(self, user_ids, user_items):
        return np.full((len(as_ids(user_ids)), self.n_items_), self.value, dtype=np.float32)

    def similar_items(self, item_ids, N):
        n = len(as_ids(item_ids))
        return np.full((n, N), -1, dtype=np.int64), np.full((n, N), -np.inf, dtype=np.float32)

    def _get_state(self):
        return {}

    def _set_state(self, state):
        pass


class NaNScores(ConstantScores):
    """All-NaN scores: before the check it proposed nothing, silently."""


class HalfNaNScores(ConstantScores):
    def score(self, user_ids, user_items):
        block = np.arange(len(as_ids(user_ids)) * self.n_items_, dtype=np.float32).reshape(-1, self.n_items_)
        block[:, ::2] = np.nan
        return block


class WrongShape(ConstantScores):
    def score(self, user_ids, user_items):
        return np.zeros((len(as_ids(user_ids)), self.n_items_ - 1), dtype=np.float32)


class IntegerScores(ConstantScores):
    def score(self, user_ids, user_items):
        return np.ones((len(as_ids(user_ids)), self.n_items_), dtype=np.int64)


class BadRecommend(ConstantScores):
    """Overrides recommend and returns ids beyond the catalogue."""

    def recommend(self, user_ids, user_items, N, *, filter_already_liked_items=True, batch_size=1024):
        n = len(as_ids(user_ids))
        return np.full((n, N), self.n_items_, dtype=np.int64), np.zeros((n, N), dtype=np.float32)


class NaNSimilar(ConstantScores):
    def score(self, user_ids, user_items):
        return np.ones((len(as_ids(user_ids)), self.n_items_), dtype=np.float32)

    def similar_items(self, item_ids, N):
        n = len(as_ids(item_ids))
        return np.zeros((n, N), dtype=np.int64), np.full((n, N), np.nan, dtype=np.float32)


def _fitted(cls: type[Recommender], n_users: int = 4, n_items: int = 6) -> Recommender:
    return cls().fit(sp.csr_matrix(np.ones((n_users, n_items), dtype=np.float32)))


def _history(n_users: int = 4, n_items: int = 6) -> sp.csr_matrix:
    return sp.csr_matrix(np.eye(n_users, n_items, dtype=np.float32))


@pytest.mark.parametrize(("cls", "message"), [
    (NaNScores, r"NaNScores\.score returned NaN or \+inf for all 24 scores \(first: NaN at row 0, column 0\)"),
    (HalfNaNScores, r"HalfNaNScores\.score returned NaN or \+inf for 12 of 24 scores"),
    (WrongShape, r"WrongShape\.score returned a float32 array of shape \(4, 5\), expected a float array of "
                 r"shape \(4, 6\)"),
    (IntegerScores, r"IntegerScores\.score returned int64 scores, expected floats"),
])
def test_recommend_refuses_a_wrong_score_block(cls: type[Recommender], message: str) -> None:
    model = _fitted(cls)
    with pytest.raises(ModelOutputError, match=message):
        model.recommend(np.arange(4), _history(), 3)


def test_positive_infinity_is_refused_and_minus_infinity_is_not() -> None:
    model = _fitted(ConstantScores)
    with pytest.raises(ModelOutputError, match=r"first: \+inf at row 0, column 0"):
        check_scores(model, np.full((2, 6), np.inf, dtype=np.float32), 2)
    block = np.full((2, 6), -np.inf, dtype=np.float32)
    assert check_scores(model, block, 2) is block


def test_check_lists_names_the_method_and_what_it_found() -> None:
    model = _fitted(ConstantScores)
    ids, scores = np.zeros((2, 3), np.int64), np.zeros((2, 3), np.float32)
    assert check_lists(model, "recommend", ids, scores, 2, 3) == (ids, scores)
    with pytest.raises(ModelOutputError, match=r"ConstantScores\.recommend returned ids as a float64 array of "
                                                r"shape \(2, 3\), expected shape \(2, 4\)"):
        check_lists(model, "recommend", ids.astype(float), scores, 2, 4)
    with pytest.raises(ModelOutputError, match=r"ConstantScores\.similar_items returned float64 ids, expected "
                                                r"integers"):
        check_lists(model, "similar_items", ids.astype(float), scores, 2, 3)
    with pytest.raises(ModelOutputError, match=r"returned scores as a list, expected shape \(2, 3\)"):
        check_lists(model, "recommend", ids, [[0.0] * 3] * 2, 2, 3)
    with pytest.raises(ModelOutputError, match=r"item id -2 at row 0, column 0; ids must be -1 \(no item\) or "
                                                r"0 \.\. 5"):
        check_lists(model, "recommend", ids - 2, scores, 2, 3)


def _run_plugin(tmp_path: Path, cls: type[Recommender], **extra) -> None:
    config = make_config(tmp_path, TINY_SYNTHETIC | {
        "components": {"mine": {"kind": f"{MODULE}:{cls.__name__}", **extra}}})
    run_pipeline(config, ["prepare", "mine"])


@pytest.mark.parametrize(("cls", "message"), [
    (NaNScores, r"component 'mine' failed: components\.mine \(kind '[\w.]+:NaNScores'\): NaNScores\.score "
                r"returned NaN or \+inf for all"),
    (BadRecommend, r"components\.mine \(kind '[\w.]+:BadRecommend'\): BadRecommend\.recommend returned item id "
                   r"600 at row 0"),
    (NaNSimilar, r"components\.mine \(kind '[\w.]+:NaNSimilar'\): NaNSimilar\.similar_items returned NaN or "
                 r"\+inf for all"),
])
def test_a_plugins_wrong_output_names_the_instance_and_class(tmp_path: Path, cls: type[Recommender],
                                                             message: str) -> None:
    with pytest.raises(runner.ComponentFailed, match=message) as failed:
        _run_plugin(tmp_path, cls)
    assert "\n" not in str(failed.value)
    produced = [p.name for p in (tmp_path / "outputs" / "tiny").iterdir() if p.name.startswith("mine")]
    assert produced == [], f"half-written output: {produced}"


# ----------------------------------------------------------------------------- item2item's side data
def _tabular(tmp_path: Path, features: pd.DataFrame | None = None, **components) -> dict:
    plays = tmp_path / "plays.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"user": rng.integers(0, 40, 800), "item": rng.integers(0, 60, 800)}).to_csv(plays, index=False)
    dataset = {"kind": "tabular", "interactions": str(plays), "columns": {"user": "user", "item": "item"}}
    if features is not None:
        features.to_csv(tmp_path / "features.csv", index=False)
        dataset["item_features"] = str(tmp_path / "features.csv")
    return {"experiment": {"name": "side"}, "dataset": dataset, "components": components}


def test_item2item_without_item_features_says_to_disable_it(tmp_path: Path) -> None:
    """Tabular data without features: one line naming the instance, not TruncatedSVD's error."""
    config = make_config(tmp_path, _tabular(tmp_path))
    with pytest.raises(runner.ComponentFailed, match=r"components\.item2item: kind 'item2item' needs item "
                                                      r"features, which dataset '\w+' does not have; set "
                                                      r"components\.item2item\.enabled: false"):
        run_pipeline(config, ["prepare", "item2item"])


def test_missing_side_data_stops_the_pipeline_before_the_first_generator(tmp_path: Path) -> None:
    """The default pipeline on data without item features: one line naming item2item right after
    ``prepare``, before ALS, BPR… (which run first) fit anything."""
    config = make_config(tmp_path, _tabular(tmp_path))
    with pytest.raises(runner.ComponentFailed, match=r"^component 'item2item' failed: components\.item2item: kind "
                                                      r"'item2item' needs item features"):
        run_pipeline(config)
    ran = sorted(p.name.split("-")[0] for p in config.run_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert ran == ["prepare"], ran


def test_item2item_with_one_distinct_feature_value_says_to_disable_it(tmp_path: Path) -> None:
    features = pd.DataFrame({"item": np.arange(60), "feature": "rock"})
    config = make_config(tmp_path, _tabular(tmp_path, features, tags={"kind": "item2item"}))
    with pytest.raises(runner.ComponentFailed, match=r"components\.tags: kind 'item2item' needs item features "
                                                      r"of at least 2 distinct values, and dataset 'plays' has 1; "
                                                      r"set components\.tags\.enabled: false"):
        run_pipeline(config, ["prepare", "tags"])


def test_item2item_fit_stage_declares_item_features_required() -> None:
    user_items = sp.csr_matrix(np.ones((3, 4), dtype=np.float32))
    assert Item2ItemRecommender.required_side_data == ("item_features",)
    empty = StageView(user_items, item_features=sp.csr_matrix((4, 5), dtype=np.float32))
    with pytest.raises(SideDataMissing, match=r"kind 'item2item' needs item features, which this dataset does not"):
        Item2ItemRecommender().fit_stage(empty)
    one_column = StageView(user_items, item_features=sp.csr_matrix(np.ones((4, 1), dtype=np.float32)))
    with pytest.raises(SideDataMissing, match=r"needs item features of at least 2 distinct values"):
        Item2ItemRecommender().fit_stage(one_column)


# ----------------------------------------------------------------------------- EASE
@pytest.mark.parametrize(("user_items", "found"), [
    (sp.csr_matrix(np.eye(5, 8, dtype=np.float32)), r"\(5 users, at most 1 listeners per item\)"),
    (sp.csr_matrix(np.ones((1, 8), dtype=np.float32)), r"\(1 users, at most 1 listeners per item\)"),
])
def test_ease_with_no_item_reaching_min_item_users_names_the_setting(user_items: sp.csr_matrix,
                                                                     found: str) -> None:
    """No item with 2 listeners (or one user): one line naming min_item_users, not a Cholesky failure."""
    with pytest.raises(SettingUnfit, match=r"no item has min_item_users \(2\) or more listeners in the training "
                                           rf"data {found}; lower min_item_users") as unfit:
        EASERecommender().fit(user_items)
    assert unfit.value.key == "min_item_users"


def test_ease_min_item_users_too_high_in_the_pipeline_names_the_key(tmp_path: Path) -> None:
    config = make_config(tmp_path, TINY_SYNTHETIC | {"components": {"ease": {"min_item_users": 10_000}}})
    with pytest.raises(runner.ComponentFailed, match=r"component 'ease' failed: components\.ease\.min_item_users: "
                                                      r"no item has min_item_users \(10000\) or more listeners"):
        run_pipeline(config, ["prepare", "ease"])
    assert issubclass(SettingUnfit, ValueError) and not issubclass(SettingUnfit, ConfigError)
