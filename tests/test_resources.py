"""Peak memory per block (the runner's ``peak_rss_mib``) and the process peak across resets."""

from __future__ import annotations

import numpy as np

from encore.resources import measure_peak, process_peak_bytes

MIB = 2**20


def test_a_block_reports_its_own_peak_and_the_process_keeps_the_larger_one() -> None:
    big = np.ones(400 * MIB // 8)  # touched: 400 MiB resident
    del big
    with measure_peak() as small_block:
        small = np.ones(50 * MIB // 8)
        del small
    # The block's peak is the resident baseline plus its own 50 MiB, not the earlier 400 MiB;
    # the process peak keeps them (the reset does not lose it).
    assert small_block["bytes"] >= 50 * MIB
    assert process_peak_bytes() - small_block["bytes"] >= 300 * MIB
    with measure_peak() as block:
        medium = np.ones(200 * MIB // 8)
        del medium
    assert block["bytes"] - small_block["bytes"] >= 140 * MIB
