"""Approximate retrieval (``retrieval: ann``): equal to exact when the index is exact, the
recall bar of the defaults on a seeded synthetic catalogue, heard items never returned,
reproducible, saved with the model, and open to a kind of one's own that exposes factors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from encore.config.experiment import ConfigError, MachineSettings, load_config
from encore.data.dataset_config import SyntheticConfig
from encore.data.synthetic import generate_synthetic
from encore.recommenders import Recommender
from encore.recommenders.als import ALSRecommender
from encore.recommenders.bpr import BPRRecommender
from encore.recommenders.factorization import FactorRecommender
from encore.recommenders.item2item import Item2ItemRecommender
from encore.retrieval import AnnConfig, InnerProductIndex, recall_at
from encore.testing import check_recommender, sample_stage_view

NO_ENV = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)


def _fitted(cls: type[Recommender], n_users: int = 300, n_items: int = 400) -> tuple[Recommender, sp.csr_matrix]:
    side = ("item_features",) if cls is Item2ItemRecommender else ()
    view = sample_stage_view(side, n_users=n_users, n_items=n_items, random_state=3)
    # A light ridge: ALS's default one makes the factors of this tiny stage nearly parallel,
    # and cosine ties at float precision would make the lists differ in their last digits.
    params = {"iterations": 5, "regularization": 0.1} if cls is not Item2ItemRecommender else {"n_components": 16}
    return cls(**params, random_state=0).fit_stage(view), view.user_items


@pytest.mark.parametrize("cls", [ALSRecommender, BPRRecommender, Item2ItemRecommender])
def test_ann_with_an_exact_index_gives_the_exact_lists(cls: type[FactorRecommender]) -> None:
    model, user_items = _fitted(cls)
    users = np.arange(user_items.shape[0])
    exact_ids, exact_scores = model.recommend(users, user_items, 20)
    exact_similar, exact_similar_scores = model.similar_items(np.arange(model.n_items_), 10)
    model.set_retrieval("ann", AnnConfig(index="flat"))
    ids, scores = model.recommend(users, user_items, 20)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-4, atol=1e-5)
    similar, similar_scores = model.similar_items(np.arange(model.n_items_), 10)
    # Items with the same tags have equal embeddings: exact ties, which each path may order its way.
    np.testing.assert_allclose(similar_scores, exact_similar_scores, rtol=1e-4, atol=1e-5)
    assert recall_at(similar, exact_similar, 10) >= 0.99


@pytest.fixture(scope="module")
def catalogue() -> tuple[ALSRecommender, sp.csr_matrix]:
    """ALS on a seeded synthetic catalogue of 10k items: big enough for a graph index to be
    approximate, small enough for a few seconds."""
    ds = generate_synthetic(SyntheticConfig(n_users=4000, n_items=10_000, n_interactions=120_000, random_state=7))
    inter = ds.interactions
    user_items = sp.csr_matrix((inter["weight"].to_numpy(np.float32), (inter["user"], inter["item"])),
                               shape=(len(ds.user_ids), len(ds.item_ids)))
    return ALSRecommender(iterations=5, random_state=7).fit(user_items), user_items


def test_default_index_reaches_the_recall_bar_and_never_returns_heard_items(catalogue) -> None:
    model, user_items = catalogue
    model.set_retrieval("ann", AnnConfig(recall_users=400))
    users = np.arange(user_items.shape[0])
    report = model.retrieval_report(user_items, users, 100, seed=1)
    assert report["ann_recall@100"] >= 0.95, report
    assert report["ann_recall@10"] >= 0.95, report
    sample = np.random.default_rng(2).choice(users, 500, replace=False)
    ids, scores = model.recommend(sample, user_items, 100)
    heard = user_items[sample]
    assert not np.isin(ids + np.arange(len(sample))[:, None] * model.n_items_,
                       heard.nonzero()[0] * model.n_items_ + heard.nonzero()[1]).any()
    assert (np.diff(scores, axis=1) <= 0).all()  # best first


def test_heard_items_are_filtered_exactly_past_max_fetch() -> None:
    """A user whose history is longer than the fetch bound is scored exactly; nothing heard comes back."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 16)).astype(np.float32)
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    first = sp.csr_matrix(np.r_[np.ones(2950), np.zeros(50)].astype(np.float32))  # all but 50 heard
    heard = sp.vstack([first, sp.random(49, 3000, density=0.05, random_state=1, dtype=np.float32)]).tocsr()
    for settings in (AnnConfig(max_fetch=128), AnnConfig(index="ivf", nlist=16, nprobe=4)):
        ids, _ = InnerProductIndex(vectors, settings, seed=3).top_n(queries, 60, heard)
        dense = heard.toarray() > 0
        valid = ids >= 0
        assert not dense[np.nonzero(valid)[0], ids[valid]].any()
        assert (ids[0, :50] >= 2950).all() and (ids[0, 50:] == -1).all()


