"""The arithmetic of the benchmark reports (the benchmarks themselves are not tests)."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.scale import growth, markdown, project
from benchmarks.userknn_listeners import markdown as listeners_markdown


def _size(n: int, seconds: dict[str, float]) -> dict:
    return {"n_interactions": n, "n_users": n // 10, "n_items": n // 20, "total_seconds": sum(seconds.values()),
            "overhead_seconds": 1.0, "peak_rss_bytes": 2**30, "best_generator": "ease",
            "vs_best_generator": {"mean_a": 0.3, "mean_b": 0.33, "rel_uplift": 0.1, "rel_ci_low": 0.05,
                                  "rel_ci_high": 0.15},
            "components": {name: {"seconds": s, "peak_rss_bytes": 2**29} for name, s in seconds.items()}}


def test_growth_exponents_between_sizes_and_first_to_last() -> None:
    results = {"1m": _size(1_000_000, {"als": 10.0, "ranker": 20.0}),
               "4m": _size(4_000_000, {"als": 40.0, "ranker": 160.0}),
               "16m": _size(16_000_000, {"als": 160.0, "ranker": 640.0})}
    exponents = growth(results)
    assert list(exponents) == ["1m->4m", "4m->16m", "1m->16m"]
    assert exponents["1m->4m"] == pytest.approx({"als": 1.0, "ranker": 1.5})   # 4x time per 4x; 8x per 4x
    assert exponents["4m->16m"] == pytest.approx({"als": 1.0, "ranker": 1.0})
    assert exponents["1m->16m"] == pytest.approx({"als": 1.0, "ranker": 1.25})  # 32x per 16x
    assert list(growth({"1m": results["1m"], "4m": results["4m"]})) == ["1m->4m"]
    table = markdown({"results": results, "growth": exponents, "load_average_at_end": (1.0,),
                      "machine": {"cpus": 2, "memory_gib": 23.5, "python": "3.11", "load_average_at_start": (0.5,)}})
    assert "| ranker | 20 (—) / 0.50 | 160 (—) / 0.50 | 640 (—) / 0.50 | 1.50 | 1.00 | 1.25 |" in table
    assert "| 16m | 16,000,000 | 1,600,000 × 800,000 | 0.3300 | ease 0.3000 | +10.0% (+5.0% .. +15.0%) |" in table


def test_projection_extrapolates_each_component_with_its_own_exponents() -> None:
    results = {"1m": _size(1_000_000, {"als": 10.0, "ranker": 20.0}),
               "16m": _size(16_000_000, {"als": 160.0, "ranker": 640.0})}
    results["16m"]["components"]["ranker"]["peak_rss_bytes"] = 2**31  # 4x the 1m peak over 16x: exponent 0.5
    projected = project({"results": results}, 64_000_000)
    assert projected["from_sizes"] == ["1m", "16m"]
    als, ranker = projected["components"]["als"], projected["components"]["ranker"]
    assert (als["time_exponent"], als["seconds"], als["peak_rss_bytes"]) == pytest.approx((1.0, 640.0, 2**29))
    assert ranker["time_exponent"] == pytest.approx(1.25) and ranker["seconds"] == pytest.approx(640 * 4**1.25)
    assert ranker["rss_exponent"] == pytest.approx(0.5) and ranker["peak_rss_bytes"] == pytest.approx(2**32)
    assert projected["total_seconds"] == pytest.approx(640 + 640 * 4**1.25 + 1.0)  # + the overhead as measured
    assert projected["peak_rss_bytes"] == pytest.approx(2**32)


def test_userknn_listeners_table_names_the_exact_index_and_the_items_cut() -> None:
    report = {"commit": "0123456789abcdef", "machine": {"cpus": 2, "memory_gib": 23.5, "python": "3.11"},
              "data": [{"name": "synthetic_1m", "n_users": 30_000, "n_items": 20_000, "nnz": 640_894,
                        "caps": [{"max_item_listeners": 1000, "items_cut": 12, "fit_seconds": 8.04, "ndcg@10": 0.24531},
                                 {"max_item_listeners": None, "items_cut": 0, "fit_seconds": 11.0, "ndcg@10": 0.247}]}]}
    table = listeners_markdown(report)
    assert table.startswith("Commit 0123456.")
    assert "| synthetic_1m | 30,000 × 20,000 (640,894) | 1,000 | 12 | 8.0 | 0.2453 |" in table
    assert "| synthetic_1m | 30,000 × 20,000 (640,894) | null (exact) | 0 | 11.0 | 0.2470 |" in table


def test_scale_targets_name_the_misses_and_the_cpu_growth() -> None:
    from benchmarks.docs_figures import scale_target_lines

    small = _size(1_000_000, {"als": 10.0, "ranker": 100.0})
    large = _size(10_000_000, {"als": 100.0, "ranker": 2000.0})   # ranker: 20x per 10x, exponent 1.30
    for size, cpu in ((small, {"als": 20.0, "ranker": 100.0}), (large, {"als": 200.0, "ranker": 1000.0})):
        for name, seconds in cpu.items():
            size["components"][name]["cpu_seconds"] = seconds
    results = {"1m": small, "10m": large}
    table = "\n".join(scale_target_lines({"results": results, "growth": growth(results)}))
    assert "| 1m: whole pipeline ≤ 3 min | 110 s (1.8 min) | yes |" in table
    assert ("| 10m: whole pipeline ≤ 20 min | 2100 s (35.0 min); largest: ranker 2000 s (95%), als 100 s (5%) "
            "| **no** |") in table
    assert "above: ranker 1.301 (CPU seconds 1.000) | **no** |" in table
    assert "| the same on CPU seconds | all within | yes |" in table
    assert "| 10m: ranker beats the best generator, paired CI above zero | 0.3300 vs ease 0.3000" in table


def test_a_size_is_replaced_only_by_a_commit_that_computes_the_same() -> None:
    from benchmarks.scale import same_computation

    assert not same_computation("abc-dirty", "abc")
    assert not same_computation("unknown", "abc")
    assert same_computation("HEAD", "HEAD")


def test_neural_kinds_are_held_to_the_strongest_generator_of_each_segment() -> None:
    import numpy as np
    import pandas as pd

    from benchmarks.neural import pooled_segments

    rng = np.random.default_rng(0)
    n = 400
    joined = pd.DataFrame({"fold": np.repeat([1, 2], n // 2), "user_id": np.tile(np.arange(n // 2), 2),
                           "segment": np.where(np.arange(n) % 4 == 0, "cold", "warm")})
    warm = joined["segment"] == "warm"
    joined["ease"] = np.where(warm, 0.30, 0.05)
    joined["popular"] = np.where(warm, 0.25, 0.40)   # over all users 0.2875 against EASE's 0.2375; not on warm
    joined["ranker_without"], joined["ranker"] = 0.3, 0.3 + rng.normal(0.01, 0.001, n)
    joined["sasrec"], joined["twotower"] = 0.2, joined["ease"]
    segments = pooled_segments(joined, ["ease", "popular"], seed=0)
    assert segments["warm"]["best_generator"] == "ease"
    assert segments["all"]["best_generator"] == "popular"
    assert segments["warm"]["twotower_vs_best"]["diff"] == pytest.approx(0.0)
    assert segments["warm"]["sasrec_vs_best"]["diff"] == pytest.approx(-0.1)
    assert segments["all"]["ranker_with_vs_without"]["ci_low"] > 0
    assert set(segments["warm"]["per_fold"]) == {"1", "2"}


def test_a_search_summary_counts_complete_and_pruned_trials() -> None:
    import pandas as pd

    from benchmarks.neural import search_summary

    trials = pd.DataFrame({"state": ["complete", "pruned", "complete", "pruned", "pruned"],
                           "best_epoch": [3.0, 1.0, 7.0, 1.0, 2.0]})
    assert search_summary(trials) == {"trials_complete": 2, "trials_pruned": 3, "complete_best_epochs": [3, 7]}
    assert search_summary(trials.iloc[:0]) == {}


def test_a_components_phases_are_its_seconds_metrics_but_the_runners_own() -> None:
    from benchmarks.scale import phases

    metrics = {"time_run_seconds": 30.0, "cpu_run_seconds": 50.0, "fit_base_seconds": 4.0,
               "recommend_train_seconds": 6.0, "ndcg@10": 0.3, "peak_rss_mib": 100.0}
    assert phases(metrics) == {"fit_base": 4.0, "recommend_train": 6.0}


def test_the_phase_table_splits_a_component_into_fit_candidates_and_the_rest(tmp_path, monkeypatch) -> None:
    from benchmarks import docs_figures

    small = _size(1_000_000, {"bpr": 10.0})
    large = _size(10_000_000, {"bpr": 200.0})
    small["components"]["bpr"]["phases"] = {"fit_base": 2.0, "fit_train": 2.0, "recommend_base": 1.0,
                                            "recommend_train": 1.0}
    large["components"]["bpr"]["phases"] = {"fit_base": 40.0, "fit_train": 40.0, "recommend_base": 50.0,
                                            "recommend_train": 50.0}
    report = {"commit": "0" * 40, "results": {"1m": small, "10m": large}}
    monkeypatch.setattr(docs_figures, "load", lambda name: report)
    table = docs_figures.render_scale_phases(tmp_path / "doc.md", "scale.json")
    assert "users × items grows with exponent 2.00" in table  # n/10 x n/20: 100x per 10x
    assert "| bpr | fit | 4.0 | 80.0 | 1.30 |" in table
    assert "| bpr | candidates | 2.0 | 100.0 | 1.70 |" in table
    assert "| bpr | rest | 4.0 | 20.0 | 0.70 |" in table
    assert "| bpr | **whole** | 10.0 | 200.0 | 1.30 |" in table


def test_the_loss_bound_in_hits_is_two_percent_of_the_folds_summed_ndcg_over_a_last_place_hit() -> None:
    from benchmarks.docs_figures import _loss_in_hits

    # 2% of 0.1 * 500 users = 1.0 summed ndcg@10; a hit at place 10 is worth 1/log2(11) of it.
    folds = [{"fold": 1, "vs_ranker": {"mean_a": 0.1, "n_users": 500}},
             {"fold": 2, "vs_ranker": {"mean_a": 0.3, "n_users": 1000}}]
    line = _loss_in_hits(folds, "ndcg@10")
    assert "1: 3.5 over 500 users; 2: 20.8 over 1000 users." in line
    assert "1/log2(11)" in line
    assert _loss_in_hits(folds, "recall@10") == ""  # only ndcg's weights are known


def test_the_best_generator_on_cold_items_is_the_same_in_every_run_when_generators_tie() -> None:
    from benchmarks.rerank_report import targets

    def fold(order: list[str]) -> dict:
        scores = {"rerank": {"catalog_coverage@10": 0.2, "ndcg@10": 0.0}, "ranker": {"catalog_coverage@10": 0.1,
                                                                                   "ndcg@10": 0.0}}
        return {"pool_coverage": 0.5, "test": {"all": scores, "cold_items": scores | {
            "n_users": 10, "generators": {name: 0.01 for name in order} | {"popular": 0.0}}}}

    pooled = {"all": {"rel_uplift": -0.01, "rel_ci_low": -0.02, "rel_ci_high": 0.0}}
    # Three generators tie on cold items; whatever order the folds list them in, the first by name wins.
    for order in (["als32", "als", "als128"], ["als128", "als32", "als"]):
        found = targets([fold(order), fold(order[::-1])], pooled, "ndcg@10")
        assert found["cold_items.ndcg@10"]["best_generator"] == "als"
        assert found["coverage@10"]["ratio"] == 2.0 and found["coverage_met"]


def _rerank_result(objective: str, cold_rule: bool, coverage_met: bool, cold_met: bool) -> dict:
    return {"commit": "0" * 40, "primary_metric": "ndcg@10", "experiment": "experiments/x_time.yaml",
            "overrides": ["components.rerank.enabled=true", "components.rerank.coverage_slots=[0,5]"],
            "rule": {"objective": objective, "max_loss": 0.02, "match_content_on_cold_items": cold_rule},
            "targets": {"coverage@10": {"ranker": 0.1, "rerank": 0.21, "ratio": 2.1, "pool_bound": 0.5},
                        "ndcg@10_change": {"rel_uplift": -0.018, "rel_ci_low": -0.03, "rel_ci_high": -0.006},
                        "coverage_met": coverage_met, "cold_items_met": cold_met,
                        "cold_items.ndcg@10": {"rerank": 0.09, "ranker": 0.0, "best": 0.08, "best_generator": "i2i"}}}


def test_the_rerank_summary_judges_each_run_only_on_the_target_its_rule_is_for(tmp_path, monkeypatch) -> None:
    from benchmarks import docs_figures

    results = {"rerank-x_time-cov.json": _rerank_result("catalog_coverage@10", False, True, True),
               "rerank-x_time-cold.json": _rerank_result("ndcg@10", True, False, True)}
    monkeypatch.setattr(docs_figures, "load", results.__getitem__)
    monkeypatch.setattr(docs_figures, "measured_on", lambda name: "0" * 40)
    table = docs_figures.render_rerank_targets(tmp_path / "doc.md", (("rerank-x_time-cov", "here.md", "coverage"),
                                                                     ("rerank-x_time-cold", "here.md", "new")))
    cov, cold = (line for line in table.splitlines() if line.startswith("| `x_time"))
    # The coverage run met coverage; its cold-item figures are shown but not judged (and vice versa).
    assert "(2.10×) | -1.8% (-3.0% … -0.6%) | **yes** | 0.0900 / 0.0800 (i2i) | — (not its rule) |" in cov
    assert "| — (not its rule) | 0.0900 / 0.0800 (i2i) | **yes** |" in cold
    assert "[block](" in cov and "here.md#x_time-cov)" in cov


def test_the_rerank_command_re_makes_the_run_from_its_recorded_overrides(tmp_path, monkeypatch) -> None:
    from benchmarks import docs_figures

    monkeypatch.setattr(docs_figures, "load", lambda name: _rerank_result("catalog_coverage@10", False, True, True))
    monkeypatch.setattr(docs_figures, "measured_on", lambda name: "0" * 40)
    text = docs_figures.render_rerank_command(tmp_path / "doc.md", "rerank-x_time-fill.json")
    assert "sed '/^tuning:/,$d' experiments/x_time.yaml > /tmp/x_time.yaml" in text
    assert "SETS=(--set 'components.rerank.enabled=true' \\\n  --set 'components.rerank.coverage_slots=[0,5]')" in text
    assert 'scripts/pipeline/run.sh -e /tmp/x_time.yaml "${SETS[@]}"' in text
    assert "--shown-as experiments/x_time.yaml" in text and "--suffix=-fill " in text


def test_the_rerank_scale_lists_look_like_music_and_every_setting_runs() -> None:
    from benchmarks.rerank_scale import CONTENT, SETTINGS, measure, synthetic_lists

    lists, side = synthetic_lists(2000, 5000, 50)
    valid = lists.items >= 0
    assert valid.mean() > 0.95
    for row, ok in zip(lists.items, valid, strict=True):  # a list holds an item once
        assert len(np.unique(row[ok])) == ok.sum()
    counts = np.bincount(lists.items[valid], minlength=5000)
    assert counts[:50].sum() > 5 * counts[2500:2550].sum()  # a heavy head, a long tail (Zipf)
    assert (np.diff(lists.scores, axis=1)[valid[:, 1:]] <= 0).all()  # each list ordered by the ranker's score
    heard = int((side.age_days >= 30.0).sum())
    assert (lists.content_items >= heard).all() and lists.content_items.shape[1] == CONTENT  # new releases only
    assert all(len(np.unique(row)) == CONTENT for row in lists.content_items)
    # The grids costed: the lastfm2k_time coverage run's four penalties share their per-user steps
    # across its fills (4 unfilled settings, 4 x 3 x 5 x 4 filled); the default grid is 5 lambdas x
    # 3 boosts x 3 floors, one group per lambda and boost, MMR in the 12 groups with lambda < 1.
    from benchmarks.rerank_scale import RESULTS, grids

    assert grids(RESULTS / "rerank-lastfm2k_time-fill-first-top100-xfit-limit.json") == [
        {"name": "rerank-lastfm2k_time-fill-first-top100-xfit-limit", "settings": 244, "groups": 4,
         "mmr_groups": 0, "fill_settings": 240},
        {"name": "the default grid", "settings": 45, "groups": 15, "mmr_groups": 12, "fill_settings": 0}]
    found = measure(300, 5000, 50)
    assert set(found["per_user_seconds"]) == set(found["across_seconds"]) == set(SETTINGS) and found["n_users"] == 300


def test_the_rerank_scale_table_costs_the_grid_by_its_groups_and_settings(tmp_path, monkeypatch) -> None:
    from benchmarks import docs_figures

    scale = {"commit": "0" * 40, "machine": {"cpus": 2, "memory_gib": 24, "python": "3.11", "cpu_model": "x",
                                             "load_average_at_start": [0.1, 0, 0]},
             "load_average_at_end": [0.2, 0, 0], "embedding_dims": 8,
             "settings": {"unchanged": {}, "mmr": {"mmr_lambda": 0.8}, "fill": {"coverage_slots": 5}},
             "grids": [{"name": "rerank-x", "settings": 40, "groups": 2, "mmr_groups": 0, "fill_settings": 38},
                       {"name": "the default grid", "settings": 9, "groups": 3, "mmr_groups": 2,
                        "fill_settings": 0}],
             "sizes": [{"n_users": 1000, "n_items": 50, "top_k": 100, "peak_rss_mib": 2048.0,
                        "per_user_seconds": {"unchanged": 0.5, "mmr": 30.0, "fill": 0.6},
                        "across_seconds": {"unchanged": 0.1, "mmr": 0.2, "fill": 3.0}}]}
    monkeypatch.setattr(docs_figures, "load", lambda name: scale)
    monkeypatch.setattr(docs_figures, "measured_on", lambda name: "0" * 40)
    table = docs_figures.render_rerank_scale(tmp_path / "doc.md", "scale.json")
    assert ("| users | unchanged: per user + across (s) | mmr: per user + across (s) | fill: per user + across (s) "
            "| `rerank-x`'s grid (min) | the default grid (min) | peak RSS (GiB) |") in table
    # Each priced by its kind: rerank-x (2 x 0.6 s + 38 x 3 s + 2 x 0.2 s) / 60 = 1.93 min; the
    # default grid (2 x 30 s + 1 x 0.6 s + 9 x 0.2 s) / 60 = 1.04 min.
    assert "| 1,000 | 0.50 + 0.10 | 30.00 + 0.20 | 0.60 + 3.00 | 1.9 | 1.0 | 2.0 |" in table


def test_loss_estimate_picks_the_most_coverage_within_the_bound_and_pools_it_as_the_report() -> None:
    from benchmarks.rerank_loss_estimates import picks

    def fold(number: int, users: int, choice: list[float], test: list[tuple[float, float]]) -> dict:
        return {"fold": number, "test": {"all": {"n_users": users}},
                "grid": [{"catalog_coverage@10": 0.1}, *({"catalog_coverage@10": c} for c in choice)],
                "test_grid": [{"ndcg@10": n, "catalog_coverage@10": c} for n, c in test]}

    folds = [fold(1, 100, [0.2, 0.3, 0.4], [(0.10, 0.1), (0.099, 0.2), (0.098, 0.3), (0.09, 0.4)]),
             fold(2, 300, [0.2, 0.3, 0.4], [(0.20, 0.2), (0.199, 0.3), (0.19, 0.5), (0.15, 0.6)])]
    estimates = {"one": [np.array([-0.01, -0.015, -0.05]), np.array([-0.03, -0.04, -0.05])]}
    found = picks(folds, estimates, 0.02)["one"]
    # Fold 1: settings 0 and 1 are within 2%, 1 has more coverage; fold 2: none is, the least loss (0).
    assert [row["setting"] for row in found["folds"]] == [1, 0]
    assert found["folds"][0]["test_coverage_ratio"] == pytest.approx(3.0)
    assert found["folds"][1]["test_change"] == pytest.approx(0.199 / 0.20 - 1)
    assert found["coverage_ratio"] == pytest.approx(((0.3 + 0.3) / 2) / ((0.1 + 0.2) / 2))
    assert found["change"] == pytest.approx((100 * 0.098 + 300 * 0.199) / (100 * 0.10 + 300 * 0.20) - 1)
