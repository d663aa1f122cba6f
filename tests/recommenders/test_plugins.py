"""Generators as plug-ins: named instances of one kind, a user's own kind from outside the package,
the layers pointing one way, and user-kNN against a per-user reference."""

from __future__ import annotations

import ast
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.preprocessing import normalize

from encore import lineage
from encore.config.experiment import ConfigError, EncoreConfig
from encore.outputs import EvaluateOutput, GeneratorOutput, RankerOutput
from encore.pipeline import runner
from encore.pipeline.runner import fingerprint, output_dir, pipeline_components, run_pipeline
from encore.recommenders import UserKNNRecommender
from encore.tracking.runs import experiment_name, tracking_uri
from tests.conftest import REPO_ROOT, TINY_SYNTHETIC, make_config

USER_MODULE = '''
"""A user's own generator, outside Encore: items by total plays raised to a power."""
from typing import Literal

import numpy as np

from encore.recommenders.base import Recommender, as_ids, drop_self, topk
from encore.recommenders.generator_config import GeneratorConfig


class PlaysConfig(GeneratorConfig):
    power: float = 1.0


class PlaysRecommender(Recommender):
    config_class = PlaysConfig

    def __init__(self, power: float = 1.0):
        self.power = power

    def fit(self, user_items):
        self.plays_ = np.asarray(user_items.sum(axis=0), dtype=np.float32).ravel() ** self.power
        self.n_users_, self.n_items_ = user_items.shape
        return self

    def score(self, user_ids, user_items):
        return np.broadcast_to(self.plays_, (len(as_ids(user_ids)), self.n_items_)).copy()

    def similar_items(self, item_ids, N):
        item_ids = as_ids(item_ids)
        ids, scores = topk(self.plays_[None, :], N + 1)
        return drop_self(item_ids, np.repeat(ids, len(item_ids), 0), np.repeat(scores, len(item_ids), 0), N)

    def _get_state(self):
        return {"plays": self.plays_}

    def _set_state(self, state):
        self.plays_ = state["plays"]


class NotARecommender:
    pass
'''

USER_KIND = "encore_user_models.plays:PlaysRecommender"
# Small and quick: the tiny synthetic data with two instances of one kind (all-time and recent
# popularity) and a user's own kind beside the defaults.
PLUGGED = TINY_SYNTHETIC | {"components": {
    **TINY_SYNTHETIC["components"],
    "popular_recent": {"kind": "popular", "recency_half_life_days": 30},
    "mine": {"kind": USER_KIND, "power": 0.5},
}}


@pytest.fixture(scope="module")
def user_package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("user_code")
    (root / "encore_user_models").mkdir()
    (root / "encore_user_models" / "__init__.py").write_text("")
    (root / "encore_user_models" / "plays.py").write_text(USER_MODULE)
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(root))
        yield root


@pytest.fixture(scope="module")
def plugged(tmp_path_factory: pytest.TempPathFactory, user_package: Path) -> EncoreConfig:
    """One pipeline run (with register) holding both popularity variants and the user's kind."""
    config = make_config(tmp_path_factory.mktemp("plugged"), PLUGGED)
    run_pipeline(config, [*pipeline_components(config), "register"])
    return config


def test_two_instances_of_one_kind_are_two_components(plugged: EncoreConfig) -> None:
    assert {"popular", "popular_recent"} <= set(pipeline_components(plugged))
    old, recent = (GeneratorOutput(output_dir(plugged, name)) for name in ("popular", "popular_recent"))
    assert old.path != recent.path
    # Recency weighting on the synthetic timestamps changes the lists: two different models.
    assert not old.candidates("train").equals(recent.candidates("train"))
    assert old.model("train").recency_applied_ is False and recent.model("train").recency_applied_ is True

    features = set(RankerOutput(output_dir(plugged, "ranker")).feature_importance()["feature"])
    assert {"popular_rank", "popular_recent_rank", "popular_recent_score"} <= features
    comparison = EvaluateOutput(output_dir(plugged, "evaluate")).comparison()
    assert {"popular", "popular_recent", "mine", "userknn", "als128", "ranker"} <= set(comparison.index)
    assert comparison.loc["popular", "ndcg@10"] != comparison.loc["popular_recent", "ndcg@10"]

    mlflow.set_tracking_uri(tracking_uri(plugged))
    runs = mlflow.search_runs(experiment_names=[experiment_name(plugged)])
    child = runs[runs["tags.encore.component"] == "popular_recent"].iloc[0]
    assert child["params.recency_half_life_days"] == "30.0" and child["tags.encore.kind"] == "popular"
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    assert parent["params.components.popular_recent.recency_half_life_days"] == "30.0"
    assert not np.isnan(parent["metrics.popular_recent.ndcg_at_10"])


