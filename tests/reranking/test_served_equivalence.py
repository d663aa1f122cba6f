"""The served re-ranker (built from the bundle's tables, raw ids) gives the component's list for
the same inputs, with every step on, the popularity penalty and content weight included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from encore.reranking.steps import ItemSide, Settings, chain, lists_from_scores, rerank, with_content_candidates
from encore.serving.rerank import ServedReranker

N = 8
RAW = np.array([f"a{i}" for i in range(N)])


def test_served_reranker_matches_the_component_steps() -> None:
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(N, 3))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    side = ItemSide(age_days=np.array([400.0, 3.0, 200.0, 90.0, 0.0, 0.0, 50.0, 10.0]), embeddings=emb,
                    attribute=np.array([0, 1, 0, 1, 2, 2, 0, 1]),
                    popularity=np.array([1.0, 0.9, 0.7, 0.5, 0.0, 0.0, 0.3, 0.1]))
    settings = Settings(top_k=6, mmr_lambda=0.7, freshness_boost=0.2, popularity_penalty=0.5, content_weight=0.6,
                        exposure_m=1, exposure_k=4, cap_per_attribute=2)
    ranked, scores = np.array([0, 1, 2, 3, 6, 7]), np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    content, content_scores = np.array([4, 5]), np.array([0.8, 0.3])
    blocked, rejected_item = np.array([2]), 3

    # The component's way: item indexes, the batch built as in encore.components.rerank.reranked.
    batch = with_content_candidates(lists_from_scores(np.array([0]), ranked[None], scores[None]), content[None],
                                    content_scores[None], settings.content_weight)
    steps = chain(settings, blocked=blocked, rejected=np.array([0 * N + rejected_item]), n_items=N)
    offline = rerank(batch, side, steps, settings.top_k)[0][0]
    offline = offline[offline >= 0]

    # The service's way: the bundle's tables in raw ids, the served codes in another order.
    codes = pd.Index(RAW[::-1])
    tables = {"config": {"settings": dataclasses.asdict(settings), "blocked": RAW[blocked].tolist()},
              "items": {"item_id": RAW, "age_days": side.age_days, "embeddings": emb, "attribute": side.attribute,
                        "popularity": side.popularity},
              "content": pd.DataFrame({"user_id": ["u"] * 2, "item_id": RAW[content], "score": content_scores,
                                       "rank": [1, 2]}),
              "rejections": pd.DataFrame({"user_id": ["u"], "item_id": [RAW[rejected_item]]})}
    served = ServedReranker.from_tables(tables, codes, {"u": 0})
    at = codes.get_indexer(RAW[ranked])
    items, new = served.apply(0, at, scores, np.zeros(0, dtype=np.int64))
    assert codes[items].tolist() == RAW[offline].tolist()
    assert set(codes[items[new]]) <= set(RAW[content])
    # The penalty and the weight matter here: without them the list differs.
    plain = dataclasses.replace(settings, popularity_penalty=0.0, content_weight=0.0)
    steps = chain(plain, blocked=blocked, rejected=np.array([rejected_item]), n_items=N)
    batch = with_content_candidates(lists_from_scores(np.array([0]), ranked[None], scores[None]), content[None],
                                    content_scores[None])
    assert rerank(batch, side, steps, settings.top_k)[0][0].tolist() != offline.tolist()


@pytest.mark.parametrize(("cost", "max_cost"), [("relevance", None), ("chance", None), ("chance", 0.15)])
def test_served_lists_match_the_component_with_the_steps_across_users_and_ranked_new_items(
        cost: str, max_cost: float | None) -> None:
    # Three users: the component caps and fills over all of them at once; the service re-ranks one
    # user at a time with the cap's refusals and the fill's promotions from the bundle, and places
    # new items by the content generator's rank as the component does. The fill weighs places by
    # either cost; the service needs neither (it promotes the recorded pairs).
    from encore.reranking.spread import full_chain, served_keys, split_at_cap, with_ranked_content

    side = ItemSide(age_days=np.array([400.0, 300.0, 200.0, 90.0, 0.0, 0.0, 50.0, 100.0]),
                    popularity=np.array([1.0, 0.9, 0.7, 0.5, 0.0, 0.0, 0.3, 0.1]))
    settings = Settings(top_k=5, popularity_penalty=0.3, exposure_cap=0.4, exposure_k=3, content_max_rank=2,
                        coverage_slots=1, coverage_cost=cost, coverage_max_cost=max_cost)
    users = np.array([0, 1, 2])
    ranked = np.array([[0, 1, 2, 3, 6], [0, 2, 1, 7, 3], [1, 0, 3, 2, 7]])
    scores = np.array([[5.0, 4, 3, 2, 1], [9.0, 8, 4, 3, 2], [3.0, 2.5, 2, 1, 0.5]])
    content, content_scores, content_ranks = np.array([[4, 5], [5, -1], [-1, -1]]), \
        np.array([[0.8, 0.3], [0.5, 0.0], [0.0, 0.0]]), np.array([[2, 7], [1, 0], [0, 0]])
    none = np.zeros(0, dtype=np.int64)

    chance = scores / 10 if cost == "chance" else None  # probabilities, on one scale for all three
    batch = with_ranked_content(lists_from_scores(users, ranked, scores, chance), content, content_scores,
                                content_ranks, settings)
    steps = full_chain(settings, blocked=none, rejected=none, n_items=N)
    per_user, across = split_at_cap(steps)
    for step in per_user:
        batch = step(batch, side)
    capped, promoted = served_keys(batch, side, settings, N)
    # Both bind here: ceil(0.4 * 3) = 2 lists per item's top 3, and the fill has items to give.
    assert len(capped) and len(promoted)
    offline = rerank(batch, side, across, settings.top_k)[0]

    codes = pd.Index(RAW[::-1])
    user_raw = np.array(["u0", "u1", "u2"])

    def pairs(keys: np.ndarray) -> dict[str, list]:
        return {"user_id": user_raw[keys // N].tolist(), "item_id": RAW[keys % N].tolist()}

    tables = {"config": {"settings": dataclasses.asdict(settings), "blocked": [],
                         "capped": pairs(capped), "promoted": pairs(promoted)},
              "items": {"item_id": RAW, "age_days": side.age_days, "embeddings": np.zeros((0, 0)),
                        "attribute": np.zeros(0, dtype=np.int64), "popularity": side.popularity},
              "content": pd.DataFrame({"user_id": ["u0", "u0", "u1"], "item_id": RAW[[4, 5, 5]],
                                       "score": [0.8, 0.3, 0.5], "rank": [2, 7, 1]}),
              "rejections": pd.DataFrame({"user_id": [], "item_id": []})}
    served = ServedReranker.from_tables(tables, codes, {"u0": 0, "u1": 1, "u2": 2})
    for user in users:
        items, _ = served.apply(int(user), codes.get_indexer(RAW[ranked[user]]), scores[user], none)
        expected = offline[user][offline[user] >= 0]
        assert codes[items].tolist() == RAW[expected].tolist()
    # A new item placed by its rank: u1's item 5 (the generator's rank 1) leads u1's list.
    assert offline[1][0] == 5
    # Without either record the service would serve other lists: the bundle's pairs matter.
    for dropped in ("capped", "promoted"):
        tables["config"] = {"settings": dataclasses.asdict(settings), "blocked": [],
                            **{name: pairs(keys) for name, keys in (("capped", capped), ("promoted", promoted))
                               if name != dropped}}
        without = ServedReranker.from_tables(tables, codes, {"u0": 0, "u1": 1, "u2": 2})
        assert any(codes[without.apply(int(u), codes.get_indexer(RAW[ranked[u]]), scores[u], none)[0]].tolist()
                   != RAW[offline[u][offline[u] >= 0]].tolist() for u in users), dropped


def test_the_service_serves_an_item_from_its_release_on() -> None:
    # Item a2 is released at t = 1000: a request before it does not get it, one after it does;
    # items without a release date (NaN) are always out.
    settings = Settings(top_k=4)
    codes = pd.Index(RAW)
    tables = {"config": {"settings": dataclasses.asdict(settings), "blocked": []},
              "items": {"item_id": RAW, "age_days": np.zeros(N), "embeddings": np.zeros((0, 0)),
                        "attribute": np.zeros(0, dtype=np.int64),
                        "release": np.where(np.arange(N) == 2, 1000.0, np.nan)},
              "content": pd.DataFrame(columns=["user_id", "item_id", "score", "rank"]),
              "rejections": pd.DataFrame(columns=["user_id", "item_id"])}
    served = ServedReranker.from_tables(tables, codes, {"u": 0})
    pool, scores = np.array([2, 0, 1]), np.array([3.0, 2.0, 1.0])
    assert served.apply(0, pool, scores, np.zeros(0, dtype=np.int64), now=999.0)[0].tolist() == [0, 1]
    assert served.apply(0, pool, scores, np.zeros(0, dtype=np.int64), now=1000.0)[0].tolist() == [2, 0, 1]
    # A bundle without release dates (older, or data without them) serves everything.
    del tables["items"]["release"]
    assert ServedReranker.from_tables(tables, codes, {"u": 0}).apply(
        0, pool, scores, np.zeros(0, dtype=np.int64), now=0.0)[0].tolist() == [2, 0, 1]


def served_model(settings: Settings, *, rejections: pd.DataFrame | None = None, capped: dict | None = None,
                 release: np.ndarray | None = None, content: pd.DataFrame | None = None):
    """A served model of N items a0..a7 and one known user u: the ranker's list a0 a1 a2 then a
    completion a3 (nan), a7 similar to a6, popular a5 a4 a3 ..., over the re-ranking ``settings``."""
    from encore.serving.blend import Ranked
    from encore.serving.blended_model import ServedModel

    codes = pd.Index(RAW)
    items = {"item_id": RAW, "age_days": np.full(N, 400.0), "embeddings": np.zeros((0, 0)),
             "attribute": np.zeros(0, dtype=np.int64), "popularity": np.linspace(1.0, 0.0, N)}
    if release is not None:
        items["release"] = release
    recorded = {"capped": capped} if capped is not None else {}
    tables = {"config": {"settings": dataclasses.asdict(settings), "blocked": [], **recorded},
              "items": items,
              "content": content if content is not None else pd.DataFrame(columns=["user_id", "item_id", "score",
                                                                                     "rank"]),
              "rejections": rejections if rejections is not None else pd.DataFrame(columns=["user_id", "item_id"])}
    sim_indptr = np.zeros(N + 1, dtype=np.int64)
    sim_indptr[7:] = 1  # a6's one neighbour: a7
    return ServedModel(name="m", version="1", run_id=None, loaded_at="", load_seconds=0.0, item_ids=RAW,
                       item_index={str(i): j for j, i in enumerate(RAW)}, user_index={"u": 0},
                       rec_indptr=np.array([0, 4]), rec_items=np.array([0, 1, 2, 3]),
                       rec_scores=np.array([2.0, 1.5, 1.0, np.nan]),
                       sim_indptr=sim_indptr, sim_items=np.array([7]), sim_scores=np.array([0.05]),
                       popular=Ranked(np.array([5, 4, 3, 2, 1, 0, 6, 7]), np.arange(800.0, 0.0, -100.0), "popular"),
                       reranker=ServedReranker.from_tables(tables, codes, {"u": 0}))


def ids(recommendation) -> list[str]:
    return recommendation.item_ids


def test_the_served_reranking_keeps_the_blend_order_and_the_completions_place() -> None:
    # Every step off: the served list is the blend's, whatever scales its sources' scores are on
    # (ranker scores, similarity sums, listener counts). Before, they were sorted on one scale: a7
    # (similarity 0.05) went below the ranker's items.
    model = served_model(Settings(top_k=4))
    blend = dict(recent_listens=3, online_share=0.5, foldin_min_listens=3, exclude_heard=False)
    assert ids(model.recommend("u", np.zeros(0, dtype=np.int64), 4, **blend)) == ["a0", "a1", "a2", "a3"]
    assert ids(model.recommend("u", np.array([6]), 4, **blend)) == ["a7", "a0", "a1", "a2"]
    # The popularity penalty moves the items as the component does, the completion (a3, unscored)
    # at the relevance of the ranker's last item (a2), less popular, so above it: the component's list.
    settings = Settings(top_k=4, popularity_penalty=0.5)
    batch = lists_from_scores(np.array([0]), np.array([[0, 1, 2, 3]]), np.array([[2.0, 1.5, 1.0, np.nan]]))
    side = ItemSide(age_days=np.full(N, 400.0), popularity=np.linspace(1.0, 0.0, N))
    offline = rerank(batch, side, chain(settings, blocked=np.zeros(0, dtype=np.int64),
                                        rejected=np.zeros(0, dtype=np.int64), n_items=N), 4)[0][0]
    assert ids(served_model(settings).recommend("u", np.zeros(0, dtype=np.int64), 4, **blend)) == \
        RAW[offline].tolist() == ["a0", "a1", "a3", "a2"]


def test_what_fills_a_served_list_never_brings_back_what_was_kept_out() -> None:
    # k above the re-ranked list's length: popular items complete it, never an offline rejection
    # (a5), an item the component's cap refused the user (a4), nor one not released yet (a2).
    blend = dict(recent_listens=3, online_share=0.5, foldin_min_listens=3, exclude_heard=False)
    model = served_model(Settings(top_k=4), rejections=pd.DataFrame({"user_id": ["u"], "item_id": ["a5"]}),
                         capped={"user_id": ["u"], "item_id": ["a4"]},
                         release=np.where(np.arange(N) == 2, 4e9, np.nan))
    served = ids(model.recommend("u", np.zeros(0, dtype=np.int64), 7, **blend))
    assert served == ["a0", "a1", "a3", "a6", "a7"]  # the re-ranked four, then the one popular item left


def test_a_new_item_the_user_has_played_is_not_served_again() -> None:
    # a6 is u's content candidate placed by the floor; once u has played it, it is out of the list.
    content = pd.DataFrame({"user_id": ["u"], "item_id": ["a6"], "score": [0.9], "rank": [1]})
    settings = Settings(top_k=4, content_max_rank=1)
    blend = dict(recent_listens=3, online_share=0.0, foldin_min_listens=3, exclude_heard=False)
    model = served_model(settings, content=content)
    assert "a6" in ids(model.recommend("u", np.zeros(0, dtype=np.int64), 4, **blend))
    assert "a6" not in ids(model.recommend("u", np.array([6]), 4, **blend))


def test_a_new_items_rank_counts_only_the_items_kept() -> None:
    # Ranker list a0 a1 a2 a3, a0 blocked; content ranks new item a6 second: it lands second among
    # the items served (a1 a6 a2 a3), not second counting the blocked a0. Component and service agree.
    from encore.components.rerank import StageLists, before_cap

    settings = Settings(top_k=4, content_max_rank=5)
    side = ItemSide(age_days=np.full(N, 400.0))
    lists = StageLists(users=np.array([0]), items=np.array([[0, 1, 2, 3]]), scores=np.array([[4.0, 3, 2, 1]]),
                       content_items=np.array([[6]]), content_scores=np.array([[0.9]]), content_ranks=np.array([[2]]),
                       idle_days=np.zeros(1), probabilities=np.zeros(1, dtype=bool))
    offline = before_cap(lists, side, settings, blocked=np.array([0]), rejected=np.zeros(0, dtype=np.int64),
                         n_items=N)
    order = np.argsort(-offline.relevance[0], kind="stable")
    assert [int(i) for i in offline.items[0][order] if i >= 0] == [1, 6, 2, 3]
    codes = pd.Index(RAW)
    tables = {"config": {"settings": dataclasses.asdict(settings), "blocked": ["a0"]},
              "items": {"item_id": RAW, "age_days": side.age_days, "embeddings": np.zeros((0, 0)),
                        "attribute": np.zeros(0, dtype=np.int64)},
              "content": pd.DataFrame({"user_id": ["u"], "item_id": ["a6"], "score": [0.9], "rank": [2]}),
              "rejections": pd.DataFrame(columns=["user_id", "item_id"])}
    served = ServedReranker.from_tables(tables, codes, {"u": 0})
    items, _ = served.apply(0, np.array([0, 1, 2, 3]), np.array([4.0, 3, 2, 1]), np.zeros(0, dtype=np.int64))
    assert codes[items].tolist() == ["a1", "a6", "a2", "a3"]
