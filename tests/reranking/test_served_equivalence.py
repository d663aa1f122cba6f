"""The served re-ranker (built from the bundle's tables, raw ids) gives the component's list for
the same inputs, with every step on, the popularity penalty and content weight included."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

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
