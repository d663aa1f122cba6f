"""The configuration model: merging, validation with key paths, fingerprints."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from encore.config.experiment import (
    DEFAULTS_FILE,
    REPO_ROOT,
    ComponentsConfig,
    ConfigError,
    EvaluationConfig,
    MachineSettings,
    PerUserSplit,
    deep_merge,
    load_config,
    parse_override,
)
from encore.recommenders import KINDS

EXPERIMENTS = sorted((REPO_ROOT / "experiments").glob("*.yaml"))
NO_ENV = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda p: p.name)
def test_every_shipped_experiment_validates(experiment: Path) -> None:
    config = load_config(experiment, settings=NO_ENV)
    assert config.experiment.name == experiment.stem


OPT_IN = ("sasrec", "twotower", "als_spark")
"""Built-in kinds without a default instance: the neural ones need the optional PyTorch extra (and
sasrec, timestamps; docs/neural.md), als_spark a Spark cluster (docs/scaling.md), so an
experiment adds them."""


def test_defaults_file_matches_model_defaults() -> None:
    """components.yaml documents the defaults; it must not drift from the model's."""
    raw = yaml.safe_load(DEFAULTS_FILE.read_text())
    components = ComponentsConfig.model_validate(raw["components"])
    assert (components.ranker, components.promote) == (ComponentsConfig().ranker, ComponentsConfig().promote)
    for kind, cls in KINDS.items():
        if kind in OPT_IN:
            assert kind not in raw["components"], kind
            continue
        # Every other built-in kind has a default instance of its own name that sets nothing but
        # its kind: its defaults are declared once, in the config_class next to the recommender.
        assert raw["components"][kind] == {"kind": kind}, kind
        assert components.generators[kind] == cls.config_class(), kind
    for name, section in components.generators.items():
        assert type(section) is KINDS[section.kind].config_class, name
    assert EvaluationConfig.model_validate(raw["evaluation"]) == EvaluationConfig()
    assert PerUserSplit.model_validate(raw["split"]) == PerUserSplit()


def test_unknown_key_is_rejected_with_its_path(tmp_path: Path) -> None:
    path = write(tmp_path, {"experiment": {"name": "x"}, "components": {"als": {"factor": 10}}})
    with pytest.raises(ConfigError, match=r"components\.als\.factor"):
        load_config(path, settings=NO_ENV)


@pytest.mark.parametrize(
    ("override", "path"),
    [
        ("components.als.factors=-3", "components.als.factors"),
        ("components.bpr.learning_rate=abc", "components.bpr.learning_rate"),
        ("split.test_fraction=1.5", "split.test_fraction"),
        ("evaluation.primary_metric=ndcg@7", "evaluation"),
        ("dataset.kind=nonsense", "dataset"),
    ],
)
def test_impossible_values_are_rejected(override: str, path: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(REPO_ROOT / "experiments/lastfm2k.yaml", [override], settings=NO_ENV)
    assert path in str(info.value)


def test_time_split_with_reversed_cut_points_is_rejected(tmp_path: Path) -> None:
    path = write(tmp_path, {"experiment": {"name": "x"},
                            "split": {"kind": "time", "target_start": 0.8, "test_start": 0.5}})
    with pytest.raises(ConfigError, match="target window is empty"):
        load_config(path, settings=NO_ENV)


def test_time_split_experiments_get_recency_popularity_and_the_fallback(tmp_path: Path) -> None:
    time_split = {"kind": "time", "target_start": 0.6, "test_start": 0.8}
    config = load_config(write(tmp_path, {"experiment": {"name": "x"}, "split": time_split}), settings=NO_ENV)
    recent = config.components.generator("popular_recent")
    assert recent.kind == "popular" and recent.recency_half_life_days == 30
    assert config.components.popular.recency_half_life_days is None  # all-time popularity beside it
    assert config.components.ranker.fallback == "popular_recent"
    # The experiment still decides, and a per-user split gets neither.
    opted_out = {"experiment": {"name": "x"}, "split": time_split, "components": {"ranker": {"fallback": None}}}
    assert load_config(write(tmp_path, opted_out), settings=NO_ENV).components.ranker.fallback is None
    per_user = load_config(write(tmp_path, {"experiment": {"name": "x"}}), settings=NO_ENV)
    assert "popular_recent" not in per_user.components.generators and per_user.components.ranker.fallback is None
    # --set split.kind=time switches them on too.
    overrides = ["split.kind=time", "split.target_start=0.6", "split.test_start=0.8"]
    assert load_config(write(tmp_path, {"experiment": {"name": "x"}}), overrides,
                       settings=NO_ENV).components.ranker.fallback == "popular_recent"


def test_precedence_defaults_experiment_environment_cli(tmp_path: Path) -> None:
    path = write(tmp_path, {"experiment": {"name": "x"}, "components": {"als": {"factors": 32}},
                            "tracking": {"tracking_uri": "sqlite:///from-experiment.db"}})
    env = MachineSettings(_env_file=None, mlflow_tracking_uri="http://from-env:5000")
    config = load_config(path, ["components.als.factors=16"], settings=env)
    assert config.components.als.factors == 16
    assert config.components.als.iterations == KINDS["als"].config_class().iterations
    assert config.tracking.tracking_uri == "http://from-env:5000"


def test_relative_paths_resolve_against_the_repository() -> None:
    config = load_config(REPO_ROOT / "experiments/lastfm2k.yaml", settings=NO_ENV)
    assert config.output_dir == REPO_ROOT / "outputs"


def test_fingerprint_ignores_where_things_are_logged_and_stored() -> None:
    a = load_config(REPO_ROOT / "experiments/lastfm2k.yaml", settings=NO_ENV)
    b = load_config(REPO_ROOT / "experiments/lastfm2k.yaml", ["tracking.tracking_uri=http://x:1", "output_dir=/tmp/o"],
                    settings=NO_ENV)
    c = load_config(REPO_ROOT / "experiments/lastfm2k.yaml", ["components.als.factors=8"], settings=NO_ENV)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_changing_dataset_kind_replaces_the_section() -> None:
    merged = deep_merge({"dataset": {"kind": "lastfm2k", "download": True}}, {"dataset": {"kind": "synthetic"}})
    assert merged == {"dataset": {"kind": "synthetic"}}


def test_override_parsing() -> None:
    assert parse_override("a.b=3") == {"a": {"b": 3}}
    assert parse_override("a=[1, 2]") == {"a": [1, 2]}
    with pytest.raises(ConfigError):
        parse_override("novalue")


def test_missing_and_malformed_experiment_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", settings=NO_ENV)
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad, settings=NO_ENV)
