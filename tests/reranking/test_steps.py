"""Each re-ranking step on hand-made lists, against values computed by hand."""

from __future__ import annotations

import numpy as np

from encore.reranking.steps import (
    Diversify,
    Exclude,
    ExposureFloor,
    Freshness,
    ItemSide,
    PopularityPenalty,
    Settings,
    chain,
    lists_from_scores,
    popularity,
    rejection_keys,
    rerank,
    with_content_candidates,
)

N_ITEMS = 6
AGES = np.array([400.0, 300.0, 5.0, 200.0, 10.0, np.nan])  # items 2 and 4 are new (< 30 days); 5 unknown


def side(**kw) -> ItemSide:
    return ItemSide(age_days=AGES, **kw)


def one(items, scores, user=0):
    return lists_from_scores(np.array([user]), np.array([items]), np.array([scores], dtype=float))


def test_relevance_is_the_score_scaled_per_user() -> None:
    lists = one([3, 1, 0, -1], [5.0, 3.0, 1.0, 0.0])
    np.testing.assert_allclose(lists.relevance[0, :3], [1.0, 0.5, 0.0])
    assert lists.relevance[0, 3] == -np.inf


def test_an_unscored_item_takes_the_relevance_of_the_scored_one_above_it() -> None:
    # The ranker's completions (nan) after its own items, and a row of a list nobody scored.
    lists = lists_from_scores(np.array([0, 1]), np.array([[3, 1, 0, 4, 2, -1], [0, 1, 2, -1, -1, -1]]),
                              np.array([[5.0, np.nan, 3.0, 1.0, np.nan, 0.0], [np.nan] * 6]))
    np.testing.assert_allclose(lists.relevance[0, :5], [1.0, 1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(lists.relevance[1, :3], [1.0, 1.0, 1.0])
    assert (lists.relevance[:, 5] == -np.inf).all() and (lists.relevance[1, 3:] == -np.inf).all()
    # Every step keeps an unscored item where its list put it, the penalty pushing popular ones down.
    items, _ = rerank(lists, side(popularity=np.array([0.0, 0.0, 0.9, 0.0, 0.0, 0.0])),
                      [PopularityPenalty(0.1), Diversify()], 5)
    assert items.tolist() == [[3, 1, 0, 4, 2], [0, 1, 2, -1, -1]]


def test_exclusion_removes_blocked_and_the_users_rejections_only() -> None:
    lists = lists_from_scores(np.array([0, 1]), np.array([[0, 1, 2], [0, 1, 2]]), np.array([[3.0, 2, 1]] * 2))
    out = Exclude(blocked=np.array([2]), rejected=rejection_keys([0], [0], N_ITEMS), n_items=N_ITEMS)(lists, side())
    assert out.items.tolist() == [[-1, 1, -1], [0, 1, -1]]
    items, _ = rerank(lists, side(), chain(Settings(top_k=3), blocked=np.array([2]),
                                           rejected=rejection_keys([0], [0], N_ITEMS), n_items=N_ITEMS), 3)
    assert items.tolist() == [[1, -1, -1], [0, 1, -1]]


def test_freshness_adds_half_the_boost_per_half_life() -> None:
    lists = one([0, 2, 4, 5], [1.0, 1.0, 1.0, 0.0])  # relevance 1, 1, 1, 0
    out = Freshness(boost=0.4, half_life_days=5.0)(lists, side())
    # 400 days: 0.4 * 2^-80 ~ 0; 5 days: 0.4 * 0.5; 10 days: 0.4 * 0.25; unknown age: nothing.
    np.testing.assert_allclose(out.relevance[0], [1.0, 1.2, 1.1, 0.0], atol=1e-12)
    order, _ = rerank(lists, side(), [Freshness(0.4, 5.0), Diversify()], 4)
    assert order[0].tolist() == [2, 4, 0, 5]


def test_mmr_order_matches_a_hand_computation() -> None:
    # Items 0 and 1 point the same way, item 2 is orthogonal to both, item 3 halfway.
    emb = np.zeros((N_ITEMS, 2))
    emb[0] = emb[1] = [1.0, 0.0]
    emb[2] = [0.0, 1.0]
    emb[3] = [np.sqrt(0.5), np.sqrt(0.5)]
    lists = one([0, 1, 2, 3], [1.0, 0.9, 0.5, 0.6])  # relevance 1, 0.8, 0, 0.2
    # lambda 0.5, by hand: step 1 max 0.5*rel -> item 0 (0.5).
    # step 2: item1 0.5*0.8-0.5*1 = -0.1; item2 0-0 = 0; item3 0.1-0.5*0.7071 = -0.2536 -> item 2.
    # step 3: item1 -0.1 (closest 1); item3 0.1-0.5*0.7071 = -0.2536 -> item 1; then item 3.
    out = Diversify(mmr_lambda=0.5)(lists, side(embeddings=emb))
    assert out.items[0].tolist() == [0, 2, 1, 3]
    # lambda 1 is the plain relevance order.
    assert Diversify(mmr_lambda=1.0)(lists, side(embeddings=emb)).items[0].tolist() == [0, 1, 3, 2]
    # lambda 0.8: step 2: item1 0.64-0.2 = 0.44; item2 0; item3 0.16-0.1414 -> item 1, then 3 (0.0186) before 2 (0).
    assert Diversify(mmr_lambda=0.8)(lists, side(embeddings=emb)).items[0].tolist() == [0, 1, 3, 2]


def test_cap_per_attribute_defers_items_over_the_cap() -> None:
    attribute = np.array([7, 7, 7, 8, -1, 9])
    lists = one([0, 1, 2, 3, 4], [5.0, 4.0, 3.0, 2.0, 1.0])
    out = Diversify(cap=2)(lists, side(attribute=attribute))
    assert out.items[0].tolist() == [0, 1, 3, 4, 2]  # a third item of 7 only when nothing else is left
    out = Diversify(cap=1)(one([0, 1, 2], [3.0, 2.0, 1.0]), side(attribute=attribute))
    assert out.items[0].tolist() == [0, 1, 2]  # the candidates do not allow it: all kept


def test_exposure_floor_swaps_in_the_best_new_items_where_the_candidates_allow() -> None:
    # Top 3 is [0, 1, 3] (all old); new items 2 and 4 wait below at places 5 and 4.
    lists = one([0, 1, 3, 5, 4, 2], [6.0, 5, 4, 3, 2, 1])
    out = ExposureFloor(m=2, k=3, new_days=30.0)(lists, side())
    # The two lowest old items of the top 3 (1, 3) give way to 4 then 2; they follow in order.
    assert out.items[0].tolist() == [0, 4, 2, 1, 3, 5]
    # One new item already in the top k: only one swap.
    out = ExposureFloor(m=2, k=3, new_days=30.0)(one([2, 0, 1, 3, 4], [5.0, 4, 3, 2, 1]), side())
    assert out.items[0].tolist() == [2, 0, 4, 1, 3]
    # Fewer new candidates than m: all of them, no more.
    out = ExposureFloor(m=3, k=3, new_days=30.0)(one([0, 1, 3, 4], [4.0, 3, 2, 1]), side())
    assert out.items[0].tolist() == [0, 1, 4, 3]
    # m 0 is off.
    assert ExposureFloor(m=0, k=3, new_days=30.0)(lists, side()).items[0].tolist() == [0, 1, 3, 5, 4, 2]


def test_content_candidates_sit_below_the_rankers_and_the_floor_lifts_them() -> None:
    lists = with_content_candidates(one([0, 1, 3], [3.0, 2.0, 1.0]), np.array([[4, 2, 0]]), np.array([[0.9, 0.5, 0.1]]))
    assert lists.items[0].tolist() == [0, 1, 3, 4, 2, -1]  # item 0 is not added twice
    np.testing.assert_allclose(lists.relevance[0, :5], [1.0, 0.5, 0.0, -0.5, -1.0])
    items, _ = rerank(lists, side(), chain(Settings(top_k=4, exposure_m=1, exposure_k=3), blocked=np.array([]),
                                           rejected=np.array([]), n_items=N_ITEMS), 4)
    assert items[0].tolist() == [0, 1, 4, 3]


def test_batches_of_users_are_reranked_independently() -> None:
    emb = np.random.default_rng(0).normal(size=(N_ITEMS, 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    scores = np.random.default_rng(1).random((4, 5))
    items = np.array([np.random.default_rng(u).permutation(N_ITEMS)[:5] for u in range(4)])
    settings = Settings(top_k=5, mmr_lambda=0.6, freshness_boost=0.2, exposure_m=1, exposure_k=2, cap_per_attribute=2)
    s = side(embeddings=emb, attribute=np.array([0, 0, 1, 1, 0, 1]))
    steps = chain(settings, blocked=np.array([1]), rejected=rejection_keys([2], [3], N_ITEMS), n_items=N_ITEMS)
    whole, _ = rerank(lists_from_scores(np.arange(4), items, scores), s, steps, 5)
    for u in range(4):
        alone, _ = rerank(lists_from_scores(np.array([u]), items[u:u + 1], scores[u:u + 1]), s, steps, 5)
        assert alone[0].tolist() == whole[u].tolist()


def test_popularity_is_log_listeners_over_the_most() -> None:
    np.testing.assert_allclose(popularity(np.array([0, 1, 3, 15])), [0.0, np.log(2) / np.log(16), 0.5, 1.0])
    np.testing.assert_array_equal(popularity(np.zeros(3)), [0.0, 0.0, 0.0])


def test_popularity_penalty_by_hand() -> None:
    # Relevance [1, 0.75, 0.5, 0.25, 0] for items [0, 1, 2, 3, 4]; popularity [1, 0.8, 0, 0.2, 0.1, 0].
    lists = one([0, 1, 2, 3, 4], [4.0, 3.0, 2.0, 1.0, 0.0])
    s = side(popularity=np.array([1.0, 0.8, 0.0, 0.2, 0.1, 0.0]))
    out = PopularityPenalty(0.5)(lists, s)
    # 1 - 0.5, 0.75 - 0.4, 0.5 - 0, 0.25 - 0.1, 0 - 0.05
    np.testing.assert_allclose(out.relevance[0], [0.5, 0.35, 0.5, 0.15, -0.05])
    items, _ = rerank(lists, s, chain(Settings(top_k=5, popularity_penalty=0.5), blocked=np.array([]),
                                      rejected=np.array([]), n_items=N_ITEMS), 5)
    assert items[0].tolist() == [0, 2, 1, 3, 4]  # the stable sort keeps 0 before 2 at the tie
    items, _ = rerank(lists, s, chain(Settings(top_k=5, popularity_penalty=2.0), blocked=np.array([]),
                                      rejected=np.array([]), n_items=N_ITEMS), 5)
    # 1 - 2, 0.75 - 1.6, 0.5, 0.25 - 0.4, 0 - 0.2
    assert items[0].tolist() == [2, 3, 4, 1, 0]
    # Off at 0, and without popularity.
    assert PopularityPenalty(0.0)(lists, s) is lists
    assert PopularityPenalty(1.0)(lists, side()) is lists


def test_content_weight_puts_new_items_on_the_rankers_scale() -> None:
    base = one([0, 1, 3], [3.0, 2.0, 1.0])  # relevance 1, 0.5, 0
    lists = with_content_candidates(base, np.array([[4, 2]]), np.array([[0.9, 0.5]]), weight=0.8)
    np.testing.assert_allclose(lists.relevance[0], [1.0, 0.5, 0.0, 0.8, 0.0])  # 0.8 * [1, 0]
    items, _ = rerank(lists, side(), chain(Settings(top_k=5, content_weight=0.8), blocked=np.array([]),
                                           rejected=np.array([]), n_items=N_ITEMS), 5)
    assert items[0].tolist() == [0, 4, 1, 3, 2]  # 4 between 0 and 1; 2 ties 3 and stays after it
