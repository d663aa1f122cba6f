"""docs/extending.md, run as written: its four recipes (generator, ranker feature group, ranking
metric, data source) copied into a package outside Encore and used by one small pipeline; and
bad plug-in names failing at config load, naming the key."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from encore import lineage
from encore.config.experiment import ConfigError, EncoreConfig, deep_merge
from encore.data import load_dataset
from encore.evaluation.metrics.accuracy import RANKING_METRICS
from encore.outputs import EvaluateOutput, GeneratorOutput, RankerOutput
from encore.pipeline.runner import fingerprint, output_dir, pipeline_components, run_pipeline
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config

DOC = REPO_ROOT / "docs" / "extending.md"
BLOCK = re.compile(r"```(python|yaml)\n(.*?)```", re.DOTALL)
PACKAGE = "my_encore"


def doc_blocks() -> tuple[dict[str, str], list[dict]]:
    """The page's ``# file: <path>`` Python blocks by path, and its ``# experiment`` YAML blocks."""
    files: dict[str, str] = {}
    experiments: list[dict] = []
    for language, text in BLOCK.findall(DOC.read_text()):
        first, _, rest = text.partition("\n")
        if language == "python" and first.startswith("# file: "):
            files[first.removeprefix("# file: ").strip()] = text
        elif language == "yaml" and first.strip() == "# experiment":
            experiments.append(yaml.safe_load(rest))
    return files, experiments


def test_the_page_has_the_four_recipes() -> None:
    files, experiments = doc_blocks()
    assert sorted(files) == [f"{PACKAGE}/{name}.py" for name in ("listens", "loyalty", "metrics", "plays")]
    assert len(experiments) == 4
    # The public API, not the module paths behind it (nor the old scripts.core ones).
    assert "scripts." not in DOC.read_text()
    assert "from encore.recommenders import GeneratorConfig, Recommender, topk" in files[f"{PACKAGE}/plays.py"]


@pytest.fixture(scope="module")
def user_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The page's files, exactly, as the package ``my_encore`` on ``sys.path``."""
    root = tmp_path_factory.mktemp("user_code")
    files, _ = doc_blocks()
    (root / PACKAGE).mkdir()
    (root / PACKAGE / "__init__.py").write_text("")
    for path, text in files.items():
        (root / path).write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield root
    RANKING_METRICS.pop("rbp", None)  # the table is the process's: leave it as the other tests expect


def play_counts(path: Path) -> Path:
    """A seeded play-count file in the recipe's format: 300 users, 400 artists, popularity skewed."""
    rng = np.random.default_rng(5)
    popularity = 1.0 / np.arange(1, 401) ** 0.8
    rows = []
    for user in range(300):
        artists = rng.choice(400, size=int(rng.integers(12, 40)), replace=False, p=popularity / popularity.sum())
        rows += [(f"u{user}", int(a), int(rng.integers(1, 200))) for a in artists]
    pd.DataFrame(rows, columns=["user", "artist", "plays"]).to_csv(path, sep="\t", index=False)
    return path


def experiment(data_file: Path) -> dict:
    """The page's experiment blocks over a small, quick base (the slow or side-data generators off)."""
    _, blocks = doc_blocks()
    off = {"enabled": False}
    base = {"experiment": TINY_SYNTHETIC["experiment"],
            "components": {"ranker": TINY_SYNTHETIC["components"]["ranker"], "als": {"iterations": 5},
                           **{name: off for name in ("bpr", "item2item", "itemknn", "friends", "userknn", "als128",
                                                     "als32", "bpr128", "ease500", "knncos")}}}
    for block in blocks:
        base = deep_merge(base, block)
    base["dataset"]["path"] = str(data_file)
    return base


@pytest.fixture(scope="module")
def extended(tmp_path_factory: pytest.TempPathFactory, user_package: Path) -> EncoreConfig:
    folder = tmp_path_factory.mktemp("extended")
    config = make_config(folder, experiment(play_counts(folder / "my_plays.tsv")))
    run_pipeline(config, note="extending")
    return config


def test_the_data_source_loads_and_keys_prepare_on_its_file(extended: EncoreConfig, tmp_path: Path) -> None:
    assert extended.dataset.kind == f"{PACKAGE}.listens:PlayCountsSource"
    dataset = load_dataset(extended.dataset, data_dir=extended.data_dir)
    assert dataset.n_users == 300 and dataset.files == {"interactions": extended.dataset.path}
    # The source's files key prepare's reuse: new content, new key (on a copy: the run's outputs stay).
    copy = tmp_path / "my_plays.tsv"
    copy.write_bytes(extended.dataset.path.read_bytes())
    config = extended.model_copy(update={"dataset": extended.dataset.model_copy(update={"path": copy})})
    before = fingerprint(config, "prepare")
    with copy.open("a") as file:
        file.write("u0\t399\t7\n")
    assert fingerprint(config, "prepare") != before


