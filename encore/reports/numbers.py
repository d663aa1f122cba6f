"""Numbers as people read them: p-values never printed as ``0.0``, changes as percentages."""

from __future__ import annotations

import math

P_FLOOR = 1e-4
"""Below this a p-value is shown as ``p < 1e-4``: more digits are noise of the test's assumptions."""


def format_p(p: float | None) -> str:
    """``p=0.0123``, ``p < 1e-4`` or ``p n/a``."""
    if p is None or math.isnan(p):
        return "p n/a"
    return "p < 1e-4" if p < P_FLOOR else f"p={p:.3g}"


def format_pct(fraction: float | None, digits: int = 1) -> str:
    """A relative change (0.034) as ``+3.4%``; empty when unknown."""
    if fraction is None or math.isnan(fraction) or math.isinf(fraction):
        return ""
    return f"{100 * fraction:+.{digits}f}%"


def relative_change(a: float | None, b: float | None) -> float | None:
    """(b - a) / |a|, or None when it is undefined (a missing or zero)."""
    if a is None or b is None or math.isnan(a) or math.isnan(b) or a == 0:
        return None
    return (b - a) / abs(a)


def format_uplift(entry: dict) -> str:
    """A paired comparison (``rel_uplift``, ``rel_ci_low``/``high``, ``confidence``, ``p_value``
    as :func:`encore.evaluation.significance.paired_comparison` writes it) in one phrase:
    ``+3.6% (95% CI +1.2% .. +6.0%, p < 1e-4)``."""
    confidence = entry.get("confidence", 0.95)
    return (f"{format_pct(entry.get('rel_uplift'))} ({100 * confidence:.0f}% CI "
            f"{format_pct(entry.get('rel_ci_low'))} .. {format_pct(entry.get('rel_ci_high'))}, "
            f"{format_p(entry.get('p_value'))})")
