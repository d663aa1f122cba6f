"""Saved models are sized to what is read (#27): a stage's model is written only when a later
component reads it, that choice is part of the reuse key, files are compressed, and EASE keeps
the top entries of each column of ``B``."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from encore.outputs import GeneratorOutput
from encore.pipeline.catalogue import model_stages_read
from encore.pipeline.runner import output_dir, run_pipeline
from encore.recommenders.base import Recommender
from encore.recommenders.ease import EASERecommender
from tests.conftest import TINY_SYNTHETIC, make_config


def _experiment(components: dict) -> dict:
    """TINY_SYNTHETIC with more component settings (its own ones kept)."""
    return TINY_SYNTHETIC | {"components": TINY_SYNTHETIC["components"] | components}


def _ranker(**settings: object) -> dict:
    return {"ranker": TINY_SYNTHETIC["components"]["ranker"] | settings}


def test_models_are_read_by_the_ranker_rerank_and_register_only(tmp_path: Path) -> None:
    default = make_config(tmp_path, TINY_SYNTHETIC)
    # Every instance is the ranker's (proposing or feature-only) and it refits: both stages.
    assert {name: model_stages_read(default, name) for name in ("als", "bpr", "als128", "ease500")} == {
        name: ("base", "train") for name in ("als", "bpr", "als128", "ease500")}
    narrow = make_config(tmp_path, _experiment(_ranker(generators=["popular", "als"], refit_generators=False)))
    assert model_stages_read(narrow, "als") == ("base",)  # no refit: test users are scored by the base fit
    assert model_stages_read(narrow, "bpr") == ()  # proposing, but the ranker does not take it
    assert model_stages_read(narrow, "als128") == ("base",)  # feature-only instances are always read
    rerank = make_config(tmp_path, _experiment(_ranker(generators=["popular", "als"]) | {
        "rerank": {"enabled": True, "embeddings_from": "bpr", "content_from": None}}))
    assert model_stages_read(rerank, "bpr") == ("base", "train")  # MMR's item vectors
    fallback = make_config(tmp_path, _experiment(_ranker(generators=["als"], fallback="popular")))
    assert model_stages_read(fallback, "popular") == ("base", "train")  # register serves its popularity
    off = make_config(tmp_path, _experiment(_ranker(enabled=False)))
    assert model_stages_read(off, "als") == ()


def test_an_unread_model_is_not_written_and_a_reader_added_later_gets_one(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """popular outside the ranker writes candidates but no model; naming it in the ranker is a
    new output (computed, with both models), and the first configuration still reuses its own."""
    unread = make_config(tmp_path, _experiment(_ranker(generators=["als", "bpr"])))
    read = make_config(tmp_path, TINY_SYNTHETIC)
    run_pipeline(unread, ["prepare", "popular"])
    without = GeneratorOutput(output_dir(unread, "popular"))
    assert (without.path / without.candidates_file("train")).is_file()
    assert not list(without.path.glob("model_*.npz"))

    assert output_dir(read, "popular") != without.path and output_dir(read, "prepare") == output_dir(unread, "prepare")
    with caplog.at_level(logging.INFO, logger="encore"):
        run_pipeline(read, ["prepare", "popular"])
    assert f"popular: running, output {output_dir(read, 'popular')}" in caplog.text
    with_models = GeneratorOutput(output_dir(read, "popular"))
    base, train = with_models.model("base"), with_models.model("train")
    assert base.n_items_ == train.n_items_ > 0
    # Same fits, same candidates: only what is written differs.
    assert with_models.candidates("train").equals(without.candidates("train"))

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="encore"):
        run_pipeline(unread, ["prepare", "popular"])
    assert f"popular: reusing {without.path}" in caplog.text and not list(without.path.glob("model_*.npz"))


def _fitted_ease(saved_top_k: int | None) -> tuple[EASERecommender, sp.csr_matrix]:
    rng = np.random.default_rng(7)
    plays = sp.random(300, 120, density=0.15, random_state=rng, format="csr", dtype=np.float32)
    plays.data = np.ceil(plays.data * 20)
    return EASERecommender(l2=50.0, min_item_users=1, saved_top_k=saved_top_k).fit(plays), plays


def test_ease_saves_the_top_entries_of_each_column_compressed(tmp_path: Path) -> None:
    model, plays = _fitted_ease(saved_top_k=16)
    m = len(model.items_)
    assert m > 16
    model.save(tmp_path / "pruned.npz")
    loaded = Recommender.load(tmp_path / "pruned.npz")
    assert isinstance(loaded, EASERecommender) and loaded.saved_top_k == 16
    # Each column keeps exactly its 16 largest |B| entries, with their values; the rest is 0.
    kept = loaded.B_ != 0
    assert (kept.sum(axis=0) == 16).all()
    threshold = np.sort(np.abs(model.B_), axis=0)[-16]
    assert (np.abs(model.B_)[kept] >= np.broadcast_to(threshold, kept.shape)[kept]).all()
    np.testing.assert_array_equal(loaded.B_[kept], model.B_[kept])
    # A loaded model scores pairs with the pruned B: X_u @ B_pruned.
    users, items = np.arange(40).repeat(3), np.tile([0, 5, 9], 40)
    pruned = model.weighter_.transform(plays)[:, model.items_] @ np.where(kept, model.B_, 0)
    np.testing.assert_allclose(loaded.score_pairs(users, items, plays),
                               np.asarray(pruned)[users, model._local[items]], rtol=1e-5, atol=1e-6)
    # Members are deflated; np.load needs no pickle.
    with zipfile.ZipFile(tmp_path / "pruned.npz") as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_DEFLATED}

    dense, _ = _fitted_ease(saved_top_k=None)
    dense.save(tmp_path / "dense.npz")
    np.testing.assert_array_equal(Recommender.load(tmp_path / "dense.npz").B_, dense.B_)
    assert (tmp_path / "pruned.npz").stat().st_size < (tmp_path / "dense.npz").stat().st_size / 2
