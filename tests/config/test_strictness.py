"""Strict configuration (issue #25): a boolean is not a number, names are safe folders, and what
used to fail after ``prepare`` (or as a traceback) fails at load, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from encore.config.experiment import ConfigError, MachineSettings, load_config
from encore.recommenders.generator_config import GeneratorConfig

NO_ENV = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)


def rejected(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, list(overrides), settings=NO_ENV)
    return str(info.value)


@pytest.mark.parametrize(("override", "key"), [
    ("components.als.factors=true", "components.als.factors"),
    ("components.ease.l2=yes", "components.ease.l2"),
    ("components.ranker.learning_rate=true", "components.ranker.learning_rate"),
    ("components.ranker.iterations=false", "components.ranker.iterations"),
    ("experiment.seed=true", "experiment.seed"),
    ("split.test_fraction=true", "split.test_fraction"),
    ("evaluation.ks=[5,10,true]", "evaluation.ks.2"),
    ("evaluation.n_bootstrap=on", "evaluation.n_bootstrap"),
    ("resources.memory_gib=yes", "resources.memory_gib"),
])
def test_a_boolean_is_not_a_number(override: str, key: str) -> None:
    message = rejected(override)
    assert f"{key}: a boolean is not a number" in message


@pytest.mark.parametrize("values", ["[8,true]", "[yes]", "[16,false]"])
def test_a_boolean_is_not_a_number_in_a_tuning_grid(values: str) -> None:
    message = rejected(f"tuning.grid.als.factors={values}")
    assert "tuning.grid.als.factors" in message and "a boolean is not a number" in message


def test_a_users_kind_settings_refuse_booleans_for_numbers() -> None:
    class MyConfig(GeneratorConfig):
        kind: str = "mine"
        width: int = 3
        rate: float | None = None

    with pytest.raises(ValueError, match=r"width\n.*a boolean is not a number"):
        MyConfig.model_validate({"width": True})
    with pytest.raises(ValueError, match=r"rate\n.*a boolean is not a number"):
        MyConfig.model_validate({"rate": False})
    assert MyConfig.model_validate({"width": 4, "rate": 0.5}).width == 4  # numbers still are


def test_booleans_stay_booleans_and_numbers_numbers() -> None:
    config = load_config(None, ["components.ranker.early_stopping=true", "components.als.enabled=false",
                                "components.als.factors=32", "components.ease.l2=250"], settings=NO_ENV)
    assert config.components.ranker.early_stopping is True
    assert config.components.generator("ease").l2 == 250.0


@pytest.mark.parametrize("name", ["..", ".", "...", "a/b", "../x", "a\\b", ""])
def test_experiment_name_is_a_safe_folder_name(name: str) -> None:
    message = rejected(f"experiment.name='{name}'")
    assert "experiment.name" in message


def test_experiment_name_with_dots_inside_is_fine() -> None:
    assert load_config(None, ["experiment.name=v1.2"], settings=NO_ENV).run_dir.name == "v1.2"


@pytest.mark.parametrize("name", ["..", "a.b", "x-y", "_x", "9x"])
def test_instance_names_are_safe_file_names(name: str, tmp_path: Path) -> None:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"experiment": {"name": "t"}, "components": {name: {"kind": "popular"}}}))
    with pytest.raises(ConfigError, match="instance names are letters"):
        load_config(path, settings=NO_ENV)


def test_naive_and_zone_aware_cut_points_together_are_one_message() -> None:
    message = rejected("split.kind=time", "split.target_start=2010-01-01",
                       "split.test_start=2010-06-01T00:00:00+02:00")
    assert "): split: " in message and "time zone" in message and "test_start" in message


def test_naive_test_end_after_zone_aware_cuts_is_one_message() -> None:
    message = rejected("split.kind=time", "split.target_start=2010-01-01T00:00:00Z",
                       "split.test_start=2010-06-01T00:00:00Z", "split.test_end=2010-09-01")
    assert "time zone" in message and "test_end" in message


def test_tuning_grid_of_only_disabled_instances_fails_at_load() -> None:
    message = rejected("components.als.enabled=false", "tuning.grid.als.factors=[8,16]")
    assert "tuning.grid" in message and "disabled" in message


def test_tuning_grid_with_one_enabled_instance_still_loads() -> None:
    config = load_config(None, ["components.als.enabled=false", "tuning.grid.als.factors=[8,16]",
                                "tuning.grid.ease.l2=[100.0]"], settings=NO_ENV)
    assert set(config.tuning.grid) == {"als", "ease"}


@pytest.mark.parametrize("override", ["experiment.seed=-1", "components.ranker.seed=-5",
                                      "experiment.seed=4294967296"])
def test_seeds_outside_what_the_libraries_take_fail_at_load(override: str) -> None:
    assert override.partition("=")[0] in rejected(override)


def test_empty_ranker_features_fail_at_load() -> None:
    assert "components.ranker.features: " in rejected("components.ranker.features=[]")


@pytest.mark.parametrize(("override", "key"), [
    ("components.als.n_candidates=20", "components.als.n_candidates (20)"),
    ("components.ranker.top_k=20", "components.ranker.top_k (20)"),
])
def test_lists_shorter_than_the_largest_k_fail_at_load(override: str, key: str) -> None:
    message = rejected(override)
    assert key in message and "largest evaluation k (50" in message


def test_a_disabled_instance_or_ranker_need_not_cover_k() -> None:
    load_config(None, ["components.als.enabled=false", "components.als.n_candidates=20",
                       "components.ranker.enabled=false", "components.ranker.top_k=20"], settings=NO_ENV)
