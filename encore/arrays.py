"""Vectorised building blocks for (user, item) pairs and grouped rows, shared by splits,
features and the ranker. Groups are runs of equal values; nothing here loops per group."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def pair_keys(users: np.ndarray, items: np.ndarray, n_items: int) -> np.ndarray:
    """One int64 key per (user, item) pair: ``user * n_items + item``."""
    return users.astype(np.int64) * n_items + items.astype(np.int64)


def lookup_pairs(keys: np.ndarray, table_keys: np.ndarray, values: np.ndarray, fill: float = np.nan) -> np.ndarray:
    """Values of ``table_keys`` at ``keys`` (``fill`` where absent); vectorised join."""
    order = np.argsort(table_keys, kind="stable")
    sorted_keys = table_keys[order]
    pos = np.clip(np.searchsorted(sorted_keys, keys), 0, max(len(sorted_keys) - 1, 0))
    found = (sorted_keys[pos] == keys) if len(sorted_keys) else np.zeros(len(keys), bool)
    out = np.full(len(keys), fill, dtype=np.float64)
    out[found] = values[order][pos[found]]
    return out


def row_sums(matrix: sp.csr_matrix, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` (one per stored entry of the CSR ``matrix``) over each row; 0 for empty rows."""
    sums = np.add.reduceat(np.r_[values, 0], np.minimum(matrix.indptr[:-1], len(values)))
    sums[np.diff(matrix.indptr) == 0] = 0
    return sums


def segment_starts(groups: np.ndarray) -> np.ndarray:
    """Start offsets of the runs of equal values in a grouped (e.g. sorted) array."""
    if len(groups) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, groups[1:] != groups[:-1]])


def positions_in_groups(groups: np.ndarray) -> np.ndarray:
    """0-based position of every element within its run, for a grouped ``groups`` array."""
    starts = segment_starts(groups)
    return np.arange(len(groups)) - np.repeat(starts, np.diff(np.r_[starts, len(groups)]))


def positions_by_key(groups: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Position of every row within its group once each group is ordered by ``key``
    (ascending), returned in the original row order; ``groups`` need not be sorted."""
    order = np.lexsort((key, groups))
    position = np.empty(len(groups), dtype=np.int64)
    position[order] = positions_in_groups(groups[order])
    return position


def hashed_uniform(keys: np.ndarray, seed: int) -> np.ndarray:
    """A uniform [0, 1) number per int64 key, fixed by (key, seed) alone (splitmix64).

    Sampling with these instead of a random stream gives the same sample however the rows
    are batched or ordered.
    """
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) + np.uint64(seed % 2**63) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)
