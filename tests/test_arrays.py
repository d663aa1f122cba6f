"""Grouped-array helpers, against hand-computed values."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from encore.arrays import lookup_pairs, pair_keys, positions_by_key, positions_in_groups, row_sums, segment_starts


def test_segments_and_positions() -> None:
    groups = np.array([3, 3, 5, 7, 7, 7])
    assert segment_starts(groups).tolist() == [0, 2, 3]
    assert positions_in_groups(groups).tolist() == [0, 1, 0, 0, 1, 2]
    assert positions_in_groups(np.array([], dtype=np.int64)).tolist() == []


def test_positions_by_key_keeps_the_original_row_order() -> None:
    groups = np.array([1, 0, 1, 0, 1])
    key = np.array([0.9, 0.5, 0.1, 0.2, 0.5])
    # group 0: rows 3 (0.2), 1 (0.5); group 1: rows 2 (0.1), 4 (0.5), 0 (0.9)
    assert positions_by_key(groups, key).tolist() == [2, 1, 0, 0, 1]


def test_pair_lookup() -> None:
    table = pair_keys(np.array([0, 1, 2]), np.array([4, 0, 3]), n_items=5)
    keys = pair_keys(np.array([1, 2, 0]), np.array([0, 0, 4]), n_items=5)
    out = lookup_pairs(keys, table, np.array([10.0, 20.0, 30.0]))
    assert out[0] == 20.0 and np.isnan(out[1]) and out[2] == 10.0


def test_row_sums_per_csr_row_with_empty_rows() -> None:
    matrix = sp.csr_matrix(np.array([[1, 0, 2], [0, 0, 0], [0, 3, 0], [0, 0, 0]]))
    assert row_sums(matrix, np.array([10, 20, 30])).tolist() == [30, 0, 30, 0]
    assert row_sums(sp.csr_matrix((2, 3)), np.array([], dtype=np.int64)).tolist() == [0, 0]
