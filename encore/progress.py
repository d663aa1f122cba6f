"""Progress with an ETA for long batched loops, and per-phase timings for a component's metrics.

* :class:`Progress` (or :func:`batches`) around a loop over users/items in batches: silent
  for the first ``quiet_seconds`` (short work prints nothing), then a one-line bar on a
  terminal (stderr is a tty) or, in logs, a line every ``log_seconds``:
  ``als recommend train: 12,288/30,000 users (41%), 2,150 users/s, ETA 5 s``.
* :class:`Timings`: ``with timings.phase("fit_base"): ...`` adds ``fit_base_seconds``, the
  ``*_seconds`` shape components return in ``Result.metrics`` (and so log to MLflow).

No dependency: a bar is one ``\\r`` line, cheaper than importing tqdm into every component.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Self

log = logging.getLogger(__name__)

QUIET_SECONDS = 3.0
"""Work finished within this many seconds shows no progress at all."""
LOG_SECONDS = 10.0
"""Without a terminal, one log line per this many seconds."""
_BAR_SECONDS = 0.2  # redraw a terminal bar at most 5 times a second
_BAR_WIDTH = 24


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    return f"{minutes} min {seconds:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


class Progress:
    """Progress of ``total`` units of work done in steps (``advance(n)`` after each batch)."""

    def __init__(self, label: str, total: int, *, unit: str = "users", quiet_seconds: float = QUIET_SECONDS,
                 log_seconds: float = LOG_SECONDS, stream: IO[str] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.label, self.total, self.unit = label, int(total), unit
        self.quiet_seconds, self.log_seconds = quiet_seconds, log_seconds
        self.stream = stream if stream is not None else sys.stderr  # resolved now: pytest swaps sys.stderr
        self.clock = clock
        self.terminal = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.started = clock()
        self._shown_at: float | None = None  # when progress was last shown (None: never)

    def line(self, now: float) -> str:
        """``label: done/total unit (pct), rate, ETA`` as of ``now``."""
        elapsed = max(now - self.started, 1e-9)
        rate = self.done / elapsed
        pct = 100.0 * self.done / self.total if self.total else 100.0
        eta = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta_text = _duration(eta) if eta != float("inf") else "?"
        return (f"{self.label}: {self.done:,}/{self.total:,} {self.unit} ({pct:.0f}%), "
                f"{rate:,.0f} {self.unit}/s, ETA {eta_text}")

    def advance(self, n: int) -> None:
        """Record ``n`` more units done; show progress when it is due."""
        self.done = min(self.done + int(n), self.total)
        now = self.clock()
        if now - self.started < self.quiet_seconds:
            return
        every = _BAR_SECONDS if self.terminal else self.log_seconds
        if self._shown_at is not None and now - self._shown_at < every:
            return
        self._shown_at = now
        if self.terminal:
            filled = int(_BAR_WIDTH * self.done / self.total) if self.total else _BAR_WIDTH
            self.stream.write(f"\r[{'#' * filled}{'.' * (_BAR_WIDTH - filled)}] {self.line(now)}\033[K")
            self.stream.flush()
        else:
            log.info("%s", self.line(now))

    def close(self) -> None:
        """End the bar (or log the total time) if progress was shown; otherwise stay silent."""
        if self._shown_at is None:
            return
        elapsed = self.clock() - self.started
        if self.terminal:
            self.stream.write("\n")
            self.stream.flush()
        log.info("%s: %s %s in %s", self.label, f"{self.done:,}", self.unit, _duration(elapsed))
        self._shown_at = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def batches(total: int, batch_size: int, label: str, *, unit: str = "users",
            **kwargs: object) -> Iterator[tuple[int, int]]:
    """``(start, stop)`` of consecutive batches covering ``range(total)``, with progress."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    with Progress(label, total, unit=unit, **kwargs) as progress:  # type: ignore[arg-type]
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield start, stop
            progress.advance(stop - start)


class Timings(dict[str, float]):
    """Wall time of named phases, as ``{"<phase>_seconds": float}`` (repeated phases add up)."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            key = f"{name}_seconds"
            self[key] = self.get(key, 0.0) + time.perf_counter() - started
