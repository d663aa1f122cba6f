"""The exposure cap and the rank placement of new items on hand-made lists, against hand results."""

from __future__ import annotations

import numpy as np

from encore.reranking.spread import (
    ExposureCap,
    RemoveKeys,
    cap_skips,
    full_chain,
    split_at_cap,
    with_ranked_content,
)
from encore.reranking.steps import ExposureFloor, ItemSide, Settings, lists_from_scores, rerank

N_ITEMS = 10
SIDE = ItemSide(age_days=np.full(N_ITEMS, 400.0))

# Four users, each list best first; relevance (scores scaled per user) in brackets:
#   u0: 0 (1), 1 (2/3), 2 (1/3), 3 (0)
#   u1: 0 (1), 1 (0.6), 2 (0.2), 3 (0)
#   u2: 0 (1), 2 (2/3), 1 (1/3), 3 (0)
#   u3: 1 (1), 0 (2/3), 3 (1/3), 2 (0)
ITEMS = np.array([[0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 1, 3], [1, 0, 3, 2]])
SCORES = np.array([[4, 3, 2, 1], [4, 3, 2, 1.5], [5, 4, 3, 2], [4, 3, 2, 1.0]])


def lists():
    return lists_from_scores(np.arange(4), ITEMS, SCORES)


def test_the_cap_fills_place_by_place_in_relevance_order() -> None:
    # Cap: ceil(0.5 * 4) = 2 lists' top 2 per item; where an item is short of room, the users who
    # lose most by a refusal (relevance minus their next candidate's) get it, ties to the lower index.
    # Place 1: u0 (loss 1/3), u1 (0.4), u2 (1/3) want item 0 -> u1, u0 get it; u2 is refused and
    # takes 2; u3 takes 1. Place 2: item 1 has room for one of u0 (1/3), u1 (0.4), u2 (1/3) -> u1;
    # u3 wants 0 (full) and takes 3; then u0 takes 2 (its last room) and u2 takes 3.
    skipped = cap_skips(lists(), 0.5, 2)
    np.testing.assert_array_equal(skipped, [[0, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 1, 0, 0]])
    capped = ExposureCap(0.5, 2)(lists(), SIDE)
    np.testing.assert_array_equal(capped.items, [[0, 2, 3, -1], [0, 1, 2, 3], [2, 3, -1, -1], [1, 3, 2, -1]])
    top2 = capped.items[:, :2]
    assert max(np.sum(top2 == item) for item in range(4)) <= 2
    # Without the cap, item 0 is in all 4 top-2 lists.
    assert np.sum(lists().items[:, :2] == 0) == 4


def test_a_share_of_one_switches_the_cap_off() -> None:
    assert not cap_skips(lists(), 1.0, 2).any()
    assert ExposureCap(1.0, 2)(lists(), SIDE) is not None
    np.testing.assert_array_equal(ExposureCap(1.0, 2)(lists(), SIDE).items, ITEMS)


def test_removing_the_refused_keys_per_user_gives_the_capped_lists() -> None:
    # The service's form: one user at a time, the component's refusals removed.
    batch = lists()
    skipped = cap_skips(batch, 0.5, 2)
    keys = np.sort(batch.users[np.nonzero(skipped)[0]] * N_ITEMS + batch.items[skipped])
    capped = ExposureCap(0.5, 2)(batch, SIDE)
    for user in range(4):
        one = lists_from_scores(np.array([user]), ITEMS[user:user + 1], SCORES[user:user + 1])
        np.testing.assert_array_equal(RemoveKeys(keys, N_ITEMS)(one, SIDE).items[0], capped.items[user])


def test_the_chain_puts_the_cap_before_the_floor() -> None:
    settings = Settings(top_k=4, exposure_cap=0.5, exposure_k=2, exposure_m=1)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    per_user, across = split_at_cap(steps)
    assert isinstance(across[0], ExposureCap) and isinstance(across[1], ExposureFloor)
    assert not any(isinstance(step, ExposureCap) for step in per_user)
    items = rerank(lists(), SIDE, steps, 4)[0]
    np.testing.assert_array_equal(items[0], [0, 2, 3, -1])