def test_the_generator_is_a_component_whose_scores_the_ranker_uses(extended: EncoreConfig) -> None:
    assert "plays" in pipeline_components(extended)
    assert GeneratorOutput(output_dir(extended, "plays")).candidates("train")["item"].nunique() > 10
    features = set(RankerOutput(output_dir(extended, "ranker")).feature_importance()["feature"])
    assert {"plays_score", "plays_rank"} <= features


def test_the_feature_group_adds_its_columns_after_the_built_in_ones(extended: EncoreConfig) -> None:
    importance = RankerOutput(output_dir(extended, "ranker")).feature_importance()
    assert {"item_plays_per_listener", "plays_per_listener_ratio", "item_listeners"} <= set(importance["feature"])


def test_the_metric_is_reported_at_every_k(extended: EncoreConfig) -> None:
    comparison = EvaluateOutput(output_dir(extended, "evaluate")).comparison()
    for k in extended.evaluation.ks:
        assert comparison[f"rbp@{k}"].between(0, 1).all()
    # More hits near the top: the ranker's RBP follows its NDCG against the popularity list.
    assert comparison.loc["ranker", "rbp@10"] > 0 and comparison.loc["popular", "rbp@10"] > 0


@pytest.mark.parametrize(("patch", "where", "fragment"), [
    ({"components": {"ranker": {"features": ["user", "my_encore.loyalty:Nothing"]}}},
     "components.ranker.features.1", "has no attribute 'Nothing'"),
    ({"components": {"ranker": {"features": ["user", "usr"]}}}, "components.ranker.features.1",
     "unknown feature group 'usr'"),
    ({"components": {"ranker": {"features": ["my_encore.plays:PlaysRecommender"]}}},
     "components.ranker.features.0", "not a subclass of encore.ranking.FeatureGroup"),
    ({"components": {"ranker": {"features": ["user", "my_encore.loyalty:PlaysPerListener",
                                             "my_encore.loyalty:PlaysPerListener"]}}},
     "components.ranker.features", "listed more than once"),
    ({"evaluation": {"metrics": ["my_encore.metrics:PERSISTENCE"]}}, "evaluation.metrics.0", "is not a function"),
    ({"evaluation": {"metrics": ["my_encore.nowhere:rbp"]}}, "evaluation.metrics.0", "cannot import module"),
    ({"dataset": {"kind": "my_encore.listens:Missing"}}, "dataset", "kind: source 'my_encore.listens:Missing'"),
    ({"dataset": {"kind": "my_encore.plays:PlaysConfig"}}, "dataset", "not a subclass of encore.data.DataSource"),
    ({"dataset": {"kind": "my_encore.listens:PlayCountsSource", "path": "x.tsv", "sep": ","}}, "dataset",
     "rejects the settings: sep: Extra inputs are not permitted"),
])
def test_a_bad_plug_in_name_fails_at_load_naming_the_key(tmp_path: Path, user_package: Path, patch: dict,
                                                         where: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as error:
        make_config(tmp_path, deep_merge(TINY_SYNTHETIC, patch))
    line = next(line for line in str(error.value).splitlines() if fragment in line)
    # One problem, one line: the source, then the key.
    assert line.startswith("invalid configuration (") and f"): {where}: " in line


def test_editing_a_plug_in_recomputes_what_it_keys(extended: EncoreConfig, user_package: Path) -> None:
    """The data source's, feature groups' and metrics' modules are in the reuse keys (every
    output's: they are named in the config, not imported by a component)."""
    assert extended.plugin_modules() == [f"{PACKAGE}.listens", f"{PACKAGE}.loyalty", f"{PACKAGE}.metrics"]
    loyalty = user_package / PACKAGE / "loyalty.py"
    source = loyalty.read_text()
    before = {name: fingerprint(extended, name) for name in ("prepare", "ranker", "evaluate")}
    try:
        loyalty.write_text(source + "\nEDITED = 1  # code, not a comment: comments key nothing\n")
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
        after = {name: fingerprint(extended, name) for name in before}
    finally:
        loyalty.write_text(source)
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
    assert all(after[name] != before[name] for name in before)
    assert {name: fingerprint(extended, name) for name in before} == before
