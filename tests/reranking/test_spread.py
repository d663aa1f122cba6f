"""The exposure cap and the rank placement of new items on hand-made lists, against hand results."""

from __future__ import annotations

import numpy as np
import pytest

from encore.reranking.spread import (
    CoverageFill,
    ExposureCap,
    PromoteKeys,
    RemoveKeys,
    cap_skips,
    fill_cells,
    full_chain,
    promote_cells,
    served_keys,
    split_at_cap,
    with_ranked_content,
)
from encore.reranking.steps import (
    EXCLUDED,
    ExposureFloor,
    ItemSide,
    Lists,
    Settings,
    lists_from_scores,
    rerank,
    settings_grid,
)

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


def test_the_chain_puts_the_cap_before_the_floor_and_the_fill_after_it() -> None:
    settings = Settings(top_k=4, exposure_cap=0.5, exposure_k=2, exposure_m=1)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    per_user, across = split_at_cap(steps)
    assert [type(step) for step in across] == [ExposureCap, ExposureFloor, CoverageFill]
    assert not any(isinstance(step, ExposureCap) for step in per_user)
    items = rerank(lists(), SIDE, steps, 4)[0]
    np.testing.assert_array_equal(items[0], [0, 2, 3, -1])


FILL_SCORES = np.array([[4, 3, 2, 1], [4, 3, 2.8, 1], [4, 2.5, 1, 0.5]])


def fill_lists():
    # Three users with the same four candidates, relevance (scaled per user) in brackets:
    #   u0: 0 (1), 1 (2/3), 5 (1/3), 6 (0)
    #   u1: 0 (1), 1 (2/3), 5 (0.6), 6 (0)
    #   u2: 0 (1), 1 (4/7), 5 (1/7), 6 (0)
    return lists_from_scores(np.arange(3), np.array([[0, 1, 5, 6]] * 3), FILL_SCORES)


def test_the_fill_gives_uncovered_items_to_the_lists_that_lose_least() -> None:
    # Top 2 of every list: 0, 1; items 5 and 6 are in nobody's. One slot (place 2): item 1 must
    # stay in one top 2, so 2 of its 3 holders may give it away, those who rate it lowest: u2
    # (4/7), u0 (2/3; ties u1 at the lower index). Both want 5: u0 loses 2/3 - 1/3 = 1/3, u2
    # 4/7 - 1/7 = 3/7 -> u0 gets 5; u2 takes its next uncovered candidate, 6. u1 keeps its list.
    batch = fill_lists()
    cells = fill_cells(batch, 1, 2)
    np.testing.assert_array_equal(cells, [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 1]])
    filled = CoverageFill(1, 2)(batch, SIDE)
    np.testing.assert_array_equal(filled.items, [[0, 5, 1, 6], [0, 1, 5, 6], [0, 6, 1, 5]])
    assert set(filled.items[:, :2].ravel()) == {0, 1, 5, 6}  # coverage@2: 2 -> 4 items
    # Off at 0 slots; one user alone has nobody to leave its items to.
    np.testing.assert_array_equal(CoverageFill(0, 2)(batch, SIDE).items, batch.items)
    one = lists_from_scores(np.array([0]), batch.items[:1], np.array([[4, 3, 2, 1.0]]))
    assert not fill_cells(one, 1, 2).any()


