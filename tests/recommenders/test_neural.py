"""The neural kinds (sasrec, twotower): seeded, early stopping on a scorer, fold-in, PyTorch optional.

The contract suite runs them in ``test_contract.py``; what the pipeline does with them (early stopping
on the ranker-target part, never a test event) is in ``tests/pipeline/test_neural_pipeline.py``.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

from encore.recommenders.generator_config import SideDataMissing
from encore.recommenders.sasrec import SASRecRecommender, sequences
from encore.recommenders.twotower import TwoTowerRecommender, bags
from encore.testing import sample_stage_view
from tests.paths import REPO_ROOT as REPO

SMALL = {"factors": 16, "epochs": 4, "num_threads": 1}
VIEW = sample_stage_view(("item_features", "timestamps"), n_users=60, n_items=50, random_state=1)
KINDS = (SASRecRecommender, TwoTowerRecommender)


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.name)
def test_the_same_seed_on_one_thread_gives_identical_embeddings(cls) -> None:
    first, second = (cls(**SMALL, random_state=7).fit_stage(VIEW) for _ in range(2))
    np.testing.assert_array_equal(first.user_factors_, second.user_factors_)
    np.testing.assert_array_equal(first.item_factors_, second.item_factors_)
    other = cls(**SMALL, random_state=8).fit_stage(VIEW)
    assert not np.array_equal(first.item_factors_, other.item_factors_)


@pytest.mark.parametrize("cls", KINDS, ids=lambda cls: cls.name)
def test_early_stopping_keeps_the_best_epoch(cls) -> None:
    """A scorer that peaks at epoch 2: training stops ``patience`` epochs later and the model holds
    epoch 2's embeddings (those a 2-epoch fit with the same seed gets)."""
    peak = [0.1, 0.5, 0.3, 0.2, 0.1, 0.0, 0.0, 0.0]
    model = cls(**SMALL | {"epochs": 8, "patience": 2}, random_state=3)
    model.epoch_scorer = lambda m: peak[len(m.epoch_scores_)]
    model.fit_stage(VIEW)
    assert model.epoch_scores_ == peak[:4] and model.best_epoch_ == 2
    two = cls(**SMALL | {"epochs": 2}, random_state=3)
    two.fit_stage(VIEW)
    np.testing.assert_allclose(model.item_factors_, two.item_factors_, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(model.user_factors_, two.user_factors_, rtol=1e-5, atol=1e-6)


def test_sequences_are_the_latest_items_by_time_left_padded() -> None:
    stamps = sp.csr_matrix(np.array([[30.0, 10.0, 0.0, 20.0], [0.0, 0.0, 0.0, 0.0], [5.0, 5.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(sequences(stamps, 2), [[4, 1], [0, 0], [1, 2]])  # ids + 1, ties by id
    np.testing.assert_array_equal(sequences(stamps, 4), [[0, 2, 4, 1], [0, 0, 0, 0], [0, 3, 1, 2]])


def test_sasrec_without_timestamps_says_so() -> None:
    with pytest.raises(SideDataMissing, match=r"kind 'sasrec' needs timestamps, which this dataset does not have"):
        SASRecRecommender(**SMALL).fit(VIEW.user_items)
    with pytest.raises(ValueError, match=r"factors \(16\) must be a multiple of n_heads \(3\)"):
        SASRecRecommender(**SMALL, n_heads=3).fit_stage(VIEW)


def test_bags_gather_the_rows() -> None:
    matrix = sp.csr_matrix(np.array([[0, 2.0, 3.0], [0, 0, 0], [1.0, 0, 0]], dtype=np.float32))
    ids, offsets, values = bags(matrix, np.array([2, 1, 0]))
    np.testing.assert_array_equal(ids, [0, 1, 2])
    np.testing.assert_array_equal(offsets, [0, 1, 1])
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0])


def _clustered(n_users: int = 300, n_items: int = 120, n_clusters: int = 6) -> tuple[sp.csr_matrix, np.ndarray]:
    """Users each listening to 8 items of one cluster and 2 at random: structure a new user's
    history reveals."""
    rng = np.random.default_rng(0)
    cluster_of = np.arange(n_items) % n_clusters
    rows, cols = [], []
    for user in range(n_users):
        pool = np.flatnonzero(cluster_of == rng.integers(n_clusters))
        items = np.unique(np.concatenate([rng.choice(pool, 8, replace=False), rng.choice(n_items, 2)]))
        rows += [user] * len(items)
        cols += list(items)
    plays = rng.integers(1, 30, len(rows)).astype(np.float32)
    return sp.csr_matrix((plays, (rows, cols)), shape=(n_users, n_items)), cluster_of


def test_fold_in_approximates_a_refit_on_the_new_users_history() -> None:
    """20 users unknown to a model get embeddings from their histories alone (fold-in, no refit);
    a refit that trained on them scores items alike. Tolerances (measured: correlation 0.73, cluster
    hit 0.99 vs 0.93): mean Pearson correlation of the two models' item scores >= 0.6, and the fold-in's
    top 10 fall in the user's own cluster no less often than the refit's minus 0.05."""
    X, cluster_of = _clustered()
    new = np.arange(280, 300)
    without = X.tolil()
    without[new] = 0
    without = sp.csr_matrix(without)
    without.eliminate_zeros()
    settings = {"epochs": 10, "factors": 32, "num_threads": 1, "train_batch_size": 256}
    folded_model = TwoTowerRecommender(**settings).fit(without)
    refit = TwoTowerRecommender(**settings).fit(X)
    folded = folded_model.fold_in(X, new) @ folded_model.item_factors_.T
    refitted = refit.score(new, X)
    correlation = np.mean([np.corrcoef(a, b)[0, 1] for a, b in zip(folded, refitted, strict=True)])
    assert correlation >= 0.6, f"fold-in vs refit item-score correlation {correlation:.3f}"
    own = np.array([np.bincount(cluster_of[X[user].indices]).argmax() for user in new])

    def hit(scores: np.ndarray) -> float:
        return float(np.mean(cluster_of[np.argsort(-scores, axis=1)[:, :10]] == own[:, None]))

    assert hit(folded) >= hit(refitted) - 0.05, (hit(folded), hit(refitted))
    # Fold-in reads only the history: a user's own row gives the same embedding as the whole matrix's.
    np.testing.assert_allclose(folded_model.fold_in(X[new[:1]]), folded_model.fold_in(X, new[:1]), rtol=1e-6)


BLOCK_TORCH = """
import importlib.abc, sys
class NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoTorch())
"""


def test_encore_imports_and_says_what_to_install_without_torch() -> None:
    """A fresh interpreter where torch cannot be imported: the kinds, the config, the pipeline and the
    components import; fitting a neural kind is one line naming the extra to install."""
    code = BLOCK_TORCH + """
import encore.recommenders.kinds, encore.config.experiment, encore.pipeline.runner, encore.components.tune
import encore.components.generator, encore.serving.app
from encore.recommenders import KINDS
from encore.testing import sample_stage_view
assert "torch" not in sys.modules
for kind in ("sasrec", "twotower"):
    try:
        KINDS[kind]().fit_stage(sample_stage_view(("timestamps", "item_features")))
    except Exception as exc:
        print(type(exc).__name__, exc)
"""
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines == [f"TorchMissing kind '{kind}' needs PyTorch, which is not installed: pip install "
                     "'encore[neural]' (or pip install torch==2.13.0, the CPU build)"
                     for kind in ("sasrec", "twotower")]
