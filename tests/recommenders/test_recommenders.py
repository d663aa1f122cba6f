"""Unit tests of encore.recommenders on small synthetic matrices (fast, seeded)."""

from __future__ import annotations

import warnings
from typing import Any

import implicit.utils
import numpy as np
import pytest
import scipy.sparse as sp
from implicit.nearest_neighbours import bm25_weight as implicit_bm25_weight

from encore.recommenders import (
    RECOMMENDERS,
    ALSRecommender,
    BPRRecommender,
    EASERecommender,
    FriendsRecommender,
    Item2ItemRecommender,
    ItemKNNRecommender,
    PopularRecommender,
    Recommender,
    UserKNNRecommender,
    kernels,
    mask_seen,
    topk,
)
from encore.recommenders.base import history_pair_scores
from encore.recommenders.kernels import mask_seen_sparse, topk_sparse
from encore.recommenders.weighting import InteractionWeighter, weight_user_items

N_USERS, N_ITEMS, N_FEATURES = 60, 40, 15
NO_FEATURE_ITEMS = np.array([3, 17])


def make_user_items(seed: int = 0, n_users: int = N_USERS, n_items: int = N_ITEMS) -> sp.csr_matrix:
    """Random play counts with a popularity skew; every user has >= 2 items."""
    rng = np.random.default_rng(seed)
    popularity = np.linspace(2.0, 0.2, n_items)
    dense = rng.random((n_users, n_items)) < 0.12 * popularity
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    dense[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    plays = np.where(dense, rng.integers(1, 60, (n_users, n_items)), 0)
    return sp.csr_matrix(plays, dtype=np.float32)


def make_item_features(seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 4, (N_ITEMS, N_FEATURES)) * (rng.random((N_ITEMS, N_FEATURES)) < 0.3)
    counts[np.arange(N_ITEMS), rng.integers(0, N_FEATURES, N_ITEMS)] += 1
    counts[NO_FEATURE_ITEMS] = 0
    return sp.csr_matrix(counts, dtype=np.float32)


def make_social(seed: int = 2) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    adj = rng.random((N_USERS, N_USERS)) < 0.08
    np.fill_diagonal(adj, False)
    adj[0] = False  # a user without friends
    return sp.csr_matrix(adj, dtype=np.float32)


# name -> (small/fast constructor arguments, extra fit arguments)
CONFIGS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "als": ({"factors": 8, "iterations": 5}, {}),
    "bpr": ({"factors": 8, "iterations": 20}, {}),
    "item2item": ({"n_components": 6, "n_neighbors": 5}, {"item_features": make_item_features()}),
    "popular": ({}, {}),
    "itemknn": ({"K": 15}, {}),
    "ease": ({"l2": 5.0, "min_item_users": 1}, {}),
    "friends": ({}, {"social": make_social()}),
    "userknn": ({"K": 10}, {}),
}


def fit_model(name: str, user_items: sp.csr_matrix, **overrides: Any) -> Recommender:
    params, extra = CONFIGS[name]
    return RECOMMENDERS[name](**{**params, **overrides}).fit(user_items, **extra)


@pytest.fixture(scope="module")
def user_items() -> sp.csr_matrix:
    return make_user_items()


@pytest.fixture(scope="module", params=sorted(CONFIGS))
def fitted(request: pytest.FixtureRequest, user_items: sp.csr_matrix) -> Recommender:
    return fit_model(request.param, user_items)


def seen_sets(user_items: sp.csr_matrix, users: np.ndarray) -> list[set[int]]:
    return [set(user_items[u].indices.tolist()) for u in users]


# --------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------


def test_registry_lists_every_model() -> None:
    assert set(RECOMMENDERS) == {"als", "bpr", "item2item", "popular", "itemknn", "ease", "friends", "userknn",
                                 "als_spark", "twotower", "sasrec"}
    for name, cls in RECOMMENDERS.items():
        assert issubclass(cls, Recommender) and cls.name == name


