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
from encore.recommenders import EASERecommender, Item2ItemRecommender, SettingUnfit, SideDataMissing
from encore.recommenders.generator_config import StageView
from tests.conftest import TINY_SYNTHETIC, make_config


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
                                                      r"features, which this dataset does not have; set "
                                                      r"components\.item2item\.enabled: false"):
        run_pipeline(config, ["prepare", "item2item"])


def test_item2item_with_one_distinct_feature_value_says_to_disable_it(tmp_path: Path) -> None:
    features = pd.DataFrame({"item": np.arange(60), "feature": "rock"})
    config = make_config(tmp_path, _tabular(tmp_path, features, tags={"kind": "item2item"}))
    with pytest.raises(runner.ComponentFailed, match=r"components\.tags: kind 'item2item' needs item features "
                                                      r"of at least 2 distinct values, and this dataset's have 1; "
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
