"""InnerProductIndex: the norm augmentation ranks by inner product, the quantised index is exact
when it re-scores every item, ties go to the lower id, recall_at counts what it says."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from encore.retrieval import AnnConfig, InnerProductIndex, recall_at, score_recall_at
from encore.retrieval.index import augment_items, augment_queries
from encore.retrieval.topn import mask_seen, topk


def _catalogue(n_items: int = 300, d: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """Item vectors whose norms spread over two orders of magnitude (as ALS factors do), some
    zero rows, queries, and a random history to filter."""
    rng = np.random.default_rng(seed)
    items = rng.normal(size=(n_items, d)) * np.exp(rng.normal(scale=1.5, size=(n_items, 1)))
    items[rng.choice(n_items, n_items // 10, replace=False)] = 0
    queries = rng.normal(size=(40, d))
    heard = sp.random(40, n_items, density=0.05, random_state=seed, format="csr", dtype=np.float32)
    return items.astype(np.float32), queries.astype(np.float32), heard


def _exact(items: np.ndarray, queries: np.ndarray, N: int, heard: sp.csr_matrix | None = None) -> np.ndarray:
    block = queries.astype(np.float64) @ items.T.astype(np.float64)
    if heard is not None:
        mask_seen(block, heard)
    return topk(block, N)[0]


def test_norm_augmented_l2_ranks_items_as_the_inner_product() -> None:
    items, queries, _ = _catalogue()
    nonzero = items[np.any(items != 0, axis=1)]
    max_norm = float(np.linalg.norm(nonzero, axis=1).max())
    augmented, sent = augment_items(nonzero, max_norm), augment_queries(queries)
    assert augmented.shape == (len(nonzero), 9) and sent.shape == (40, 9)
    np.testing.assert_allclose(np.linalg.norm(augmented, axis=1), max_norm, rtol=1e-5)
    distances = ((sent[:, None, :].astype(np.float64) - augmented[None].astype(np.float64)) ** 2).sum(-1)
    by_l2 = np.argsort(distances, axis=1, kind="stable")[:, :30]
    np.testing.assert_array_equal(by_l2, _exact(nonzero, queries, 30))


def test_flat_index_on_augmented_vectors_gives_the_exact_lists() -> None:
    """The whole augmented path (zero rows left out, ids mapped back, heard filtered, scores)."""
    items, queries, heard = _catalogue()
    index = InnerProductIndex(items, AnnConfig(index="flat", norm_augmentation=True))
    ids, scores = index.top_n(queries, 30, heard)
    np.testing.assert_array_equal(ids, _exact(items, queries, 30, heard))
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ items.T, ids, axis=1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pq_dims", [1, 3])
def test_pq_index_that_rescores_every_item_is_exact(pq_dims: int) -> None:
    """With ``refine_factor * k`` at least the catalogue every item is re-scored exactly; 8
    dimensions in codes of 3 also exercise the zero padding (to 12: an even number of codes)."""
    items, queries, heard = _catalogue()
    index = InnerProductIndex(items, AnnConfig(pq_dims=pq_dims, refine_factor=300), seed=1)
    ids, _ = index.top_n(queries, 30, heard)
    np.testing.assert_array_equal(ids, _exact(items, queries, 30, heard))


def test_pq_default_reaches_the_bar_on_spread_norms_and_is_reproducible() -> None:
    items, queries, heard = _catalogue(n_items=5000, d=16, seed=4)
    first, _ = InnerProductIndex(items, AnnConfig(), seed=2).top_n(queries, 100, heard)
    again, _ = InnerProductIndex(items, AnnConfig(), seed=2).top_n(queries, 100, heard)
    np.testing.assert_array_equal(first, again)
    assert recall_at(first, _exact(items, queries, 100, heard), 100) >= 0.95


def test_ties_go_to_the_lower_item_id() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=(300, 4)).astype(np.float32)
    items = np.vstack([base, base])  # item i and i + 300 score the same for every query
    queries = rng.normal(size=(10, 4)).astype(np.float32)
    for settings in (AnnConfig(index="flat"), AnnConfig(refine_factor=100, exact_share=0.0), AnnConfig()):
        ids, scores = InnerProductIndex(items, settings).search(queries, 20)
        assert (np.diff(scores, axis=1) <= 0).all()
        tied = scores[:, 1:] == scores[:, :-1]
        assert (ids[:, 1:][tied] > ids[:, :-1][tied]).all()


def test_recall_at_counts_the_exact_items_found() -> None:
    exact = np.array([[1, 2, 3, 4], [5, 6, -1, -1], [-1, -1, -1, -1]])
    approximate = np.array([[4, 3, 9, 8], [6, 7, 5, -1], [1, 2, 3, 4]])
    # row 0: {1, 2} of the first 2 exact are not in {4, 3}: 0; row 1: {5, 6} vs {6, 7}: 1/2;
    # row 2 has no exact item and is left out of the mean.
    assert recall_at(approximate, exact, 2) == pytest.approx(0.25)
    assert recall_at(approximate, exact, 4) == pytest.approx((2 / 4 + 2 / 2) / 2)


def test_search_threads_do_not_change_the_lists() -> None:
    """More queries than one search chunk, split over threads: the same lists as one thread."""
    items, _, _ = _catalogue(n_items=2000, d=16, seed=6)
    queries = np.random.default_rng(7).normal(size=(700, 16)).astype(np.float32)
    one = InnerProductIndex(items, AnnConfig(), seed=1, num_threads=1).search(queries, 50)
    two = InnerProductIndex(items, AnnConfig(), seed=1, num_threads=2).search(queries, 50)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])


def test_score_recall_counts_ties_at_the_cut_as_hits() -> None:
    exact = np.array([[5.0, 4.0, 3.0, 3.0], [2.0, 1.0, -np.inf, -np.inf]], dtype=np.float32)
    # row 0: a tied item (score 3) in place of the other one counts, a 2.5 does not;
    # row 1: one of its 2 exact items found.
    approximate = np.array([[5.0, 4.0, 3.0, 2.5], [2.0, 0.5, -np.inf, -np.inf]], dtype=np.float32)
    assert score_recall_at(approximate, exact, 3) == pytest.approx((3 / 3 + 1 / 2) / 2)
    assert score_recall_at(approximate, exact, 4) == pytest.approx((3 / 4 + 1 / 2) / 2)