def test_topk_orders_pads_and_breaks_ties_by_lower_id() -> None:
    scores = np.array(
        [
            [0.1, 0.5, -np.inf, 0.5, np.nan],
            [-np.inf, -np.inf, -np.inf, -np.inf, -np.inf],
            [3.0, 2.0, 1.0, 0.0, -1.0],
        ],
        dtype=np.float32,
    )
    ids, top = topk(scores, 6)
    assert ids.dtype == np.int64 and top.dtype == np.float32 and ids.shape == (3, 6)
    np.testing.assert_array_equal(ids[0], [1, 3, 0, -1, -1, -1])
    np.testing.assert_array_equal(top[0, :3], np.float32([0.5, 0.5, 0.1]))
    assert np.all(np.isneginf(top[0, 3:]))
    np.testing.assert_array_equal(ids[1], [-1] * 6)
    np.testing.assert_array_equal(ids[2], [0, 1, 2, 3, 4, -1])


def test_topk_keeps_the_numbers_of_a_row_that_is_mostly_nan() -> None:
    # fewer than k numbers (or groups holding one) used to give a NaN bound that selected nothing
    assert topk(np.float32([[np.nan, np.nan, np.nan, 1.0]]), 2)[0].tolist() == [[3, -1]]
    wide = np.full((2, 4096), np.nan, dtype=np.float32)
    wide[0, [7, 900]] = [2.0, 5.0]
    ids, top = topk(wide, 3)
    assert ids.tolist() == [[900, 7, -1], [-1, -1, -1]] and top[0, :2].tolist() == [5.0, 2.0]


def test_topk_matches_a_full_sort_on_random_blocks() -> None:
    rng = np.random.default_rng(3)
    for _ in range(20):
        n, m, N = int(rng.integers(1, 8)), int(rng.integers(1, 900)), int(rng.integers(1, 40))
        scores = rng.integers(0, 30, (n, m)).astype(np.float32)  # many ties
        scores[rng.random((n, m)) < 0.3] = -np.inf
        ids, top = topk(scores, N)
        for r in range(n):
            order = np.lexsort((np.arange(m), -scores[r]))
            order = order[np.isfinite(scores[r, order])][:N]
            np.testing.assert_array_equal(ids[r, : len(order)], order)
            assert np.all(ids[r, len(order) :] == -1)
            np.testing.assert_array_equal(top[r, : len(order)], scores[r, order])


def test_topk_row_slices_on_threads_equal_one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    from encore.retrieval import topn as helpers  # where the top-N kernels live

    monkeypatch.setattr(helpers, "_TOPK_CELLS_PER_THREAD", 64)  # split even this small block
    rng = np.random.default_rng(5)
    scores = rng.integers(0, 50, (37, 700)).astype(np.float32)  # ties across the slice edges
    scores[rng.random(scores.shape) < 0.2] = -np.inf
    one = topk(scores, 25, num_threads=1)
    for threads in (2, 3, 37, 64):
        np.testing.assert_array_equal(topk(scores, 25, num_threads=threads), one)