def test_a_users_own_kind_runs_through_ranker_evaluate_and_register(plugged: EncoreConfig) -> None:
    mine = GeneratorOutput(output_dir(plugged, "mine"))
    assert mine.model("train").power == 0.5
    features = set(RankerOutput(output_dir(plugged, "ranker")).feature_importance()["feature"])
    assert {"mine_score", "mine_rank", "mine_proposed"} <= features
    significance = EvaluateOutput(output_dir(plugged, "evaluate")).significance()
    assert "mine" in significance["comparisons"]
    # Per-user holdout: warm holds every test user, so it is reported as "all" (scored once).
    warm, every = significance["segments"]["warm"], significance["segments"]["all"]
    assert warm["n_users"] == every["n_users"] and warm["comparisons"] == every["comparisons"]
    assert warm["vs_best_generator"] == every["vs_best_generator"]
    mlflow.set_tracking_uri(tracking_uri(plugged))
    name = plugged.tracking.registered_model_name
    aliases = mlflow.MlflowClient().get_registered_model(name).aliases
    assert {k: str(v) for k, v in aliases.items()} == {"challenger": "1"}


def test_feature_only_instances_add_features_not_candidates(plugged: EncoreConfig) -> None:
    assert plugged.components.als128.propose is False
    features = set(RankerOutput(output_dir(plugged, "ranker")).feature_importance()["feature"])
    assert {"als128_score", "als128_cosine"} <= features and "als128_rank" not in features


def test_a_users_kind_is_in_its_outputs_reuse_key(plugged: EncoreConfig, user_package: Path) -> None:
    digests = runner.code_digests(plugged, "mine")
    source = user_package / "encore_user_models" / "plays.py"
    assert digests["recommender"] == lineage.code_digest("encore_user_models.plays")
    before = fingerprint(plugged, "mine"), fingerprint(plugged, "ranker"), fingerprint(plugged, "als")
    original = source.read_text()
    try:
        source.write_text(original + "\nEDITED = 1\n")
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
        after = fingerprint(plugged, "mine"), fingerprint(plugged, "ranker"), fingerprint(plugged, "als")
    finally:
        source.write_text(original)
        lineage.code_digest.cache_clear()
        lineage.module_closure.cache_clear()
    assert after[0] != before[0] and after[1] != before[1] and after[2] == before[2]


def test_one_instance_runs_alone_from_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    experiment = tmp_path / "experiment.yaml"
    import yaml

    experiment.write_text(yaml.safe_dump(TINY_SYNTHETIC | {"components": {"als_16": {"kind": "als", "factors": 16,
                                                                                     "iterations": 3}}}))
    env = {"--set": [f"output_dir={tmp_path / 'out'}", f"tracking.tracking_uri=sqlite:///{tmp_path / 'm.db'}"]}
    sets = [a for value in env["--set"] for a in ("--set", value)]
    assert runner.main(["-e", str(experiment), "-c", "prepare,als_16", *sets]) == 0, capsys.readouterr().err
    produced = sorted(p.name.split("-")[0] for p in (tmp_path / "out" / "tiny").iterdir() if not p.name.startswith("."))
    assert produced == ["als_16", "prepare"]
    from encore.components import generator

    assert generator.main(["als_17", "-e", str(experiment), *sets]) == 2
    assert "components.als_17: no such generator instance" in capsys.readouterr().err


def test_a_users_kind_with_rejected_params_names_the_key(tmp_path: Path, user_package: Path) -> None:
    bad = TINY_SYNTHETIC | {"components": {"mine": {"kind": USER_KIND, "power": "high"}}}
    with pytest.raises(ConfigError, match=r"components\.mine: PlaysConfig of kind "
                                          r"'encore_user_models\.plays:PlaysRecommender' rejects the settings: "
                                          r"power: Input should be a valid number"):
        make_config(tmp_path, bad)
    not_one = TINY_SYNTHETIC | {"components": {"mine": {"kind": "encore_user_models.plays:NotARecommender"}}}
    with pytest.raises(ConfigError, match=r"NotARecommender is not a subclass of encore\.recommenders\.base"):
        make_config(tmp_path, not_one)


def test_missing_side_data_names_the_instance(tmp_path: Path) -> None:
    """Tabular data without social links: an extra friends instance fails naming its key."""
    plays = tmp_path / "plays.csv"
    rng = np.random.default_rng(0)
    pd.DataFrame({"user": rng.integers(0, 40, 800), "item": rng.integers(0, 60, 800)}).to_csv(plays, index=False)
    config = make_config(tmp_path, {"experiment": {"name": "side"}, "dataset": {
        "kind": "tabular", "interactions": str(plays), "columns": {"user": "user", "item": "item"}},
        "components": {"pals": {"kind": "friends"}}})
    with pytest.raises(runner.ComponentFailed, match=r"components\.pals: kind 'friends' needs social, which dataset "
                                                      r"'plays' does not have; set components\.pals\.enabled: false"):
        run_pipeline(config, ["prepare", "pals"])


