"""Release dates as ranker features: every item has an age from the catalogue, heard or not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from encore.ranking.feature_groups import SECONDS_PER_DAY, StageData
from encore.ranking.features import ItemFeatures

DAY = SECONDS_PER_DAY


def _stage(release: np.ndarray | None) -> StageData:
    # Item 0 heard on days 110 and 120, item 1 on day 115, item 2 by nobody; the stage ends on day 120.
    plays = sp.csr_matrix(np.array([[1, 0, 0], [2, 1, 0]], dtype=np.float32))
    timestamps = sp.csr_matrix(np.array([[110 * DAY, 0, 0], [120 * DAY, 115 * DAY, 0]]))
    return StageData(user_items=plays, item_features=sp.csr_matrix((3, 1), dtype=np.float32), models={},
                     candidates={}, timestamps=timestamps, now=120 * DAY, item_release=release)


def test_days_since_release_for_heard_unknown_and_upcoming_items() -> None:
    data = _stage(np.array([105 * DAY, np.nan, 130 * DAY]))
    columns = ItemFeatures(data).compute(np.zeros(3, dtype=np.int64), np.arange(3), data)
    np.testing.assert_allclose(columns["item_days_since_release"], [15.0, np.nan, -10.0])
    # The listens' age knows nothing of the unheard item: the release date is what tells them apart.
    np.testing.assert_allclose(columns["item_age_days"], [10.0, 5.0, np.nan])


def test_no_release_dates_no_column() -> None:
    data = _stage(None)
    assert "item_days_since_release" not in ItemFeatures(data).compute(np.zeros(3, dtype=np.int64), np.arange(3), data)
    without_timestamps = replace(_stage(np.zeros(3)), timestamps=None, now=0.0)
    assert "item_days_since_release" not in ItemFeatures(without_timestamps).compute(
        np.zeros(3, dtype=np.int64), np.arange(3), without_timestamps)