@pytest.mark.parametrize("sort_cost", [0, 10**9])  # every block sorted / every block through dense top-N
def test_topk_sparse_equals_topk_of_the_dense_block_with_unstored_as_minus_inf(
        sort_cost: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import encore.retrieval.topn

    monkeypatch.setattr(encore.retrieval.topn, "_SPARSE_SORT_COST", sort_cost)
    monkeypatch.setattr(encore.retrieval.topn, "_DENSE_BLOCK_CELLS", 500)  # several dense blocks
    rng = np.random.default_rng(8)
    for _ in range(20):
        n, m, N = int(rng.integers(1, 9)), int(rng.integers(1, 300)), int(rng.integers(1, 30))
        dense = np.where(rng.random((n, m)) < 0.3, rng.integers(-5, 6, (n, m)), 0).astype(np.float32)  # ties
        dense[rng.random((n, m)) < 0.05] = -np.inf
        block = sp.csr_matrix(dense)
        reference = np.where(dense == 0, -np.inf, dense)  # csr_matrix() stores the nonzeros only
        np.testing.assert_array_equal(topk_sparse(block, N), topk(reference, N))
        dense[rng.random((n, m)) < 0.5] = np.nan  # NaN beside numbers: neither path returns it
        reference = np.where(dense == 0, -np.inf, dense)  # csr_matrix() stores NaN (nonzero)
        np.testing.assert_array_equal(topk_sparse(sp.csr_matrix(dense), N), topk(reference, N))
    stored = sp.csr_matrix((np.float32([np.nan, 2.0, 0.0]), [0, 1, 2], [0, 3]), shape=(1, 4))
    ids, top = topk_sparse(stored, 3)  # a stored 0 is a score; NaN and unstored are not
    assert ids.tolist() == [[1, 2, -1]] and top[0, :2].tolist() == [2.0, 0.0]


def test_mask_seen_sparse_sets_the_stored_seen_entries() -> None:
    scores = sp.csr_matrix(np.float32([[1, 2, 0, 4], [0, 5, 6, 0]]))
    history = sp.csr_matrix(np.float32([[0, 1, 1, 0], [1, 1, 0, 0]]))
    mask_seen_sparse(scores, history)
    assert scores.toarray().tolist() == [[1, -np.inf, 0, 4], [0, -np.inf, 6, 0]]


@pytest.mark.parametrize("kind", ["popular", "friends", "userknn"])
@pytest.mark.parametrize("filter_seen", [True, False])
def test_recommend_without_a_dense_block_equals_the_dense_lists(kind: str, filter_seen: bool) -> None:
    """Popular ranks a prefix of its global order, friends and user-kNN their sparse evidence:
    the lists are those of top-N over the dense masked block."""
    rng = np.random.default_rng(9)
    plays = sp.random(300, 120, density=0.08, random_state=1, format="lil",
                      data_rvs=lambda n: rng.integers(1, 9, n).astype(np.float32))
    plays[7, :100] = 3.0  # a heavy listener: history longer than N
    plays = sp.csr_matrix(plays, dtype=np.float32)
    social = sp.random(300, 300, density=0.02, random_state=2, format="csr")
    social.data[:] = 1.0
    model = {"popular": lambda: PopularRecommender().fit(plays),
             "friends": lambda: FriendsRecommender().fit(plays, social=social),
             "userknn": lambda: UserKNNRecommender(K=5).fit(plays)}[kind]()
    users = np.r_[7, np.arange(0, 300, 2)]
    block = model.score(users, plays)
    if model.zero_means_unscored:
        block[block == 0] = -np.inf
    if filter_seen:
        mask_seen(block, plays[users])
    expected = topk(block, 30)
    got = model.recommend(users, plays, 30, filter_already_liked_items=filter_seen, batch_size=40)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    if filter_seen and kind == "popular":  # the heavy listener's list is what they have not played
        assert (got[0][0] >= 0).sum() == 120 - plays[7].nnz < 30


def test_mask_seen_sets_every_stored_entry(user_items: sp.csr_matrix) -> None:
    rows = user_items[[4, 9, 11]]
    block = np.zeros((3, N_ITEMS), dtype=np.float32)
    mask_seen(block, rows)
    np.testing.assert_array_equal(np.isneginf(block), rows.toarray() > 0)


def test_bm25_interaction_weighting_matches_implicit_and_transforms_row_blocks(
    user_items: sp.csr_matrix,
) -> None:
    ours = weight_user_items(user_items, "bm25", K1=100, B=0.8)
    reference = sp.csr_matrix(implicit_bm25_weight(user_items.T, K1=100, B=0.8).T)
    np.testing.assert_allclose(ours.toarray(), reference.toarray(), rtol=1e-5)
    weighter = InteractionWeighter("bm25").fit(user_items)
    rows = np.array([7, 2, 30])
    np.testing.assert_allclose(weighter.transform(user_items[rows]).toarray(), ours[rows].toarray(), rtol=1e-6)


class FixedScores(Recommender):
    """Uses every default of the base class; scores are a fixed random matrix."""

    name = "fixed"

    def fit(self, user_items: sp.csr_matrix) -> FixedScores:
        self.n_users_, self.n_items_ = user_items.shape
        self.table_ = np.random.default_rng(0).random(user_items.shape, dtype=np.float32)
        return self

    def score(self, user_ids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        return self.table_[user_ids]

    def similar_items(self, item_ids: np.ndarray, N: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _get_state(self) -> dict[str, np.ndarray]:
        return {"table": self.table_}

    def _set_state(self, state: dict[str, np.ndarray]) -> None:
        self.table_ = state["table"]


def test_base_defaults_batch_consistently(user_items: sp.csr_matrix) -> None:
    model = FixedScores().fit(user_items)
    rng = np.random.default_rng(4)
    users, items = rng.integers(0, N_USERS, 500), rng.integers(0, N_ITEMS, 500)
    for batch_size in (1, 7, 1024):
        pairs = model.score_pairs(users, items, user_items, batch_size=batch_size)
        np.testing.assert_array_equal(pairs, model.table_[users, items])
        ids, scores = model.recommend(np.arange(N_USERS), user_items, N=5, batch_size=batch_size)
        masked = model.table_.copy()
        mask_seen(masked, user_items)
        np.testing.assert_array_equal((ids, scores), topk(masked, 5))


@pytest.mark.parametrize("products", [1 << 24, 5])  # sparse: one chunk of users / a few users per chunk
def test_history_pair_scores_chunks_dense_and_sparse(user_items: sp.csr_matrix, products: int,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kernels, "_PRODUCTS", products)
    rng = np.random.default_rng(5)
    dense_sim = rng.random((N_ITEMS, N_ITEMS)).astype(np.float32)
    sparse_sim = sp.random(N_ITEMS, N_ITEMS, density=0.2, format="csr", dtype=np.float32, rng=rng)
    users, items = rng.integers(0, N_USERS, 200), rng.integers(0, N_ITEMS, 200)
    for sim in (dense_sim, sparse_sim):
        product = user_items @ sim
        full = product.toarray() if sp.issparse(product) else np.asarray(product)
        got = history_pair_scores(user_items, sim, users, items, chunk=17)
        np.testing.assert_allclose(got, full[users, items], rtol=1e-5)


@pytest.mark.parametrize("cls", [ALSRecommender, ItemKNNRecommender])
def test_threads_do_not_change_results(cls: type[Recommender], user_items: sp.csr_matrix) -> None:
    """ALS and item-kNN default to every core: that is only sound because any thread count
    gives the same model and lists (BPR's Hogwild updates do not, so it stays at 1)."""
    one, two = cls(num_threads=1).fit(user_items), cls(num_threads=2).fit(user_items)
    users = np.arange(user_items.shape[0])
    for got, expected in zip(two.recommend(users, user_items, 10), one.recommend(users, user_items, 10), strict=True):
        np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(two.score(users, user_items), one.score(users, user_items))


# --------------------------------------------------------------------------------------
# the interface, for every model
# --------------------------------------------------------------------------------------


def test_score_shape_and_dtype(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    users = np.array([0, 5, 5, 59])
    scores = fitted.score(users, user_items)
    assert scores.shape == (4, N_ITEMS) and scores.dtype == np.float32
    assert np.all(np.isfinite(scores))
    np.testing.assert_allclose(scores[1], scores[2])


def test_recommend_excludes_seen_and_is_best_first(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    users = np.arange(N_USERS)
    ids, scores = fitted.recommend(users, user_items, N=10)
    assert ids.shape == scores.shape == (N_USERS, 10)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for row_ids, row_scores, seen in zip(ids, scores, seen_sets(user_items, users), strict=True):
        valid = row_ids[row_ids >= 0]
        assert not set(valid.tolist()) & seen
        assert len(set(valid.tolist())) == len(valid)
        finite = row_scores[row_ids >= 0]
        assert np.all(np.diff(finite) <= 1e-6)
        # -1 only as a suffix, always with -inf
        assert np.all(row_ids[len(valid) :] == -1) and np.all(np.isneginf(row_scores[len(valid) :]))


def test_recommend_scores_agree_with_score(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    users = np.array([1, 8, 20, 33])
    ids, scores = fitted.recommend(users, user_items, N=5)
    dense = fitted.score(users, user_items)
    for r in range(len(users)):
        ok = ids[r] >= 0
        np.testing.assert_allclose(scores[r, ok], dense[r, ids[r, ok]], rtol=1e-4, atol=1e-5)


def test_recommend_without_filter_may_return_seen(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    users = np.arange(N_USERS)
    ids, _ = fitted.recommend(users, user_items, N=N_ITEMS, filter_already_liked_items=False)
    seen = seen_sets(user_items, users)
    if fitted.name not in ("friends", "itemknn", "ease", "userknn"):
        # models with a score for every item rank every item
        assert np.all(ids >= 0)
    assert any(set(row[row >= 0].tolist()) & s for row, s in zip(ids, seen, strict=True))


def test_recommend_pads_with_minus_one(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    users = np.array([2, 3])
    N = N_ITEMS + 5
    ids, scores = fitted.recommend(users, user_items, N=N)
    assert ids.shape == (2, N)
    for r, u in enumerate(users):
        n_valid = int((ids[r] >= 0).sum())
        assert n_valid <= N_ITEMS - user_items[u].nnz
        if fitted.name in ("als", "bpr", "popular", "item2item"):
            assert n_valid == N_ITEMS - user_items[u].nnz
        assert np.all(ids[r, n_valid:] == -1) and np.all(np.isneginf(scores[r, n_valid:]))


def test_recommend_handles_empty_user_list(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    ids, scores = fitted.recommend(np.array([], dtype=np.int64), user_items, N=4)
    assert ids.shape == scores.shape == (0, 4)


def test_score_pairs_matches_score(fitted: Recommender, user_items: sp.csr_matrix) -> None:
    rng = np.random.default_rng(7)
    users = rng.integers(0, N_USERS, 300)
    items = rng.integers(0, N_ITEMS, 300)
    pairs = fitted.score_pairs(users, items, user_items)
    assert pairs.shape == (300,) and pairs.dtype == np.float32
    uniq, inverse = np.unique(users, return_inverse=True)
    dense = fitted.score(uniq, user_items)
    np.testing.assert_allclose(pairs, dense[inverse, items], rtol=1e-4, atol=1e-5)


def test_similar_items_excludes_self(fitted: Recommender) -> None:
    items = np.array([0, 5, 39])
    ids, scores = fitted.similar_items(items, N=6)
    assert ids.shape == scores.shape == (3, 6)
    assert ids.dtype == np.int64 and scores.dtype == np.float32
    for item, row_ids, row_scores in zip(items, ids, scores, strict=True):
        valid = row_ids >= 0
        assert item not in row_ids
        assert np.all(np.diff(row_scores[valid]) <= 1e-6)
        assert np.all(np.isneginf(row_scores[~valid]))


def test_save_load_round_trip(fitted: Recommender, user_items: sp.csr_matrix, tmp_path: Any) -> None:
    path = tmp_path / f"{fitted.name}.npz"
    fitted.save(path)
    loaded = type(fitted).load(path)
    again = Recommender.load(path)  # dispatches on the saved model name
    assert type(again) is type(fitted) and loaded.get_params() == fitted.get_params()
    users = np.arange(N_USERS)
    expected = fitted.recommend(users, user_items, N=8)
    for model in (loaded, again):
        ids, scores = model.recommend(users, user_items, N=8)
        np.testing.assert_array_equal(ids, expected[0])
        np.testing.assert_allclose(scores, expected[1], rtol=1e-6)
        np.testing.assert_allclose(model.score(users[:5], user_items), fitted.score(users[:5], user_items))


def test_save_refuses_pickle_and_wrong_class(user_items: sp.csr_matrix, tmp_path: Any) -> None:
    model = fit_model("popular", user_items)
    model.save(tmp_path / "pop")  # suffix added
    with np.load(tmp_path / "pop.npz", allow_pickle=False) as data:
        assert str(data["__model__"]) == "popular"
    with pytest.raises(ValueError, match="popular"):
        EASERecommender.load(tmp_path / "pop.npz")


# --------------------------------------------------------------------------------------
# reproducibility
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["als", "bpr", "ease", "item2item"])
def test_two_fits_with_same_random_state_are_identical(name: str, user_items: sp.csr_matrix) -> None:
    users = np.arange(N_USERS)
    a = fit_model(name, user_items, **({"random_state": 3} if name != "ease" else {}))
    b = fit_model(name, user_items, **({"random_state": 3} if name != "ease" else {}))
    ids_a, scores_a = a.recommend(users, user_items, N=10)
    ids_b, scores_b = b.recommend(users, user_items, N=10)
    np.testing.assert_array_equal(ids_a, ids_b)
    np.testing.assert_array_equal(scores_a, scores_b)


# --------------------------------------------------------------------------------------
# implicit-backed models
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [ALSRecommender, BPRRecommender])
def test_fit_never_triggers_implicits_blas_warning(
    cls: type[Recommender], user_items: sp.csr_matrix, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(implicit.utils, "_checked_blas_config", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = cls(factors=4, iterations=2).fit(user_items)
        model.recommend(np.arange(5), user_items, N=3)
    assert not [w for w in caught if "threads" in str(w.message)]


def test_als_recommend_is_implicits_recommend(user_items: sp.csr_matrix) -> None:
    model = fit_model("als", user_items)
    users = np.arange(0, N_USERS, 3)
    ids, scores = model.recommend(users, user_items, N=7)
    raw_ids, raw_scores = model.model_.recommend(users, user_items[users], N=7)
    np.testing.assert_array_equal(ids, raw_ids)
    np.testing.assert_allclose(scores, raw_scores)
    assert model.user_factors.shape == (N_USERS, 8) and model.item_factors.shape == (N_ITEMS, 8)


def test_bpr_factors_carry_the_bias_column(user_items: sp.csr_matrix) -> None:
    model = fit_model("bpr", user_items)
    assert model.item_factors.shape == (N_ITEMS, 9)
    np.testing.assert_allclose(model.user_factors[:, -1], 1.0)


def test_itemknn_score_is_history_times_similarity(user_items: sp.csr_matrix) -> None:
    model = ItemKNNRecommender(K=15, weighting="none").fit(user_items)
    assert model.similarity_.shape == (N_ITEMS, N_ITEMS)
    expected = (user_items[[4, 6]] @ model.similarity_).toarray()
    np.testing.assert_allclose(model.score(np.array([4, 6]), user_items), expected, rtol=1e-6)


# --------------------------------------------------------------------------------------
# item2item
# --------------------------------------------------------------------------------------


def unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def test_item2item_single_item_user_gets_most_similar_item_first() -> None:
    user_items = make_user_items()
    played = 8
    user_items = sp.vstack([user_items, sp.csr_matrix(([5.0], ([0], [played])), shape=(1, N_ITEMS))]).tocsr()
    user_items = user_items.astype(np.float32)
    model = fit_model("item2item", user_items)
    emb = unit_rows(model.embeddings_.astype(np.float64))
    cosine = emb @ emb[played]
    cosine[played] = -np.inf
    ids, _ = model.recommend(np.array([N_USERS]), user_items, N=3)
    assert ids[0, 0] == int(np.argmax(cosine))


def test_item2item_similar_items_descend_in_cosine() -> None:
    model = fit_model("item2item", make_user_items())
    emb = unit_rows(model.embeddings_.astype(np.float64))
    query = np.array([0, 9, 25])
    ids, scores = model.similar_items(query, N=5)
    for q, row_ids, row_scores in zip(query, ids, scores, strict=True):
        cosine = emb @ emb[q]
        cosine[q] = -np.inf
        cosine[np.linalg.norm(emb, axis=1) == 0] = -np.inf
        np.testing.assert_allclose(row_scores, np.sort(cosine)[::-1][:5], atol=1e-5)
        np.testing.assert_allclose(cosine[row_ids], row_scores, atol=1e-5)


def test_item2item_items_without_features_are_counted_and_harmless(user_items: sp.csr_matrix) -> None:
    model = fit_model("item2item", user_items)
    np.testing.assert_array_equal(model.items_without_features_, NO_FEATURE_ITEMS)
    assert model.n_items_without_features_ == 2
    np.testing.assert_array_equal(model.embeddings_[NO_FEATURE_ITEMS], 0.0)
    assert np.all(model.score(np.arange(5), user_items)[:, NO_FEATURE_ITEMS] == 0.0)
    ids, _ = model.similar_items(NO_FEATURE_ITEMS, N=4)
    assert np.all(ids == -1)
    ids, _ = model.similar_items(np.array([0]), N=N_ITEMS)
    assert not set(NO_FEATURE_ITEMS.tolist()) & set(ids[0].tolist())
    # a user whose whole history has no features gets a zero profile, not NaN
    lonely = sp.csr_matrix(([2.0], ([0], [NO_FEATURE_ITEMS[0]])), shape=(1, N_ITEMS), dtype=np.float32)
    assert np.all(model.score(np.array([0]), lonely) == 0.0)


def test_item2item_requires_item_features(user_items: sp.csr_matrix) -> None:
    with pytest.raises(ValueError, match="item_features"):
        Item2ItemRecommender().fit(user_items)


# --------------------------------------------------------------------------------------
# popular
# --------------------------------------------------------------------------------------


def test_popular_counts_users_or_plays(user_items: sp.csr_matrix) -> None:
    by_users = PopularRecommender("users").fit(user_items)
    by_plays = PopularRecommender("plays").fit(user_items)
    np.testing.assert_allclose(by_users.popularity_, (user_items > 0).sum(axis=0).A1)
    np.testing.assert_allclose(by_plays.popularity_, user_items.sum(axis=0).A1)


def test_popular_recency_ranks_recent_item_above_equally_popular_old_one() -> None:
    day = 86_400.0
    # items 0 and 1 both have 3 listeners; item 0 was played 400 days ago, item 1 today
    plays = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [1, 1, 1]], dtype=np.float32))
    t_now = 1.7e9
    stamps = sp.csr_matrix(
        np.array([[t_now - 400 * day, t_now, 0], [t_now - 400 * day, t_now, 0], [t_now - 400 * day, t_now, t_now]])
    )
    plain = PopularRecommender().fit(plays, timestamps=stamps)
    assert not plain.recency_applied_ and plain.popularity_[0] == plain.popularity_[1]
    recent = PopularRecommender(recency_half_life_days=30.0).fit(plays, timestamps=stamps)
    assert recent.recency_applied_
    np.testing.assert_allclose(recent.popularity_, [3 * 0.5 ** (400 / 30), 3.0, 1.0], rtol=1e-6)
    ids, _ = recent.recommend(np.array([0]), sp.csr_matrix((1, 3), dtype=np.float32), N=3)
    np.testing.assert_array_equal(ids[0], [1, 2, 0])
    with pytest.raises(ValueError, match="every nonzero"):
        recent.fit(plays, timestamps=sp.csr_matrix(np.diag([t_now, t_now, t_now])))


def test_popular_similar_items_are_the_most_popular_others(user_items: sp.csr_matrix) -> None:
    model = PopularRecommender().fit(user_items)
    top = np.lexsort((np.arange(N_ITEMS), -model.popularity_))
    ids, _ = model.similar_items(np.array([top[0], top[5]]), N=3)
    np.testing.assert_array_equal(ids[0], top[1:4])
    np.testing.assert_array_equal(ids[1], top[:3])


# --------------------------------------------------------------------------------------
# EASE
# --------------------------------------------------------------------------------------


def test_ease_matches_naive_closed_form() -> None:
    X = make_user_items(seed=5, n_users=25, n_items=12)
    lam = 7.0
    model = EASERecommender(l2=lam, weighting="none", min_item_users=1).fit(X)
    dense = X.toarray().astype(np.float64)
    keep = np.flatnonzero((dense > 0).sum(axis=0) >= 1)
    G = dense[:, keep].T @ dense[:, keep] + lam * np.eye(len(keep))
    P = np.linalg.inv(G)
    B = np.eye(len(keep)) - P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_array_equal(model.items_, keep)
    np.testing.assert_allclose(model.B_, B, rtol=1e-4, atol=1e-6)
    expected = np.zeros((25, 12))
    expected[:, keep] = dense[:, keep] @ B
    np.testing.assert_allclose(model.score(np.arange(25), X), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(("n_users", "n_items"), [(25, 12), (12, 25)])  # Cholesky path, Woodbury path
def test_ease_matches_naive_closed_form_more_items_than_users(n_users: int, n_items: int) -> None:
    X = make_user_items(seed=6, n_users=n_users, n_items=n_items)
    model = EASERecommender(l2=3.0, weighting="none", min_item_users=1).fit(X)
    dense = X.toarray().astype(np.float64)[:, model.items_]
    assert len(model.items_) > n_users or n_users > n_items  # the second case takes the Woodbury path
    P = np.linalg.inv(dense.T @ dense + 3.0 * np.eye(len(model.items_)))
    B = np.eye(len(model.items_)) - P / np.diag(P)
    np.fill_diagonal(B, 0.0)
    np.testing.assert_allclose(model.B_, B, rtol=1e-5, atol=1e-6)


def test_ease_restricts_to_items_with_enough_listeners(user_items: sp.csr_matrix) -> None:
    listeners = (user_items > 0).sum(axis=0).A1
    model = EASERecommender(l2=5.0, min_item_users=4, max_items=10).fit(user_items)
    assert len(model.items_) == 10 and np.all(listeners[model.items_] >= 4)
    assert model.B_.shape == (10, 10)
    outside = np.setdiff1d(np.arange(N_ITEMS), model.items_)
    assert np.all(model.score(np.arange(N_USERS), user_items)[:, outside] == 0.0)
    pairs = model.score_pairs(np.array([1, 2]), outside[:2], user_items)
    np.testing.assert_array_equal(pairs, 0.0)


# --------------------------------------------------------------------------------------
# friends
# --------------------------------------------------------------------------------------


def test_friends_scores_are_sums_over_friends() -> None:
    plays = sp.csr_matrix(np.array([[0, 3, 0, 0], [1, 0, 7, 0], [0, 2, 1, 0]], dtype=np.float32))
    social = sp.csr_matrix(np.array([[0, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=np.float32))
    model = FriendsRecommender().fit(plays, social=social)
    expected = np.array(
        [
            [np.log1p(1), np.log1p(2), np.log1p(7) + np.log1p(1), 0],  # friends 1 and 2
            [0, 0, 0, 0],  # no friends
            [0, np.log1p(3), 0, 0],  # friend 0
        ]
    )
    np.testing.assert_allclose(model.score(np.arange(3), plays), expected, rtol=1e-6)
    ids, _ = model.recommend(np.arange(3), plays, N=4)
    np.testing.assert_array_equal(ids[0], [2, 0, -1, -1])  # item 1 seen; item 3 played by no friend
    np.testing.assert_array_equal(ids[1], [-1] * 4)
    unknown = FriendsRecommender().fit(plays)
    assert np.all(unknown.score(np.arange(3), plays) == 0.0)


def test_itemknn_auto_weighting_on_binary_and_counts() -> None:
    """``weighting: auto``: binary/rating-like weights get no BM25 length normalisation (it
    would only penalise popular items), count-like weights the play-count settings."""
    from encore.recommenders.itemknn import ItemKNNRecommender, is_graded

    rng = np.random.default_rng(0)
    dense = (rng.random((60, 30)) < 0.2).astype(np.float32)
    dense[:, 0] = 1.0  # one item everybody has: the popular one
    binary = sp.csr_matrix(dense)
    ratings = binary.copy()
    ratings.data = rng.integers(1, 6, ratings.nnz).astype(np.float32)
    counts = binary.copy()
    counts.data = rng.integers(1, 500, counts.nnz).astype(np.float32)
    assert is_graded(binary) and is_graded(ratings) and not is_graded(counts)

    auto = ItemKNNRecommender(K=30).fit(binary)
    assert (auto.weighting_, auto.B_) == ("none", 0.0)
    assert (ItemKNNRecommender(K=30).fit(ratings).weighting_, ItemKNNRecommender().fit(counts).weighting_) == (
        "none", "bm25")
    assert ItemKNNRecommender(weighting="bm25").fit(binary).B_ == 0.75  # explicit settings are kept
    # The popular item keeps a high similarity to the others under auto; BM25 with B=0.75
    # on binary data pushes it below the median (the collapse the auto rule avoids).
    forced = ItemKNNRecommender(K=30, weighting="none", B=0.75).fit(binary)
    def rank_of_popular(model: ItemKNNRecommender) -> float:
        sim = model.similarity_.toarray()[1:, :]
        return float(np.mean((sim > sim[:, [0]]).sum(axis=1)))
    assert rank_of_popular(auto) < rank_of_popular(forced)
    # The resolved choice survives save/load.
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/knn"
        auto.save(path)
        loaded = ItemKNNRecommender.load(path)
    assert (loaded.weighting_, loaded.B_) == ("none", 0.0)
    np.testing.assert_allclose(loaded.score(np.arange(5), binary), auto.score(np.arange(5), binary))


def test_userknn_score_pairs_is_the_dense_score_in_any_batching(user_items: sp.csr_matrix) -> None:
    """UserKNN looks pairs up in sparse score rows (not dense blocks): the same values as
    ``score`` however the distinct users are batched, zero where no neighbour played the item."""
    model = UserKNNRecommender(K=5).fit(user_items)
    rng = np.random.default_rng(11)
    users, items = rng.integers(0, N_USERS, 400), rng.integers(0, N_ITEMS, 400)
    dense = model.score(np.arange(N_USERS), user_items)
    assert (dense[users, items] == 0).any() and (dense[users, items] > 0).any()
    for batch_size in (1, 7, 1024):
        np.testing.assert_array_equal(model.score_pairs(users, items, user_items, batch_size=batch_size),
                                      dense[users, items])