# ----------------------------------------------------------------------------- layers
def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_layers_point_one_way() -> None:
    """components -> pipeline -> the library: the library names neither, the pipeline never names a component."""
    upper = (REPO_ROOT / "encore/components", REPO_ROOT / "encore/pipeline")
    library = [p for p in (REPO_ROOT / "encore").rglob("*.py") if not any(p.is_relative_to(u) for u in upper)]
    for path in library:
        upward = {n for n in _imports(path) if n.startswith(("encore.components", "encore.pipeline"))}
        assert not upward, f"{path.relative_to(REPO_ROOT)} imports {upward}"
    for path in (REPO_ROOT / "encore/pipeline").rglob("*.py"):
        assert not {n for n in _imports(path) if n.startswith("encore.components")}, path
    # No component spells another's file names or imports another for them (register: not yet).
    for path in (REPO_ROOT / "encore/components").glob("*.py"):
        if path.stem in {"register", "promote"}:
            continue
        others = {n for n in _imports(path) if n.startswith("encore.components")}
        assert not others, f"{path.name} imports {others}"
        text = path.read_text()
        for name in ("candidates_train.parquet", "similar_items.parquet", "model_train.npz", "feature_models.parquet"):
            assert name not in text, f"{path.name} spells {name}"


# ----------------------------------------------------------------------------- user-kNN
def test_userknn_equals_a_per_user_reference() -> None:
    rng = np.random.default_rng(1)
    dense = (rng.random((30, 25)) < 0.25) * rng.integers(1, 9, (30, 25))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    model = UserKNNRecommender(K=4, weighting="log1p", similarity_exponent=2.0).fit(user_items)
    weighted = np.log1p(dense.astype(np.float64))
    unit = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-12)
    expected = np.zeros_like(weighted)
    for u in range(30):  # the textbook definition, one user at a time
        sims = unit @ unit[u]
        sims[u] = -np.inf
        order = np.lexsort((np.arange(30), -sims))[:4]
        for v in order:
            if sims[v] > 0:
                expected[u] += sims[v] ** 2 * weighted[v]
    users = np.arange(30)
    np.testing.assert_allclose(model.score(users, user_items), expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.score(users[::-1], user_items), expected[::-1], rtol=1e-4, atol=1e-5)
    ids, _ = model.recommend(users, user_items, 5, batch_size=7)
    assert not any(set(ids[u][ids[u] >= 0]) & set(user_items[u].indices) for u in users)



