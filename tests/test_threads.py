"""The ordered, bounded thread map the neighbour search and the ranking loop run on."""

from __future__ import annotations

import threading
import time

import pytest

from encore.threads import available_cores, map_in_order


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_results_come_in_the_items_order_whatever_finishes_first(threads: int) -> None:
    def slow_for_small(x: int) -> int:
        time.sleep(0.002 * (10 - x % 10))  # early items finish last
        return x * x

    assert list(map_in_order(slow_for_small, range(25), threads)) == [x * x for x in range(25)]


def test_work_in_flight_is_bounded_by_the_thread_count() -> None:
    """However many items there are, at most `threads` run ahead of the result the caller holds."""
    lock, started, taken, ahead = threading.Lock(), [0], [0], []

    def work(x: int) -> int:
        with lock:
            started[0] += 1
            ahead.append(started[0] - taken[0])
        return x

    for _ in map_in_order(work, range(200), 2):
        time.sleep(0.001)  # a slow consumer: an unbounded map would start every item meanwhile
        with lock:
            taken[0] += 1
    assert started[0] == 200
    assert max(ahead) <= 3  # the one the caller holds plus two computed ahead


def test_a_workers_exception_is_raised_at_its_item() -> None:
    def fails_at_five(x: int) -> int:
        if x == 5:
            raise ValueError("item 5")
        return x

    got = []
    with pytest.raises(ValueError, match="item 5"):
        for value in map_in_order(fails_at_five, range(10), 2):
            got.append(value)
    assert got == [0, 1, 2, 3, 4]


def test_zero_threads_means_every_core_of_the_process() -> None:
    assert available_cores() >= 1
    assert list(map_in_order(str, range(3), 0)) == ["0", "1", "2"]
