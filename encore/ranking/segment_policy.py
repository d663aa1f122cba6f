"""Which list each user segment gets, chosen on evidence: the ranker's or a fallback's.

A *cold* user has no history in the stage's training matrix, a *warm* one has some. On a
global time split many test users are cold, and a ranker may serve them worse than the
fallback list it could simply have returned (recency-weighted popularity, say). The choice
is made per segment on a held-out slice of ranker-target users (never on test), and a
segment the ranker saw no training user of always gets the fallback.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from encore.evaluation.segments import COLD, WARM
from encore.evaluation.segments import USER_SEGMENTS as SEGMENTS

RANKER, FALLBACK = "ranker", "fallback"


def cold_users(history: sp.csr_matrix, users: np.ndarray) -> np.ndarray:
    """Boolean per user: no stored interaction in ``history`` (n_users, n_items)."""
    return np.diff(history.indptr)[users] == 0


@dataclass(frozen=True)
class SegmentPolicy:
    """``choice[segment]`` is ``ranker`` or ``fallback``; ``validation`` holds the evidence."""

    choice: dict[str, str] = field(default_factory=lambda: dict.fromkeys(SEGMENTS, RANKER))
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)

    def uses_fallback(self, cold: np.ndarray) -> np.ndarray:
        """Boolean per user (``cold`` per user): does this user get the fallback list?"""
        return np.where(cold, self.choice[COLD] == FALLBACK, self.choice[WARM] == FALLBACK)

    def metrics(self) -> dict[str, float]:
        """Flat numbers for the run: ``policy.<segment>.uses_fallback`` (1 = fallback) and the
        evidence, ``policy.<segment>.validation_users`` / ``.validation_ranker`` / ``.validation_fallback``."""
        out = {f"policy.{segment}.uses_fallback": float(self.choice[segment] == FALLBACK) for segment in SEGMENTS}
        for segment, values in self.validation.items():
            out |= {f"policy.{segment}.validation_{key}": value for key, value in values.items()}
        return out


def choose_policy(cold: np.ndarray, ranker_values: np.ndarray, fallback_values: np.ndarray,
                  trained_cold_users: int) -> SegmentPolicy:
    """Per segment of the validation users, the list with the higher mean metric (ties: the ranker).

    ``cold`` / ``ranker_values`` / ``fallback_values`` are per validation user;
    ``trained_cold_users`` counts the cold users the ranker was trained on: with none, the
    cold segment gets the fallback whatever the validation says.
    """
    choice, validation, reason = {}, {}, {}
    for segment, mask in ((WARM, ~cold), (COLD, cold)):
        n = int(mask.sum())
        ranker_mean = float(ranker_values[mask].mean()) if n else float("nan")
        fallback_mean = float(fallback_values[mask].mean()) if n else float("nan")
        validation[segment] = {"users": float(n), "ranker": ranker_mean, "fallback": fallback_mean}
        if segment == COLD and trained_cold_users == 0:
            choice[segment], reason[segment] = FALLBACK, "the ranker was trained on no cold user"
        elif n == 0:
            choice[segment] = RANKER if segment == WARM else FALLBACK
            reason[segment] = "no validation user in the segment"
        else:
            choice[segment] = RANKER if ranker_mean >= fallback_mean else FALLBACK
            reason[segment] = f"validation ranker {ranker_mean:.4f} vs fallback {fallback_mean:.4f} over {n} users"
    return SegmentPolicy(choice=choice, validation=validation, reason=reason)