def test_userknn_bounded_index_keeps_each_items_strongest_listeners() -> None:
    """``max_item_listeners``: each item's posting list keeps its M largest normalised weights, and
    similarities are the dot products over what is kept (a reference built by hand)."""
    rng = np.random.default_rng(3)
    dense = (rng.random((40, 12)) < 0.5) * rng.integers(1, 9, (40, 12))
    user_items = sp.csr_matrix(dense.astype(np.float32))
    cut = 6
    model = UserKNNRecommender(K=5, weighting="log1p", similarity_exponent=1.0, max_item_listeners=cut).fit(user_items)
    weighted = np.log1p(dense.astype(np.float64))
    unit = weighted / np.maximum(np.linalg.norm(weighted, axis=1, keepdims=True), 1e-12)
    kept = np.zeros_like(unit)
    for i in range(unit.shape[1]):
        listeners = np.flatnonzero(unit[:, i] > 0)
        best = listeners[np.lexsort((listeners, -unit[listeners, i]))[:cut]]
        kept[best, i] = unit[best, i]
    assert (np.diff(model._pool.indptr) <= cut).all() and (user_items.getnnz(axis=0) > cut).any()
    np.testing.assert_allclose(model._pool.toarray(), kept.T, rtol=1e-6)
    expected = np.zeros_like(weighted)
    for u in range(40):
        sims = kept @ unit[u]
        sims[u] = -np.inf
        for v in np.lexsort((np.arange(40), -sims))[:5]:
            if sims[v] > 0:
                expected[u] += sims[v] * weighted[v]
    np.testing.assert_allclose(model.score(np.arange(40), user_items), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("cores", [1, 2, 3])
def test_userknn_neighbour_search_in_chunks_changes_nothing(cores: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunk sizes, the dense or padded selection and the threads the chunks run on give the
    same neighbours."""
    monkeypatch.setattr("encore.threads.available_cores", lambda: cores)
    rng = np.random.default_rng(4)
    user_items = sp.random(200, 80, density=0.1, random_state=5, format="csr",
                           data_rvs=lambda n: rng.integers(1, 20, n).astype(np.float32))
    whole = UserKNNRecommender(K=7, max_item_listeners=15).fit(user_items)
    chunked = UserKNNRecommender(K=7, max_item_listeners=15)
    chunked.PRODUCT_CELLS = 50  # a few users per chunk, from the search at fit on
    chunked.fit(user_items)
    users = np.arange(200)
    expected = whole.neighbours(users, user_items)
    assert (expected != chunked.neighbours(users, user_items)).nnz == 0
    np.testing.assert_array_equal(whole.recommend(users, user_items, 10)[0],
                                  chunked.recommend(users, user_items, 10)[0])
    for dense_from in (0.0, 2.0):  # every chunk one dense block / every chunk padded rows
        chunked.DENSE_FROM = dense_from
        assert (expected != chunked._search(users, chunked.plays_)).nnz == 0


@pytest.mark.parametrize("dense_from", [0.0, 2.0])
def test_userknn_neighbour_ties_go_to_the_lower_user_id(dense_from: float) -> None:
    """Binary plays give many equal cosines: both selections keep, of the tied users at the K-th
    place, the lowest ids (a reference sorted by hand from the index's own similarities)."""
    user_items = sp.random(120, 30, density=0.12, random_state=8, format="csr", dtype=np.float32)
    user_items.data[:] = 1.0
    model = UserKNNRecommender(K=6, weighting="none", similarity_exponent=1.0, max_item_listeners=None)
    model.DENSE_FROM, model.PRODUCT_CELLS = dense_from, 400
    model.fit(user_items)
    sims = (normalize(model.plays_) @ model._pool).toarray()
    np.fill_diagonal(sims, 0.0)
    expected = np.zeros_like(sims)
    for u in range(120):
        best = np.lexsort((np.arange(120), -sims[u]))[:6]
        best = best[sims[u, best] > 0]
        expected[u, best] = sims[u, best]
    tied = [u for u in range(120) if np.sum(sims[u] == np.sort(sims[u])[-6]) > 1]
    assert len(tied) > 20  # the case this test is for
    np.testing.assert_array_equal(model.neighbours(np.arange(120), user_items).toarray(), expected.astype(np.float32))


@pytest.mark.parametrize("weighting", ["log1p", "bm25", "none"])
def test_userknn_reuses_the_fit_search_only_for_unchanged_histories(weighting: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(6)
    user_items = sp.random(60, 40, density=0.15, random_state=7, format="csr",
                           data_rvs=lambda n: rng.integers(1, 20, n).astype(np.float32))
    model = UserKNNRecommender(K=5, weighting=weighting, max_item_listeners=10).fit(user_items)
    users = np.array([17, 3, 42, 3, 0])
    searched = model._search(users, model.weighter_.transform(user_items[users]))
    searches: list[int] = []
    search = model._search
    monkeypatch.setattr(model, "_search", lambda ids, plays: searches.append(len(ids)) or search(ids, plays))
    assert (model.neighbours(users, user_items) != searched).nnz == 0 and searches == []  # every row reused
    new_item = int(np.setdiff1d(np.arange(40), user_items[3].indices)[0])
    gone_item = int(user_items[42].indices[0])
    changed = user_items.tolil()
    changed[3, new_item], changed[42, gone_item] = 5.0, 0.0  # user 3 plays an item anew; one of 42's goes
    changed = changed.tocsr().astype(np.float32)
    changed.eliminate_zeros()
    expected = search(users, model.weighter_.transform(changed[users]))
    assert (model.neighbours(users, changed) != expected).nnz == 0 and searches == [3]  # 3, 42, 3 searched
    model.save(tmp_path / "m")
    loaded = UserKNNRecommender.load(tmp_path / "m")
    assert (loaded.neighbours_ != model.neighbours_).nnz == 0


def test_same_rows_compares_columns_and_values() -> None:
    from encore.recommenders.userknn import same_rows

    a = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 0], [4, 0, 0], [0, 0, 0]], dtype=np.float32))
    b = sp.csr_matrix(np.array([[1, 0, 2], [0, 3, 1], [5, 0, 0], [0, 0, 0]], dtype=np.float32))
    assert same_rows(a, b).tolist() == [True, False, False, True]
    moved = sp.csr_matrix(np.float32([[1, 0, 0]])), sp.csr_matrix(np.float32([[0, 1, 0]]))
    assert same_rows(*moved).tolist() == [False]  # same length and value, another column