def test_by_chance_the_fill_takes_the_place_where_the_ranker_expects_fewest_hits_lost() -> None:
    # Both lists hold items 0, 1 in their top 2; item 1 may leave one of them for item 2, in nobody's.
    # Scaled per user, u0 loses less (0.5 - 0.4 against 0.9 - 0); by the ranker's probabilities u1
    # does (0.04 - 0.03 against 0.5 - 0.01): a confident list's last place is worth more than a
    # doubtful list's, which per-user scaling hides (every list's best item is at 1).
    items = np.array([[0, 1, 2], [0, 1, 2]])
    chance = np.array([[0.9, 0.5, 0.01], [0.05, 0.04, 0.03]])
    batch = Lists(np.array([0, 1]), items, np.array([[1.0, 0.5, 0.4], [1.0, 0.9, 0.0]]), chance)
    np.testing.assert_array_equal(fill_cells(batch, 1, 2), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(fill_cells(batch, 1, 2, cost=chance), [[0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(CoverageFill(1, 2, cost="chance")(batch, SIDE).items, [[0, 1, 2], [0, 2, 1]])
    # An item the ranker did not score (nan: a fallback list's, a completion) counts as probability
    # 0: u0's item 1 unscored, u0 gives its place away at a loss of 0 - 0.01 (u1: 0.01).
    unscored = chance.copy()
    unscored[0, 1] = np.nan
    np.testing.assert_array_equal(fill_cells(batch, 1, 2, cost=unscored), [[0, 0, 1], [0, 0, 0]])
    # The fill reads the probabilities the batch carries; without them it says so.
    with pytest.raises(ValueError, match="no ranker probabilities"):
        CoverageFill(1, 2, cost="chance")(Lists(batch.users, items, batch.relevance), SIDE)


def test_a_row_that_took_its_last_candidate_stops_filling() -> None:
    # u0 gives item 1 away (u1 keeps it) for item 2, its last candidate; in the next round it
    # could give item 0 away too, but has nothing left to take: it stops (it once read past its row).
    items = np.array([[0, 1, 2], [0, 1, -1]])
    batch = Lists(np.array([0, 1]), items, np.array([[1.0, 0.5, 0.4], [1.0, 0.9, EXCLUDED]]))
    np.testing.assert_array_equal(fill_cells(batch, 2, 2), [[0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(CoverageFill(2, 2)(batch, SIDE).items, [[0, 2, 1], [0, 1, -1]])


def test_a_cost_limit_spends_the_fill_only_where_a_place_is_cheap() -> None:
    # Item 1 is in all three top 2s: two holders may give it away, those the ranker gives it the
    # lowest probability (u1 0.04, u2 0.1); u0 keeps it. u1's place costs 0.04 - 0.03 = 0.01 (item
    # 5), u2's 0.1 - 0.02 = 0.08 (item 6). Without a limit both fill; at 0.05 only u1 does.
    items = np.array([[0, 1, 5, 6], [0, 1, 5, 6], [0, 1, 6, 5]])
    chance = np.array([[0.9, 0.5, 0.1, 0.05], [0.05, 0.04, 0.03, 0.02], [0.2, 0.1, 0.02, 0.01]])
    batch = Lists(np.arange(3), items, chance, chance)
    np.testing.assert_array_equal(fill_cells(batch, 1, 2, cost=chance), [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 1, 0]])
    np.testing.assert_array_equal(fill_cells(batch, 1, 2, cost=chance, max_cost=0.05),
                                  [[0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]])
    limited = CoverageFill(1, 2, cost="chance", max_cost=0.05)(batch, SIDE).items
    np.testing.assert_array_equal(limited, [[0, 1, 5, 6], [0, 5, 1, 6], [0, 1, 6, 5]])
    # The chain builds the limit from the setting.
    settings = Settings(top_k=4, exposure_k=2, coverage_slots=1, coverage_cost="chance", coverage_max_cost=0.05)
    fill = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                      n_items=N_ITEMS)[-1]
    assert isinstance(fill, CoverageFill) and fill.max_cost == 0.05 and fill.cost == "chance"


def test_the_steps_carry_the_rankers_probabilities_with_their_items() -> None:
    # The cap removes item 1 from u1's top 2 and the fill moves items up: each probability stays
    # with its item, whatever a step does to the order.
    chance = SCORES / 10
    batch = lists_from_scores(np.arange(4), ITEMS, SCORES, chance)
    before = {(u, i): c for u, row in enumerate(ITEMS) for i, c in zip(row, chance[u], strict=True)}
    settings = Settings(top_k=4, exposure_cap=0.5, exposure_k=2, coverage_slots=1, coverage_cost="chance")
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    for step in steps:
        batch = step(batch, SIDE)
    assert batch.chance is not None
    for u, row in enumerate(batch.items):
        assert all(batch.chance[u, j] == before[(u, i)] for j, i in enumerate(row) if i >= 0)


def test_with_two_copies_the_fill_puts_an_item_in_two_lists() -> None:
    # Five lists 0, 1, 5, 6; item 1's relevance (u0..u4): 2/3, 2/3, 4/7, 5/6, 1/3. Item 1 must stay
    # in 2 top 2s: 3 of its 5 holders may give it away, those who rate it lowest: u4, u2, u0. All
    # want 5, which lacks 2 lists: the two that lose least get it, u4 (1/3 - 1/6) and u0 (2/3 - 1/3);
    # u2 (4/7 - 1/7) takes 6.
    scores = np.array([[4, 3, 2, 1], [4, 3, 2.8, 1], [4, 2.5, 1, 0.5], [4, 3.5, 3, 1], [4, 2, 1.5, 1.0]])
    batch = lists_from_scores(np.arange(5), np.array([[0, 1, 5, 6]] * 5), scores)
    filled = CoverageFill(1, 2, copies=2)(batch, SIDE)
    np.testing.assert_array_equal(filled.items, [[0, 5, 1, 6], [0, 1, 5, 6], [0, 6, 1, 5], [0, 1, 5, 6], [0, 5, 1, 6]])
    # One copy: 4 holders may give item 1 away (u1 too); 5 goes to the cheapest, u1 (2/3 - 0.6),
    # and 6 to the cheapest of the rest, u4 (1/3 - 0).
    one = CoverageFill(1, 2)(batch, SIDE).items
    assert (one[:, :2] == 5).sum() == 1 and (one[:, :2] == 6).sum() == 1 and one[1, 1] == 5 and one[4, 1] == 6


def test_the_fill_counts_and_fills_only_the_active_users_lists() -> None:
    # u1 idle: its top 2 covers nothing and gets nothing. Item 1 is in 2 active top 2s, so one of
    # u0 (2/3) and u2 (4/7) may give it away: u2, which rates it lower; it takes 5.
    batch = fill_lists()
    filled = CoverageFill(1, 2, active_users=np.array([0, 2]))(batch, SIDE)
    np.testing.assert_array_equal(filled.items, [[0, 1, 5, 6], [0, 1, 5, 6], [0, 5, 1, 6]])
    settings = Settings(top_k=4, exposure_k=2, coverage_slots=1, coverage_active_days=30.0)
    promoted = served_keys(batch, SIDE, settings, N_ITEMS, np.array([0, 2]))[1]
    np.testing.assert_array_equal(promoted, [2 * N_ITEMS + 5])


def test_active_first_fills_the_active_users_lists_first_then_the_others() -> None:
    # First pass as above: u2 takes 5. Then idle u1, with every top 2 counting (0: 3 lists, 1: 2,
    # 5: 1, 6: none): item 1 is in two lists, so u1 may give it away, and takes its best-placed
    # candidate in nobody's top 2: 6 (5 is u2's now). Coverage@2: all four items, not three.
    batch = fill_lists()
    filled = CoverageFill(1, 2, active_users=np.array([0, 2]), active_first=True)(batch, SIDE)
    np.testing.assert_array_equal(filled.items, [[0, 1, 5, 6], [0, 6, 1, 5], [0, 5, 1, 6]])
    settings = Settings(top_k=4, exposure_k=2, coverage_slots=1, coverage_active_days=30.0,
                        coverage_active_first=True)
    promoted = served_keys(batch, SIDE, settings, N_ITEMS, np.array([0, 2]))[1]
    np.testing.assert_array_equal(promoted, [1 * N_ITEMS + 6, 2 * N_ITEMS + 5])
    replayed = PromoteKeys(promoted, N_ITEMS, 2, 1)(batch, SIDE)
    np.testing.assert_array_equal(replayed.items, filled.items)
    # Without an activity limit there is nobody to go first: the plain fill.
    np.testing.assert_array_equal(CoverageFill(1, 2, active_first=True)(batch, SIDE).items,
                                  CoverageFill(1, 2)(batch, SIDE).items)


def test_the_fill_works_up_from_the_bottom_place_by_place() -> None:
    # Two users, top 3 both 0, 1, 2. Two slots. Place 3: each of 2's two holders rates it 1/2
    # (tie: u0 first); one may give it away: u0, which takes 5. Place 2: u0's item 1 is also held
    # by u1, so u0 gives it for 6; u1 stopped at place 3 (2 had to stay). u0: 0, 5, 6, then 1, 2.
    batch = lists_from_scores(np.arange(2), np.array([[0, 1, 2, 5, 6], [0, 1, 2, 7, 8]]),
                              np.array([[5, 4, 3, 2, 1], [5, 4, 3, 2, 1.0]]))
    np.testing.assert_array_equal(CoverageFill(2, 3)(batch, SIDE).items, [[0, 5, 6, 1, 2], [0, 1, 2, 7, 8]])
    # One slot: only place 3.
    np.testing.assert_array_equal(CoverageFill(1, 3)(batch, SIDE).items, [[0, 1, 5, 2, 6], [0, 1, 2, 7, 8]])


def test_the_fill_leaves_the_floors_new_items_in_place() -> None:
    # u0..u2 as above, item 1 new (age 0). With the floor on (m 1), item 1 keeps place 2 in every
    # list: nothing else is in the last slot, so the fill does nothing; without the floor it fills.
    side = ItemSide(age_days=np.where(np.arange(N_ITEMS) == 1, 0.0, 400.0))
    settings = Settings(top_k=4, exposure_k=2, coverage_slots=1, exposure_m=1)
    steps = full_chain(settings, blocked=np.zeros(0, dtype=np.int64), rejected=np.zeros(0, dtype=np.int64),
                       n_items=N_ITEMS)
    np.testing.assert_array_equal(rerank(fill_lists(), side, steps, 4)[0], fill_lists().items)
    assert len(served_keys(fill_lists(), side, settings, N_ITEMS)[1]) == 0
    off = full_chain(Settings(top_k=4, exposure_k=2, coverage_slots=1), blocked=np.zeros(0, dtype=np.int64),
                     rejected=np.zeros(0, dtype=np.int64), n_items=N_ITEMS)
    np.testing.assert_array_equal(rerank(fill_lists(), side, off, 4)[0], [[0, 5, 1, 6], [0, 1, 5, 6], [0, 6, 1, 5]])


def test_promoting_the_fills_keys_per_user_gives_the_filled_lists() -> None:
    # The service's form: one user at a time, the component's promotions moved up.
    batch = fill_lists()
    settings = Settings(top_k=4, exposure_k=2, coverage_slots=1)
    capped, promoted = served_keys(batch, SIDE, settings, N_ITEMS)
    assert len(capped) == 0 and len(promoted) == 2
    filled = CoverageFill(1, 2)(batch, SIDE)
    for user in range(3):
        one = lists_from_scores(np.array([user]), batch.items[user:user + 1], FILL_SCORES[user:user + 1])
        np.testing.assert_array_equal(PromoteKeys(promoted, N_ITEMS, 2, 1)(one, SIDE).items[0], filled.items[user])


def test_the_fill_and_the_cut_work_in_blocks_of_rows_as_in_one() -> None:
    # promote_cells and rerank work block_rows rows at a time (bounded memory): blocks of 2 and 3
    # rows, with a last short block, give what one block gives, chance and all.
    rng = np.random.default_rng(3)
    items = np.argsort(rng.random((7, 12)), axis=1)[:, :8]
    scores = np.sort(rng.random((7, 8)), axis=1)[:, ::-1]
    batch = lists_from_scores(np.arange(7), items, scores, chance=scores / 2)
    side = ItemSide(age_days=np.full(12, 400.0))
    fill = CoverageFill(3, 4, cost="chance")
    cells, movable = fill.cells(batch, side), fill.movable(batch, side)
    whole = promote_cells(batch, cells, 4, movable)
    blocks = promote_cells(batch, cells, 4, movable, block_rows=2)
    assert not np.array_equal(whole.items, batch.items)  # the fill moved something
    for name in ("items", "relevance", "chance"):
        np.testing.assert_array_equal(getattr(blocks, name), getattr(whole, name))
    for one, other in zip(rerank(batch, side, [fill], 6, block_rows=3), rerank(batch, side, [fill], 6), strict=True):
        np.testing.assert_array_equal(one, other)
    np.testing.assert_array_equal(rerank(batch, side, [fill], 10)[0][:, 8:], -1)  # longer than the lists: padded


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
    from encore.config.experiment import REPO_ROOT, ConfigError, load_config
    from encore.config.machine import MachineSettings

    no_env = MachineSettings(_env_file=None, mlflow_tracking_uri=None, encore_data_dir=None, encore_output_dir=None)
    experiment = REPO_ROOT / "experiments/lastfm2k.yaml"
    config = load_config(experiment, ["components.rerank.exposure_caps=[1.0,0.05]",
                                      "components.rerank.content_max_ranks=[0,10]"], settings=no_env)
    grid = settings_grid(config.components.rerank, 50)
    assert {(s.exposure_cap, s.content_max_rank) for s in grid} >= {(1.0, 0), (0.05, 0), (1.0, 10), (0.05, 10)}
    # At their defaults the new keys stay out of the resolved config (fingerprints unchanged).
    dumped = load_config(experiment, settings=no_env).components.rerank.model_dump(mode="json")
    assert "exposure_caps" not in dumped and "content_max_ranks" not in dumped
    assert "coverage_active_first" not in dumped and "choice_window_days" not in dumped
    # Filling the active users first needs an activity limit: no such setting without one.
    fill = load_config(experiment, ["components.rerank.coverage_slots=[3]",
                                    "components.rerank.coverage_active_days=[null,30]",
                                    "components.rerank.coverage_active_first=[false,true]"], settings=no_env)
    assert {(s.coverage_active_days, s.coverage_active_first) for s in settings_grid(fill.components.rerank, 50)} \
        == {(None, False), (30.0, False), (30.0, True)}
    # Without a fill, the fill's own settings change nothing: each unfilled setting is in the grid
    # once, with the fill's neutral values, whatever the grid lists -- also when it lists no
    # neutral cost (the popularity penalty alone stays a choice).
    only_chance = load_config(experiment, ["components.rerank.lambdas=[1.0]",
                                           "components.rerank.freshness_boosts=[0.0]",
                                           "components.rerank.exposure_ms=[0]",
                                           "components.rerank.popularity_penalties=[0.0,0.25]",
                                           "components.rerank.coverage_slots=[0,3]",
                                           "components.rerank.coverage_active_days=[null,30]",
                                           "components.rerank.coverage_costs=[chance]",
                                           "components.rerank.coverage_max_costs=[null,0.05]"], settings=no_env)
    grid = settings_grid(only_chance.components.rerank, 50)
    unfilled = [s for s in grid if s.coverage_slots == 0]
    assert [s.popularity_penalty for s in unfilled] == [0.0, 0.25]
    assert {(s.coverage_active_days, s.coverage_cost, s.coverage_max_cost) for s in unfilled} \
        == {(None, "relevance", None)}
    assert grid[0] == Settings(top_k=50, exposure_k=grid[0].exposure_k, new_days=grid[0].new_days,
                               freshness_half_life_days=grid[0].freshness_half_life_days,
                               cap_per_attribute=grid[0].cap_per_attribute)  # the neutral one first
    assert len(grid) == len(set(grid)) == 2 + 2 * 2 * 1 * 2  # unfilled; penalty x active x cost x limit
    with pytest.raises(ConfigError) as info:
        load_config(experiment, ["components.rerank.exposure_caps=[0.0]"], settings=no_env)
    assert "components.rerank.exposure_caps" in str(info.value)
    # Weighing the fill's places by chance is a grid choice beside relevance, only where there is a fill.
    costs = load_config(experiment, ["components.rerank.coverage_slots=[0,3]",
                                     "components.rerank.coverage_costs=[relevance,chance]"], settings=no_env)
    assert {(s.coverage_slots, s.coverage_cost) for s in settings_grid(costs.components.rerank, 50)} \
        == {(0, "relevance"), (3, "relevance"), (3, "chance")}
    assert settings_grid(costs.components.rerank, 50)[0].coverage_cost == "relevance"  # the neutral one first
    assert "coverage_costs" not in dumped and "coverage_max_costs" not in dumped
    limits = load_config(experiment, ["components.rerank.coverage_slots=[0,3]",
                                      "components.rerank.coverage_max_costs=[null,0.01]"], settings=no_env)
    assert {(s.coverage_slots, s.coverage_max_cost) for s in settings_grid(limits.components.rerank, 50)} \
        == {(0, None), (3, None), (3, 0.01)}
    # Chance needs the ranker's probabilities: a ranking loss has none.
    with pytest.raises(ConfigError) as info:
        load_config(experiment, ["components.rerank.coverage_costs=[relevance,chance]",
                                 "components.ranker.loss=YetiRank"], settings=no_env)
    assert "rerank.coverage_costs" in str(info.value) and "Logloss" in str(info.value)
    # A value a setting cannot act on takes the neutral one: MMR without item vectors, the new
    # items' weight and rank without new items, a first place without a rank placement.
    idle = load_config(experiment, ["components.rerank.embeddings_from=null",
                                    "components.rerank.content_max_ranks=[0,10]",
                                    "components.rerank.content_min_ranks=[1,3]"], settings=no_env)
    grid = settings_grid(idle.components.rerank, 50)
    assert {s.mmr_lambda for s in grid} == {1.0}
    assert {(s.content_max_rank, s.content_min_rank) for s in grid} == {(0, 1), (10, 1), (10, 3)}
    no_new = load_config(experiment, ["components.rerank.content_candidates=0",
                                      "components.rerank.content_weights=[0.0,0.5]",
                                      "components.rerank.content_max_ranks=[0,10]"], settings=no_env)
    assert {(s.content_weight, s.content_max_rank) for s in settings_grid(no_new.components.rerank, 50)} == {(0.0, 0)}


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