def test_new_items_are_placed_at_the_content_generators_rank() -> None:
    # u0's ranker list 0, 1, 2, 3; content proposes new item 7 at the generator's rank 2 and new
    # item 8 at rank 5 (beyond content_max_rank 3: stays below every ranker candidate).
    one = lists_from_scores(np.array([0]), ITEMS[:1], SCORES[:1])
    settings = Settings(top_k=6, content_max_rank=3)
    placed = with_ranked_content(one, np.array([[7, 8]]), np.array([[0.9, 0.5]]), np.array([[2, 5]]), settings)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    np.testing.assert_array_equal(rerank(placed, SIDE, steps, 6)[0][0], [0, 7, 1, 2, 3, 8])
    # content_max_rank 0: both new items below the ranker's candidates.
    off = with_ranked_content(one, np.array([[7, 8]]), np.array([[0.9, 0.5]]), np.array([[2, 5]]), Settings(top_k=6))
    np.testing.assert_array_equal(rerank(off, SIDE, steps, 6)[0][0], [0, 1, 2, 3, 7, 8])


def test_the_grid_has_the_caps_and_content_ranks_and_bad_values_name_the_key() -> None:
    import pytest

    from encore.config.experiment import REPO_ROOT, ConfigError, load_config
    from encore.config.machine import MachineSettings

    no_env = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)
    experiment = REPO_ROOT / "experiments/lastfm2k.yaml"
    config = load_config(experiment, ["components.rerank.exposure_caps=[1.0,0.05]",
                                      "components.rerank.content_max_ranks=[0,10]"], settings=no_env)
    grid = config.components.rerank.grid(50)
    assert {(s.exposure_cap, s.content_max_rank) for s in grid} >= {(1.0, 0), (0.05, 0), (1.0, 10), (0.05, 10)}
    # At their defaults the new keys stay out of the resolved config (fingerprints unchanged).
    dumped = load_config(experiment, settings=no_env).components.rerank.model_dump(mode="json")
    assert "exposure_caps" not in dumped and "content_max_ranks" not in dumped
    with pytest.raises(ConfigError) as info:
        load_config(experiment, ["components.rerank.exposure_caps=[0.0]"], settings=no_env)
    assert "components.rerank.exposure_caps" in str(info.value)


def test_new_items_at_consecutive_ranks_and_in_the_rankers_list_land_at_their_ranks() -> None:
    # u0's ranker list 0, 1, 2, 3 has new item 3 last (the merged pool gave it to the ranker);
    # content ranks new items 3 and 7 at 1 and 2: they lead, in that order; the rest keeps its order.
    one = lists_from_scores(np.array([0]), ITEMS[:1], SCORES[:1])
    settings = Settings(top_k=6, content_max_rank=3)
    placed = with_ranked_content(one, np.array([[3, 7]]), np.array([[0.9, 0.5]]), np.array([[1, 2]]), settings)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    np.testing.assert_array_equal(rerank(placed, SIDE, steps, 6)[0][0], [3, 7, 0, 1, 2, -1])


def test_a_first_place_keeps_the_rankers_best_on_top_and_the_new_items_in_rank_order() -> None:
    # Content ranks new items 7, 8, 9 at 1, 2 and 5. With content_min_rank 3 the first placed
    # lands at max(1, 3) = 3, the second at max(2, 4) = 4, the third at max(5, 5) = 5; the
    # ranker's 0 and 1 keep places 1 and 2.
    one = lists_from_scores(np.array([0]), ITEMS[:1], SCORES[:1])
    settings = Settings(top_k=7, content_max_rank=5, content_min_rank=3)
    placed = with_ranked_content(one, np.array([[7, 8, 9]]), np.array([[0.9, 0.8, 0.5]]), np.array([[1, 2, 5]]),
                                 settings)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    np.testing.assert_array_equal(rerank(placed, SIDE, steps, 7)[0][0], [0, 1, 7, 8, 9, 2, 3])
    # A late rank is kept: item 9 alone (rank 5) with content_min_rank 3 stays at 5.
    alone = with_ranked_content(one, np.array([[9]]), np.array([[0.5]]), np.array([[5]]), settings)
    np.testing.assert_array_equal(rerank(alone, SIDE, steps, 7)[0][0], [0, 1, 2, 3, 9, -1, -1])
