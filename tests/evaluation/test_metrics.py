"""Tests for encore.evaluation.metrics: hand-computed examples, edge cases and naive references."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from encore.evaluation import metrics as M
from encore.evaluation import significance

# ----------------------------------------------------------------------------- shared tiny example
#
# n_items = 6, K = 4
#   user 0: relevant {1, 3}        recs [3, 0, 1, -1]  -> hits [T, F, T, F]
#   user 1: relevant {0, 2, 4, 5}  recs [5, 1, 2, 4]   -> hits [T, F, T, T]
#   user 2: relevant {2}           recs [0, 1, -1, -1] -> hits [F, F, F, F]
#   user 3: relevant {4}           recs [0, 2, 4, 1]   -> hits [F, F, T, F]

RECS = np.array(
    [
        [3, 0, 1, -1],
        [5, 1, 2, 4],
        [0, 1, -1, -1],
        [0, 2, 4, 1],
    ],
    dtype=np.int64,
)
REL_SETS = [{1, 3}, {0, 2, 4, 5}, {2}, {4}]
N_ITEMS = 6
L2 = math.log2


def _csr(sets: list[set[int]], n_items: int) -> sp.csr_matrix:
    rows = [u for u, s in enumerate(sets) for _ in s]
    cols = [i for s in sets for i in sorted(s)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), n_items))


REL = _csr(REL_SETS, N_ITEMS)


@pytest.fixture()
def hits_and_counts() -> tuple[np.ndarray, np.ndarray]:
    return M.hits_matrix(RECS, REL), np.array([2, 4, 1, 1])


# ----------------------------------------------------------------------------- hits_matrix


def test_hits_matrix_tiny_example() -> None:
    expected = np.array(
        [
            [True, False, True, False],
            [True, False, True, True],
            [False, False, False, False],
            [False, False, True, False],
        ]
    )
    hits = M.hits_matrix(RECS, REL)
    assert hits.dtype == bool
    np.testing.assert_array_equal(hits, expected)


def test_hits_matrix_padding_and_explicit_zeros_are_not_hits() -> None:
    # Item 0 stored with an explicit 0 value is not relevant; -1 never matches anything,
    # even for a user whose relevant set includes the last item (n_items - 1).
    rel = sp.csr_matrix((np.array([0.0, 1.0]), (np.array([0, 0]), np.array([0, 2]))), shape=(1, 3))
    hits = M.hits_matrix(np.array([[0, -1, 2]]), rel)
    np.testing.assert_array_equal(hits, [[False, False, True]])


def test_hits_matrix_unsorted_csr_and_empty_relevant() -> None:
    rel = sp.csr_matrix((np.ones(3), np.array([4, 0, 2]), np.array([0, 3, 3])), shape=(2, 5))
    assert not rel.has_sorted_indices
    hits = M.hits_matrix(np.array([[2, 1, 4], [0, 2, -1]]), rel)
    np.testing.assert_array_equal(hits, [[True, False, True], [False, False, False]])
    # No relevant items at all: all misses, no error (the per-user metrics reject it later).
    empty = sp.csr_matrix((2, 5))
    assert not M.hits_matrix(np.array([[0, 1], [2, -1]]), empty).any()


@pytest.mark.parametrize(
    ("recs", "message"),
    [
        (np.array([[0, 1, 0]]), "duplicated"),
        (np.array([[0, 9]]), "n_items"),
        (np.array([[0, -2]]), "negative"),
        (np.array([0, 1]), "2-D"),
        (np.array([[0.0, 1.0]]), "integer"),
    ],
)
def test_hits_matrix_rejects_bad_recommendations(recs: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        M.hits_matrix(recs, sp.csr_matrix((1, 3)))


def test_hits_matrix_rejects_row_mismatch() -> None:
    with pytest.raises(ValueError, match="rows"):
        M.hits_matrix(RECS, REL[:2])


# ----------------------------------------------------------------------------- per-user metrics at k=3


def test_precision_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # hits in top 3: u0 2, u1 2, u2 0, u3 1; divided by k = 3
    np.testing.assert_allclose(M.precision_at_k(*hits_and_counts, 3), [2 / 3, 2 / 3, 0, 1 / 3])


def test_recall_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # u0 2/2, u1 2/4, u2 0/1, u3 1/1
    np.testing.assert_allclose(M.recall_at_k(*hits_and_counts, 3), [1.0, 0.5, 0.0, 1.0])


def test_ndcg_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # u0: DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal over min(2, 3) = 2 hits: 1 + 1/log2(3)
    # u1: DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal over min(4, 3) = 3: 1 + 1/log2(3) + 1/log2(4)
    # u2: no hits -> 0
    # u3: DCG = 1/log2(4) = 0.5; ideal over 1 hit: 1
    expected = [
        (1 / L2(2) + 1 / L2(4)) / (1 / L2(2) + 1 / L2(3)),
        (1 / L2(2) + 1 / L2(4)) / (1 / L2(2) + 1 / L2(3) + 1 / L2(4)),
        0.0,
        0.5,
    ]
    got = M.ndcg_at_k(*hits_and_counts, 3)
    np.testing.assert_allclose(got, expected)
    np.testing.assert_allclose(got[:2], [0.919720, 0.703918], atol=1e-6)


def test_map_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # u0: hits at ranks 1, 3 -> (1/1 + 2/3) / min(2, 3) = 5/6
    # u1: hits at ranks 1, 3 -> (1/1 + 2/3) / min(4, 3) = 5/9
    # u2: 0;  u3: hit at rank 3 -> (1/3) / min(1, 3) = 1/3
    np.testing.assert_allclose(M.average_precision_at_k(*hits_and_counts, 3), [5 / 6, 5 / 9, 0, 1 / 3])


def test_hit_rate_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    np.testing.assert_allclose(M.hit_rate_at_k(*hits_and_counts, 3), [1, 1, 0, 1])


def test_mrr_at_3(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # first hit: u0 rank 1, u1 rank 1, u2 none, u3 rank 3
    np.testing.assert_allclose(M.reciprocal_rank_at_k(*hits_and_counts, 3), [1, 1, 0, 1 / 3])


# ----------------------------------------------------------------------------- edge cases


def test_relevant_larger_than_k_denominators(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # u1 has |relevant| = 4 > k = 2; top 2 = [5 (hit), 1 (miss)]
    hits, n_rel = hits_and_counts
    # recall divides by |relevant| = 4, not by min(4, 2)
    assert M.recall_at_k(hits, n_rel, 2)[1] == pytest.approx(1 / 4)
    # ndcg ideal over min(4, 2) = 2 hits: 1 / (1 + 1/log2(3))
    assert M.ndcg_at_k(hits, n_rel, 2)[1] == pytest.approx(1 / (1 + 1 / L2(3)))
    # AP divides by min(4, 2) = 2: (1/1) / 2
    assert M.average_precision_at_k(hits, n_rel, 2)[1] == pytest.approx(0.5)
    # a perfect top-2 for a user with 4 relevant items has ndcg = AP = 1, recall = 0.5
    perfect = np.array([[True, True]])
    assert M.ndcg_at_k(perfect, np.array([4]), 2)[0] == pytest.approx(1.0)
    assert M.average_precision_at_k(perfect, np.array([4]), 2)[0] == pytest.approx(1.0)
    assert M.recall_at_k(perfect, np.array([4]), 2)[0] == pytest.approx(0.5)


def test_k_larger_than_list_length(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # K = 4 < k = 10: absent positions are misses.
    hits, n_rel = hits_and_counts
    # precision still divides by k = 10: u0 2/10, u1 3/10, u2 0, u3 1/10
    np.testing.assert_allclose(M.precision_at_k(hits, n_rel, 10), [0.2, 0.3, 0.0, 0.1])
    np.testing.assert_allclose(M.recall_at_k(hits, n_rel, 10), [1.0, 0.75, 0.0, 1.0])
    # u1: DCG = 1 + 1/log2(4) + 1/log2(5); ideal over min(4, 10) = 4 hits
    u1_ndcg = (1 + 1 / L2(4) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4) + 1 / L2(5))
    assert M.ndcg_at_k(hits, n_rel, 10)[1] == pytest.approx(u1_ndcg)
    # u1 AP: (1/1 + 2/3 + 3/4) / min(4, 10) = 29/48;  u0: (1 + 2/3) / 2 = 5/6
    np.testing.assert_allclose(M.average_precision_at_k(hits, n_rel, 10)[:2], [5 / 6, 29 / 48])
    np.testing.assert_allclose(M.reciprocal_rank_at_k(hits, n_rel, 10), [1, 1, 0, 1 / 3])


def test_k_below_first_hit_gives_zero_mrr(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    # u3's only hit is at rank 3, so at k = 2 every metric is 0 for u3.
    hits, n_rel = hits_and_counts
    for fn in M.RANKING_METRICS.values():
        assert fn(hits, n_rel, 2)[3] == 0.0


def test_padding_only_rows_score_zero() -> None:
    hits = M.hits_matrix(np.array([[-1, -1, -1]]), _csr([{0}], 3))
    for fn in M.RANKING_METRICS.values():
        assert fn(hits, np.array([1]), 3)[0] == 0.0


@pytest.mark.parametrize("fn", list(M.RANKING_METRICS.values()))
def test_per_user_metrics_validate_inputs(fn: M.MetricFn) -> None:
    hits = np.array([[True, False]])
    with pytest.raises(ValueError, match="relevant"):
        fn(hits, np.array([0]), 2)
    with pytest.raises(ValueError, match="k must"):
        fn(hits, np.array([1]), 0)
    with pytest.raises(ValueError, match="shape"):
        fn(hits, np.array([1, 1]), 2)


def test_empty_relevant_row_is_rejected_by_evaluate() -> None:
    rel = _csr([{0}, set()], 3)
    with pytest.raises(ValueError, match="row 1 is empty"):
        M.evaluate(np.array([[0, 1], [1, 2]]), rel, ks=(2,))
    with pytest.raises(ValueError, match="row 1 is empty"):
        M.per_user_metric(np.array([[0, 1], [1, 2]]), rel, "ndcg", 2)


# ----------------------------------------------------------------------------- beyond accuracy


def test_user_coverage() -> None:
    # k=3: rows 0, 1, 3 have 3 valid items, row 2 = [0, 1, -1] does not -> 3/4
    assert M.user_coverage(RECS, 3) == pytest.approx(0.75)
    # k=4: row 0 ends with -1 too -> 2/4
    assert M.user_coverage(RECS, 4) == pytest.approx(0.5)
    # k=5 > K=4: no list can be full
    assert M.user_coverage(RECS, 5) == 0.0


def test_catalog_coverage() -> None:
    # top-2 items: u0 {3, 0}, u1 {5, 1}, u2 {0, 1}, u3 {0, 2} -> shown {0, 1, 2, 3, 5}
    # catalogue {0, 1, 2, 3, 4} (duplicates ignored): shown ∩ catalogue = {0, 1, 2, 3} -> 4/5
    assert M.catalog_coverage(RECS, 2, np.array([0, 1, 2, 3, 4, 4])) == pytest.approx(0.8)
    # k=4 adds item 4 -> 5/5
    assert M.catalog_coverage(RECS, 4, np.arange(5)) == pytest.approx(1.0)


def test_novelty_and_average_popularity() -> None:
    recs = np.array([[0, 1], [2, -1], [-1, -1]])
    counts = np.array([4, 2, 0])
    # self-information with n_train_users = 4:
    #   item 0: -log2(4/4) = 0; item 1: -log2(2/4) = 1; item 2 (count 0 -> 1): -log2(1/4) = 2
    # u0 mean (0 + 1)/2 = 0.5, u1 mean 2, u2 has no items -> left out => (0.5 + 2)/2 = 1.25
    assert M.novelty(recs, 2, counts, 4) == pytest.approx(1.25)
    # popularity: u0 (4 + 2)/2 = 3, u1 0 -> 1.5
    assert M.average_popularity(recs, 2, counts) == pytest.approx(1.5)
    # k=1: u0 item 0 (0 bits, pop 4), u1 item 2 (2 bits, pop 0)
    assert M.novelty(recs, 1, counts, 4) == pytest.approx(1.0)
    assert M.average_popularity(recs, 1, counts) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="n_train_users"):
        M.novelty(recs, 2, counts, 3)


def test_intra_list_diversity() -> None:
    # item 0 = (1, 0), item 1 = (0, 1), item 2 = (2, 2) (scale is irrelevant), item 3 = no features
    feats = sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0], [0.0, 0.0]]))
    recs = np.array([[0, 1, 2], [0, 3, -1], [0, 2, 3]])
    c = 1 / math.sqrt(2)
    # u0: cos(0,1) = 0, cos(0,2) = c, cos(1,2) = c -> mean distance (1 + 2(1 - c)) / 3
    # u1: item 3 skipped -> one featured item -> left out of the mean
    # u2: item 3 skipped -> one pair (0, 2): 1 - c
    u0 = (1 + 2 * (1 - c)) / 3
    u2 = 1 - c
    assert M.intra_list_diversity(recs, 3, feats) == pytest.approx((u0 + u2) / 2)
    # k=2: u0 pair (0, 1) -> 1; u1 skipped; u2 pair (0, 2) -> 1 - c
    assert M.intra_list_diversity(recs, 2, feats) == pytest.approx((1 + 1 - c) / 2)
    # nobody has two featured items -> nan
    assert math.isnan(M.intra_list_diversity(recs, 1, feats))


def test_intra_list_diversity_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    feats = sp.random(40, 15, density=0.3, random_state=rng, format="csr")
    recs = _random_recs(rng, 60, 40, 8)
    whole = M.intra_list_diversity(recs, 8, feats)
    monkeypatch.setattr(M.beyond_accuracy, "_ILD_CHUNK_NNZ", 1)  # one user per chunk
    assert M.intra_list_diversity(recs, 8, feats) == pytest.approx(whole)
    assert whole == pytest.approx(_naive_ild(recs, 8, feats.toarray()))


# ----------------------------------------------------------------------------- candidate recall


def test_candidate_recall_array_and_sparse() -> None:
    # relevant pairs: 2 + 4 + 1 + 1 = 8; found anywhere in the lists: u0 2, u1 3, u2 0, u3 1 -> 6/8
    assert M.candidate_recall(RECS, REL) == pytest.approx(0.75)
    rows, cols = np.nonzero(RECS >= 0)
    cand = sp.csr_matrix((np.ones(rows.size), (rows, RECS[rows, cols])), shape=REL.shape)
    assert M.candidate_recall(cand, REL) == pytest.approx(0.75)
    # users with empty relevant rows are allowed here: they add nothing to either count
    rel = _csr([{1}, set()], 3)
    assert M.candidate_recall(np.array([[1, -1], [0, 2]]), rel) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- evaluate / per_user_metric


def test_evaluate_keys_and_values() -> None:
    counts = np.array([3, 2, 2, 1, 1, 0])
    feats = sp.identity(N_ITEMS, format="csr")
    res = M.evaluate(
        RECS,
        REL,
        ks=(3, 10),
        item_user_counts=counts,
        n_train_users=4,
        train_items=np.arange(5),
        item_features=feats,
    )
    names = [
        "precision",
        "recall",
        "ndcg",
        "map",
        "hit_rate",
        "mrr",
        "user_coverage",
        "catalog_coverage",
        "novelty",
        "diversity",
        "avg_popularity",
        "new_item_exposure",
    ]
    assert list(res) == [f"{n}@{k}" for k in (3, 10) for n in names]
    assert all(isinstance(v, float) for v in res.values())
    assert res["precision@3"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 1 / 3) / 4)
    assert res["mrr@3"] == pytest.approx((1 + 1 + 0 + 1 / 3) / 4)
    assert res["diversity@3"] == pytest.approx(1.0)  # one-hot features are mutually orthogonal
    minimal = M.evaluate(RECS, REL, ks=(3,))
    assert set(minimal) == {f"{n}@3" for n in names[:7]}


def test_per_user_metric_matches_functions(hits_and_counts: tuple[np.ndarray, np.ndarray]) -> None:
    for name, fn in M.RANKING_METRICS.items():
        np.testing.assert_allclose(M.per_user_metric(RECS, REL, name, 3), fn(*hits_and_counts, 3))
    with pytest.raises(ValueError, match="unknown metric"):
        M.per_user_metric(RECS, REL, "ndcg@10", 10)


# ----------------------------------------------------------------------------- naive references


def _random_recs(rng: np.random.Generator, n_users: int, n_items: int, k: int) -> np.ndarray:
    recs = np.full((n_users, k), -1, dtype=np.int64)
    for u in range(n_users):
        length = rng.integers(0, k + 1)
        recs[u, :length] = rng.choice(n_items, size=length, replace=False)
    return recs


def _naive_metrics(recs: np.ndarray, rel_sets: list[set[int]], k: int) -> dict[str, np.ndarray]:
    out: dict[str, list[float]] = {n: [] for n in M.RANKING_METRICS}
    for row, rel in zip(recs, rel_sets, strict=True):
        top = [int(i) for i in row[:k]]
        n_hits = 0
        dcg = ap = rr = 0.0
        for rank, item in enumerate(top, start=1):
            if item != -1 and item in rel:
                n_hits += 1
                dcg += 1 / math.log2(rank + 1)
                ap += n_hits / rank
                if rr == 0.0:
                    rr = 1 / rank
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(rel), k) + 1))
        out["precision"].append(n_hits / k)
        out["recall"].append(n_hits / len(rel))
        out["ndcg"].append(dcg / idcg)
        out["map"].append(ap / min(len(rel), k))
        out["hit_rate"].append(float(n_hits > 0))
        out["mrr"].append(rr)
    return {n: np.array(v) for n, v in out.items()}


def _naive_ild(recs: np.ndarray, k: int, feats: np.ndarray) -> float:
    per_user = []
    for row in recs:
        items = [int(i) for i in row[:k] if i != -1 and np.linalg.norm(feats[i]) > 0]
        if len(items) < 2:
            continue
        dists = []
        for a in range(len(items)):
            for b in range(a + 1, len(items)):
                xa, xb = feats[items[a]], feats[items[b]]
                dists.append(1 - xa @ xb / (np.linalg.norm(xa) * np.linalg.norm(xb)))
        per_user.append(np.mean(dists))
    return float(np.mean(per_user))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ranking_metrics_match_naive_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items, big_k = 200, 30, 12
    recs = _random_recs(rng, n_users, n_items, big_k)
    rel_sets = [
        set(rng.choice(n_items, size=rng.integers(1, 15), replace=False).tolist()) for _ in range(n_users)
    ]
    rel = _csr(rel_sets, n_items)
    for k in (1, 5, 12, 20):
        naive = _naive_metrics(recs, rel_sets, k)
        res = M.evaluate(recs, rel, ks=(k,))
        for name, expected in naive.items():
            np.testing.assert_allclose(M.per_user_metric(recs, rel, name, k), expected, err_msg=f"{name}@{k}")
            assert res[f"{name}@{k}"] == pytest.approx(expected.mean())


def test_beyond_accuracy_match_naive_reference() -> None:
    rng = np.random.default_rng(7)
    n_users, n_items, k = 150, 40, 10
    recs = _random_recs(rng, n_users, n_items, k)
    counts = rng.integers(0, 50, size=n_items)
    feats = sp.random(n_items, 12, density=0.25, random_state=rng, format="csr")
    train_items = rng.choice(n_items, size=30, replace=False)
    for kk in (3, 10):
        lists = [[int(i) for i in row[:kk] if i != -1] for row in recs]
        nonempty = [lst for lst in lists if lst]
        nov = np.mean([np.mean([-math.log2(max(counts[i], 1) / 50) for i in lst]) for lst in nonempty])
        pop = np.mean([np.mean([counts[i] for i in lst]) for lst in nonempty])
        shown = {i for lst in lists for i in lst}
        cov = len(shown & set(train_items.tolist())) / len(train_items)
        ucov = np.mean([len(lst) == kk for lst in lists])
        assert M.novelty(recs, kk, counts, 50) == pytest.approx(nov)
        assert M.average_popularity(recs, kk, counts) == pytest.approx(pop)
        assert M.catalog_coverage(recs, kk, train_items) == pytest.approx(cov)
        assert M.user_coverage(recs, kk) == pytest.approx(ucov)
        assert M.intra_list_diversity(recs, kk, feats) == pytest.approx(_naive_ild(recs, kk, feats.toarray()))


def test_candidate_recall_matches_naive_reference() -> None:
    rng = np.random.default_rng(11)
    recs = _random_recs(rng, 100, 50, 20)
    rel_sets = [set(rng.choice(50, size=rng.integers(1, 10), replace=False).tolist()) for _ in range(100)]
    found = sum(len(rel & {int(i) for i in row if i != -1}) for row, rel in zip(recs, rel_sets, strict=True))
    total = sum(len(r) for r in rel_sets)
    assert M.candidate_recall(recs, _csr(rel_sets, 50)) == pytest.approx(found / total)


# ----------------------------------------------------------------------------- paired comparison


def test_paired_comparison_identical_inputs() -> None:
    a = np.random.default_rng(0).random(300)
    res = M.paired_comparison(a, a.copy(), metric="ndcg@10", n_resamples=500)
    assert res.diff == 0.0
    assert res.rel_uplift == 0.0
    assert res.ci_low <= 0.0 <= res.ci_high
    assert res.rel_ci_low <= 0.0 <= res.rel_ci_high
    assert res.p_value == 1.0 and res.t_statistic == 0.0
    assert res.n_better == res.n_worse == 0
    assert res.n_users == 300 and res.n_resamples == 500 and res.confidence == 0.95


def test_paired_comparison_clearly_better_challenger() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(500)
    b = np.clip(a + 0.1 + rng.normal(0, 0.05, size=500), 0, None)
    res = M.paired_comparison(a, b, metric="recall@20")
    assert res.diff > 0 and res.ci_low > 0 and res.ci_high > res.ci_low
    assert res.rel_ci_low > 0
    assert res.rel_uplift == pytest.approx(b.mean() / a.mean() - 1)
    assert res.p_value < 0.05 and res.t_statistic > 0
    assert res.n_better > res.n_worse
    assert res.ci_low <= res.diff <= res.ci_high
    # the baseline-vs-challenger direction matters: swapping flips the sign
    swapped = M.paired_comparison(b, a, metric="recall@20")
    assert swapped.diff == pytest.approx(-res.diff)
    assert swapped.ci_high < 0
    d = res.to_dict()
    assert d["metric"] == "recall@20" and d["n_users"] == 500
    assert set(d) == {f.name for f in M.PairedComparison.__dataclass_fields__.values()}


def test_paired_comparison_matches_scipy_and_is_deterministic(monkeypatch: pytest.MonkeyPatch) -> None:
    from scipy import stats

    rng = np.random.default_rng(2)
    a, b = rng.random(120), rng.random(120)
    r1 = M.paired_comparison(a, b, random_state=42)
    r2 = M.paired_comparison(a, b, random_state=42)
    r3 = M.paired_comparison(a, b, random_state=43)
    assert r1 == r2
    assert (r1.ci_low, r1.ci_high) != (r3.ci_low, r3.ci_high)
    ref = stats.ttest_rel(b, a)
    assert r1.t_statistic == pytest.approx(ref.statistic)
    assert r1.p_value == pytest.approx(ref.pvalue)
    # batching only bounds memory: a tiny batch size yields the same resamples
    monkeypatch.setattr(significance, "_BOOTSTRAP_BATCH_ELEMENTS", 120 * 7)
    assert M.paired_comparison(a, b, random_state=42) == r1


def test_paired_comparisons_share_resamples_and_equal_single_calls() -> None:
    rng = np.random.default_rng(4)
    b = rng.random(90)
    baselines = {"pop": rng.random(90), "als": b - 0.05 * rng.random(90), "same": b.copy()}
    together = M.paired_comparisons(baselines, b, n_resamples=300, random_state=7)
    assert list(together) == ["pop", "als", "same"]
    for name, a in baselines.items():
        assert together[name] == M.paired_comparison(a, b, n_resamples=300, random_state=7)
    # the percentile bootstrap written out: one draw of (resamples, users) indices
    idx = np.random.default_rng(7).integers(0, 90, size=(300, 90))
    diffs = b[idx].mean(axis=1) - baselines["als"][idx].mean(axis=1)
    np.testing.assert_allclose([together["als"].ci_low, together["als"].ci_high], np.quantile(diffs, [0.025, 0.975]))
    assert together["same"].ci_low == together["same"].ci_high == 0.0
    groups = np.repeat(np.arange(30), 3)
    grouped = M.paired_comparisons(baselines, b, n_resamples=300, random_state=7, groups=groups)
    for name, a in baselines.items():
        assert grouped[name] == M.paired_comparison(a, b, n_resamples=300, random_state=7, groups=groups)
    assert grouped["als"].n_groups == 30


def test_paired_comparison_validates() -> None:
    with pytest.raises(ValueError, match="equal shapes"):
        M.paired_comparison(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="at least two"):
        M.paired_comparison(np.zeros(1), np.zeros(1))
    with pytest.raises(ValueError, match="confidence"):
        M.paired_comparison(np.zeros(3), np.ones(3), confidence=1.5)


def test_paired_comparison_constant_shift() -> None:
    # dyadic values so that b - a is exactly 0.25 everywhere (zero variance: scipy gives nan)
    a = np.arange(50) / 64
    res = M.paired_comparison(a, a + 0.25, n_resamples=200)
    assert res.p_value == 0.0 and res.t_statistic == math.inf
    assert res.ci_low == pytest.approx(0.25) and res.ci_high == pytest.approx(0.25)


# ----------------------------------------------------------------------------- reporting


def test_metrics_table() -> None:
    results = {
        "pop": {"ndcg@5": 0.1, "ndcg@10": 0.15},
        "als": {"ndcg@5": 0.2, "ndcg@10": 0.25, "novelty@10": 7.0},
    }
    table = M.metrics_table(results)
    assert isinstance(table, pd.DataFrame)
    assert list(table.index) == ["pop", "als"]
    assert list(table.columns) == ["ndcg@5", "ndcg@10", "novelty@10"]
    assert table.loc["als", "ndcg@10"] == 0.25
    assert math.isnan(table.loc["pop", "novelty@10"])


def test_plot_metric_vs_k(tmp_path: pytest.TempPathFactory) -> None:
    results = {
        "pop": M.evaluate(RECS, REL, ks=(1, 2, 4)),
        "other": {"ndcg@1": 0.3, "ndcg@4": 0.5},
    }
    path = tmp_path / "ndcg.png"
    M.plot_metric_vs_k(results, "ndcg", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="no 'nope@k'"):
        M.plot_metric_vs_k(results, "nope", tmp_path / "x.png")


def test_fourteen_models_are_told_apart_and_every_plot_writes_a_png(tmp_path: Path) -> None:
    models = [f"gen{i}" for i in range(14)] + ["ranker"]
    styles = M.reporting.model_styles(models)
    looks = {(s["color"], s["linestyle"], s["marker"]) for s in styles.values()}
    assert len(looks) == len(models)  # no two lines alike: 14 generators and the ranker
    assert len({s["color"] for s in styles.values()}) == len(models)
    results = {m: {"ndcg@5": 0.1 + i / 50, "ndcg@10": 0.2 + i / 50} for i, m in enumerate(models)}
    by_segment = {"all": results, "warm": results, "cold": {}}
    importance = pd.DataFrame({"feature": ["a", "b"], "importance": [60.0, 40.0]})
    for name, draw in (("k", lambda p: M.plot_metric_vs_k(results, "ndcg", p)),
                       ("segments", lambda p: M.plot_segments(by_segment, "ndcg@10", p)),
                       ("importance", lambda p: M.plot_importance(importance, p))):
        draw(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_new_item_exposure_is_the_share_of_filled_slots_on_items_without_listeners() -> None:
    counts = np.array([5, 0, 3, 0])  # items 1 and 3 have no training listener
    recs = np.array([[1, 0, 3], [2, -1, -1]])
    assert M.new_item_exposure(recs, 3, counts) == pytest.approx(2 / 4)
    assert M.new_item_exposure(recs, 1, counts) == pytest.approx(1 / 2)
    assert M.new_item_exposure(np.full((2, 3), -1), 3, counts) == 0.0
