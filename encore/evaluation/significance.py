"""Paired significance of two models' per-user values: t-test and bootstrap interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

# Target number of int64 indices per bootstrap batch (~64 MB).
_BOOTSTRAP_BATCH_ELEMENTS = 8_000_000

# ----------------------------------------------------------------------------- paired significance


@dataclass(frozen=True)
class PairedComparison:
    """Paired comparison of a per-user metric between a baseline ``a`` and a challenger ``b``.

    Differences are ``b - a``, so positive means the challenger is better.
    ``ci_low``/``ci_high`` bound the mean difference and ``rel_ci_low``/``rel_ci_high``
    the relative uplift ``mean_b / mean_a - 1`` (percentile bootstrap over users).
    ``t_statistic``/``p_value`` come from a two-sided paired t-test.
    """

    metric: str
    n_users: int
    mean_a: float
    mean_b: float
    diff: float
    rel_uplift: float
    ci_low: float
    ci_high: float
    rel_ci_low: float
    rel_ci_high: float
    t_statistic: float
    p_value: float
    n_better: int
    n_worse: int
    confidence: float
    n_resamples: int
    n_groups: int = 0
    """Independent units the bootstrap resampled: users, or the ``groups`` (a user's rows of
    several folds) when given."""

    def to_dict(self) -> dict[str, float | int | str]:
        """Plain dict of all fields (e.g. for ``mlflow.log_dict`` or a DataFrame row)."""
        return asdict(self)


def _paired_t_test(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    d = b - a
    # scipy returns nan for zero-variance differences; resolve those cases explicitly:
    # all-equal pairs are "no evidence", a constant nonzero shift is certain.
    if np.ptp(d) == 0:
        if d[0] == 0:
            return 0.0, 1.0
        return float(np.sign(d[0]) * np.inf), 0.0
    res = stats.ttest_rel(b, a)  # two-sided, statistic > 0 when b is better
    return float(res.statistic), float(res.pvalue)


def paired_comparison(
    a: np.ndarray,
    b: np.ndarray,
    *,
    metric: str = "ndcg@10",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
    groups: np.ndarray | None = None,
) -> PairedComparison:
    """Compare per-user metric values of baseline ``a`` and challenger ``b``.

    ``a`` and ``b`` have shape ``(n_users,)`` and are paired by position (same users,
    e.g. from :func:`per_user_metric`). The bootstrap resamples users with replacement
    ``n_resamples`` times, in batches of ``(batch, n_users)`` indices to bound memory,
    from ``np.random.default_rng(random_state)``, so results are deterministic.
    The relative-uplift interval is nan/inf-prone when ``mean_a`` can be 0.

    ``groups`` (shape ``(n,)``, e.g. user ids when rows are (fold, user) pairs) makes it a
    cluster bootstrap: whole groups are resampled, each with all its rows, so one user seen in
    several folds counts once as a unit of evidence; means stay over rows, and the t-test is
    over the groups' mean differences.
    """
    return paired_comparisons({"a": a}, b, metric=metric, n_resamples=n_resamples, confidence=confidence,
                              random_state=random_state, groups=groups)["a"]


def paired_comparisons(
    baselines: Mapping[str, np.ndarray],
    b: np.ndarray,
    *,
    metric: str = "ndcg@10",
    n_resamples: int = 2000,
    confidence: float = 0.95,
    random_state: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, PairedComparison]:
    """:func:`paired_comparison` of challenger ``b`` against each baseline, by name.

    Every comparison sees the same resamples (each equals its own :func:`paired_comparison`
    call), drawn once: the index draws and the challenger's sums are shared, which is most
    of the bootstrap's cost when a challenger meets many baselines.
    """
    b = _check_values(b, "b")
    arrays = {name: _check_values(a, f"a ({name})") for name, a in baselines.items()}
    for name, a in arrays.items():
        if a.shape != b.shape:
            raise ValueError(f"a and b must be 1-D with equal shapes, got {a.shape} ({name}) and {b.shape}")
    n = b.size
    if n < 2:
        raise ValueError("need at least two paired users")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")

    if groups is None:
        codes, counts = None, np.ones(n)
    else:
        groups = np.asarray(groups)
        if groups.shape != b.shape:
            raise ValueError(f"groups must have the shape of a, got {groups.shape} and {b.shape}")
        codes = np.unique(groups, return_inverse=True)[1]
        counts = np.bincount(codes).astype(np.float64)
        if len(counts) < 2:
            raise ValueError("need at least two groups")

    def unit_sums(values: np.ndarray) -> np.ndarray:
        return values if codes is None else np.bincount(codes, weights=values)

    n_units = len(counts)
    sums_b = unit_sums(b)
    sums_a = {name: unit_sums(a) for name, a in arrays.items()}
    rng = np.random.default_rng(random_state)
    boot_b = np.empty(n_resamples)
    boot_a = {name: np.empty(n_resamples) for name in arrays}
    batch = max(1, min(n_resamples, _BOOTSTRAP_BATCH_ELEMENTS // n_units))
    for start in range(0, n_resamples, batch):
        stop = min(start + batch, n_resamples)
        idx = rng.integers(0, n_units, size=(stop - start, n_units))
        rows = float(n) if codes is None else counts[idx].sum(axis=1)
        boot_b[start:stop] = sums_b[idx].sum(axis=1) / rows
        for name, sums in sums_a.items():
            boot_a[name][start:stop] = sums[idx].sum(axis=1) / rows

    alpha = 1.0 - confidence
    q = [alpha / 2.0, 1.0 - alpha / 2.0]
    out = {}
    for name, a in arrays.items():
        mean_a, mean_b = float(a.mean()), float(b.mean())
        d = b - a
        t_stat, p_value = (_paired_t_test(a, b) if codes is None
                           else _paired_t_test(sums_a[name] / counts, sums_b / counts))
        ci_low, ci_high = np.quantile(boot_b - boot_a[name], q)
        with np.errstate(divide="ignore", invalid="ignore"):
            rel_ci_low, rel_ci_high = np.quantile(boot_b / boot_a[name] - 1.0, q)
            rel_uplift = (mean_b - mean_a) / mean_a if mean_a != 0 else float("nan")
        out[name] = PairedComparison(
            metric=metric,
            n_users=int(n),
            mean_a=mean_a,
            mean_b=mean_b,
            diff=mean_b - mean_a,
            rel_uplift=float(rel_uplift),
            ci_low=float(ci_low),
            ci_high=float(ci_high),
            rel_ci_low=float(rel_ci_low),
            rel_ci_high=float(rel_ci_high),
            t_statistic=t_stat,
            p_value=p_value,
            n_better=int((d > 0).sum()),
            n_worse=int((d < 0).sum()),
            confidence=float(confidence),
            n_resamples=int(n_resamples),
            n_groups=int(n_units),
        )
    return out


def _check_values(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"a and b must be 1-D with equal shapes, got {name} of shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("a and b must be finite")
    return values
