"""The ranking stage's candidate merge: the sorted union of the generators' pairs for a set of users."""

from __future__ import annotations

import numpy as np
import pandas as pd

from encore.ranking.stage import merge_candidates


def test_merge_is_the_sorted_union_for_the_users_asked_with_the_lists_dtypes() -> None:
    def frame(users: list[int], items: list[int]) -> pd.DataFrame:
        return pd.DataFrame({"user": np.array(users, dtype=np.int32), "item": np.array(items, dtype=np.int32)})

    als, ease = frame([2, 0, 0, 5], [7, 3, 1, 2]), frame([0, 2, 2, 1], [3, 7, 9, 4])

    merged = merge_candidates({"als": als, "ease": ease}, users=np.array([0, 2]))

    expected = (pd.concat([als, ease]).query("user in [0, 2]").drop_duplicates()
                .sort_values(["user", "item"]).reset_index(drop=True))
    pd.testing.assert_frame_equal(merged, expected)
    assert merged["user"].dtype == np.int32 and merged["item"].dtype == np.int32


def test_merge_of_no_matching_user_is_empty() -> None:
    als = pd.DataFrame({"user": np.array([1], dtype=np.int64), "item": np.array([4], dtype=np.int64)})
    assert merge_candidates({"als": als}, users=np.array([0])).empty
