"""The progress helper: silent for short work, periodic log lines without a terminal, a bar on one."""

from __future__ import annotations

import io
import logging

import pytest

from encore.progress import Progress, Timings, batches


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "encore.progress"]


def test_short_work_shows_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock, stream = FakeClock(), io.StringIO()
    with Progress("fast", 1000, stream=stream, clock=clock) as progress:
        for _ in range(10):
            clock.now += 0.2  # 2 s in all: under the 3 s quiet period
            progress.advance(100)
    assert progress_lines(caplog) == []
    assert stream.getvalue() == ""


def test_log_lines_every_interval_with_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock, stream = FakeClock(), io.StringIO()  # StringIO is not a tty: log lines, no bar
    with Progress("als recommend train", 30_000, stream=stream, clock=clock) as progress:
        for _ in range(30):
            clock.now += 1.0  # 1,000 users per second
            progress.advance(1_000)
    lines = progress_lines(caplog)
    # first line once past the quiet period (3 s), then one per 10 s, then the closing line
    assert lines[0] == "als recommend train: 3,000/30,000 users (10%), 1,000 users/s, ETA 27 s"
    assert lines[1] == "als recommend train: 13,000/30,000 users (43%), 1,000 users/s, ETA 17 s"
    assert lines[2] == "als recommend train: 23,000/30,000 users (77%), 1,000 users/s, ETA 7 s"
    assert lines[3] == "als recommend train: 30,000 users in 30 s"
    assert len(lines) == 4
    assert stream.getvalue() == ""


def test_terminal_gets_a_bar_not_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    clock, terminal = FakeClock(), FakeTerminal()
    with Progress("ease similar items", 400, unit="items", stream=terminal, clock=clock) as progress:
        for _ in range(4):
            clock.now += 2.0
            progress.advance(100)
    out = terminal.getvalue()
    assert out.startswith("\r[") and out.endswith("\n")
    assert "ease similar items: 400/400 items (100%), 50 items/s, ETA 0 s" in out
    assert progress_lines(caplog) == ["ease similar items: 400 items in 8 s"]


def test_batches_cover_the_range_and_report() -> None:
    assert list(batches(10, 4, "x")) == [(0, 4), (4, 8), (8, 10)]
    assert list(batches(0, 4, "x")) == []
    with pytest.raises(ValueError, match="batch_size"):
        list(batches(10, 0, "x"))


def test_timings_add_up_per_phase() -> None:
    timings = Timings()
    with timings.phase("fit_base"):
        pass
    with timings.phase("fit_base"):
        sum(range(10_000))
    with timings.phase("recommend_base"):
        pass
    assert set(timings) == {"fit_base_seconds", "recommend_base_seconds"}
    assert all(isinstance(v, float) and v >= 0 for v in timings.values())
