"""Readable numbers and the data digest of the version card."""

from __future__ import annotations

import math

from encore.reports.numbers import format_p, format_pct, format_uplift, relative_change
from encore.reports.version_card import data_digest


def test_p_values_are_never_printed_as_zero() -> None:
    assert format_p(0.0) == "p < 1e-4" and format_p(9.9e-5) == "p < 1e-4"
    assert format_p(1e-4) == "p=0.0001" and format_p(0.15767) == "p=0.158"
    assert format_p(None) == "p n/a" and format_p(math.nan) == "p n/a"


def test_changes_are_percentages() -> None:
    assert format_pct(0.0345) == "+3.5%" and format_pct(-0.5, digits=2) == "-50.00%"
    assert format_pct(None) == "" and format_pct(math.inf) == ""
    assert math.isclose(relative_change(0.4, 0.42), 0.05) and math.isclose(relative_change(-2.0, -1.0), 0.5)
    assert relative_change(0.0, 1.0) is None and relative_change(None, 1.0) is None
    entry = {"rel_uplift": 0.036, "rel_ci_low": 0.012, "rel_ci_high": 0.06, "confidence": 0.95, "p_value": 1e-9}
    assert format_uplift(entry) == "+3.6% (95% CI +1.2% .. +6.0%, p < 1e-4)"


def test_data_digest_names_the_files_or_the_generating_settings() -> None:
    files = {"user_artists": "a" * 64, "artists": "b" * 64}
    digest = data_digest(files, "cfg")
    assert digest.startswith("sha256:") and len(digest) == len("sha256:") + 16
    assert digest == data_digest(dict(reversed(files.items())), "other")  # order and settings do not matter
    assert digest != data_digest(files | {"artists": "c" * 64}, "cfg")
    assert data_digest({}, "cfg") == "config:cfg"
