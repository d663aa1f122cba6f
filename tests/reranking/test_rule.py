"""The rule that picks a setting of the trade-off grid, on hand-made grids."""

from __future__ import annotations

import pandas as pd
import pytest

from encore.reranking.rule import choose

GRID = pd.DataFrame({
    "setting": ["ranker", "rerank", "rerank", "rerank", "rerank", "content"],
    "ndcg@10": [0.300, 0.299, 0.295, 0.293, 0.250, 0.200],
    "catalog_coverage@10": [0.10, 0.12, 0.30, 0.25, 0.60, 0.40],
    "new_item_exposure@10": [0.00, 0.10, 0.00, 0.20, 0.30, 0.50],
    "cold_items.ndcg@10": [0.00, 0.05, 0.00, 0.08, 0.10, 0.07],
})


def test_highest_objective_within_the_loss() -> None:
    # 2% of 0.300: the floor is 0.294; setting 4 (0.293) and 5 are out, 3 has the most coverage.
    choice = choose(GRID, primary="ndcg@10", objectives=["catalog_coverage@10"], max_loss=0.02)
    assert choice.chosen == 2 and list(choice.within) == [1, 2] and choice.cold_matched is None
    # A looser bound lets the most covering setting in; the content row is never a candidate.
    assert choose(GRID, primary="ndcg@10", objectives=["catalog_coverage@10"], max_loss=0.2).chosen == 4


def test_objectives_are_summed_min_max_scaled() -> None:
    # Scaled over the ranker and settings 1-4 (not the content row): coverage (v - 0.1) / 0.5,
    # exposure v / 0.3. Within 3% (>= 0.291): 1: 0.04 + 0.333, 2: 0.4 + 0, 3: 0.3 + 0.667 -> 3.
    choice = choose(GRID, primary="ndcg@10", objectives=["catalog_coverage@10", "new_item_exposure@10"],
                    max_loss=0.03)
    assert choice.chosen == 3
    assert choice.score.loc[3] == pytest.approx(0.3 + 2 / 3)


def test_the_cold_item_bound_and_its_fallback() -> None:
    # Within 3%, only setting 3 reaches the content generator's 0.07 on cold items.
    choice = choose(GRID, primary="ndcg@10", objectives=["catalog_coverage@10"], max_loss=0.03,
                    cold_column="cold_items.ndcg@10", cold_reference=0.07)
    assert choice.chosen == 3 and choice.cold_matched is True
    # None within 2% does: the loss bound wins, the cold-item ask is dropped (and said so).
    choice = choose(GRID, primary="ndcg@10", objectives=["catalog_coverage@10"], max_loss=0.02,
                    cold_column="cold_items.ndcg@10", cold_reference=0.07)
    assert choice.chosen == 2 and choice.cold_matched is False


def test_nothing_within_the_loss_takes_the_most_accurate_setting() -> None:
    choice = choose(GRID.assign(**{"ndcg@10": [0.3, 0.2, 0.25, 0.1, 0.1, 0.3]}), primary="ndcg@10",
                    objectives=["catalog_coverage@10"], max_loss=0.02)
    assert choice.chosen == 2 and not len(choice.within)


def test_accuracy_as_the_objective_takes_the_most_accurate_setting_that_matches_content_on_cold_items() -> None:
    from encore.reranking.config import RerankConfig

    objectives = RerankConfig(objective="accuracy").objectives("ndcg@10")
    assert objectives == ["ndcg@10"]
    # Within 20% (>= 0.24) settings 3 (0.08) and 4 (0.10) reach the content row's 0.07 on cold
    # items; the most accurate of them is 3 (0.293), not the one with the most cold-item NDCG.
    choice = choose(GRID, primary="ndcg@10", objectives=objectives, max_loss=0.2,
                    cold_column="cold_items.ndcg@10", cold_reference=0.07)
    assert choice.chosen == 3 and list(choice.within) == [3, 4]
    # Without the bound it is the most accurate setting of all (1).
    assert choose(GRID, primary="ndcg@10", objectives=objectives, max_loss=0.2).chosen == 1