@pytest.mark.parametrize("settings", [AnnConfig(), AnnConfig(index="hnsw", hnsw_m=16, ef_construction=64)],
                         ids=["pq", "hnsw"])
def test_index_build_and_search_are_reproducible(catalogue, settings: AnnConfig) -> None:
    model, user_items = catalogue
    users = np.arange(500)
    runs = []
    for _ in range(2):  # a fresh model each time: no index cached
        clone = ALSRecommender(iterations=5, random_state=7)
        clone.model_, clone.n_users_, clone.n_items_ = model.model_, model.n_users_, model.n_items_
        clone.set_retrieval("ann", settings)  # hnsw: the build procedure, cheaply
        runs.append(clone.recommend(users, user_items, 50)[0])
    np.testing.assert_array_equal(runs[0], runs[1])


def test_retrieval_settings_are_saved_with_the_model(tmp_path: Path) -> None:
    model, user_items = _fitted(ALSRecommender)
    model.set_retrieval("ann", AnnConfig(index="ivf", nprobe=8, nlist=4))
    model.save(tmp_path / "als.npz")
    loaded = Recommender.load(tmp_path / "als.npz")
    assert isinstance(loaded, ALSRecommender) and loaded.retrieval == "ann" and loaded.ann == model.ann
    users = np.arange(50)
    np.testing.assert_array_equal(loaded.recommend(users, user_items, 10)[0], model.recommend(users, user_items, 10)[0])


class FixedFactors(FactorRecommender):
    """A kind of one's own exposing factors: seeded random vectors, nothing else."""

    def __init__(self, dim: int = 8, random_state: int | None = 0):
        self.dim, self.random_state = dim, random_state

    def fit(self, user_items: sp.csr_matrix) -> FixedFactors:
        rng = np.random.default_rng(self.random_state)
        self.n_users_, self.n_items_ = user_items.shape
        self.users_ = rng.normal(size=(self.n_users_, self.dim)).astype(np.float32)
        self.items_ = rng.normal(size=(self.n_items_, self.dim)).astype(np.float32)
        return self

    def item_vectors(self) -> np.ndarray:
        return self.items_

    def user_vectors(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.users_[user_ids]

    def _model_state(self) -> dict[str, np.ndarray]:
        return {"users": self.users_, "items": self.items_}

    def _set_model_state(self, state: dict[str, np.ndarray]) -> None:
        self.users_, self.items_ = state["users"], state["items"]


def test_a_kind_exposing_factors_keeps_the_contract_and_retrieves_with_ann() -> None:
    check_recommender(FixedFactors)
    view = sample_stage_view(n_users=100, n_items=300)
    model = FixedFactors().fit(view.user_items)
    exact, _ = model.recommend(np.arange(100), view.user_items, 10)
    model.set_retrieval("ann", AnnConfig(index="flat"))
    np.testing.assert_array_equal(model.recommend(np.arange(100), view.user_items, 10)[0], exact)


def test_ann_on_a_kind_without_vectors_is_a_config_error(tmp_path: Path) -> None:
    experiment = tmp_path / "e.yaml"
    experiment.write_text("components:\n  ease:\n    retrieval: ann\n")
    with pytest.raises(ConfigError, match="retrieval"):
        load_config(experiment, settings=NO_ENV)
    experiment.write_text("components:\n  als:\n    retrieval: ann\n    ann: {index: ivf, nprobe: 8}\n")
    config = load_config(experiment, settings=NO_ENV)
    assert config.components.generator("als").ann.nprobe == 8
