"""The parent run's headline: a few dozen metrics, the ranker beside every generator."""

from __future__ import annotations

import math

from encore.evaluation.headline import headline_metrics, headline_tags

VS = {"rel_uplift": 0.1, "rel_ci_low": 0.02, "rel_ci_high": 0.2, "p_value": 0.01}
MODELS = [f"gen{i}" for i in range(14)]


def segments() -> dict:
    scores = {m: 0.1 + i / 100 for i, m in enumerate(MODELS)} | {"ranker": 0.5}
    full = {"n_users": 100, "best_generator": "gen13", "ndcg@10": scores, "vs_best_generator": VS}
    return {"all": full, "warm": full, "cold": {"n_users": 0, "note": "no test users in this segment"},
            "cold_items": full | {"vs_best_generator": VS | {"rel_uplift": math.nan}}}


def test_every_model_on_all_users_and_per_segment_only_the_ranker_and_the_best_generator() -> None:
    out = headline_metrics("ndcg@10", segments())
    assert len(out) <= 50
    assert {f"{m}.ndcg@10" for m in [*MODELS, "ranker"]} <= set(out)
    assert out["ndcg@10"] == out["ranker.ndcg@10"] == 0.5
    assert out["best_generator.warm.ndcg@10"] == out["gen13.ndcg@10"]
    assert "gen0.warm.ndcg@10" not in out
    assert out["uplift_vs_best_generator.warm_ci_low"] == 0.02 and out["uplift_vs_best_generator_p_value"] == 0.01
    assert "uplift_vs_best_generator.cold_items" not in out  # undefined uplift: not logged
    assert out["n_test_users.cold"] == 0 and "best_generator.cold.ndcg@10" not in out


def test_pooled_keys_are_prefixed_and_the_sort_keys_are_not() -> None:
    out = headline_metrics("ndcg@10", segments(), "pooled.")
    assert out["pooled.ranker.ndcg@10"] == out["ndcg@10"] == 0.5
    assert out["uplift_vs_best_generator"] == out["pooled.uplift_vs_best_generator"] == 0.1
    assert headline_tags(segments()) == {"encore.best_generator": "gen13", "encore.best_generator.warm": "gen13",
                                         "encore.best_generator.cold_items": "gen13"}
