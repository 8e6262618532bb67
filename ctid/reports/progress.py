"""Progress of long work for an operator watching, or for a log.

On a terminal one line is redrawn in place (at most ten times a second); anywhere else
(a pipe, a log file, cron) plain lines are written every `every_s` seconds, so a log is
readable and not flooded. Both end with a final line saying how long it took.

    with Progress("acd sweep", total=33) as p:
        for job in jobs:
            run(job)
            p.advance()

    for cdr in Progress("xlsx", total=len(cdrs)).iterate(cdrs): ...

Output goes to stderr by default, so a report on stdout (or --json) stays clean. A closed
or broken stream stops the progress output, never the work.
"""
from __future__ import annotations

import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TextIO, TypeVar

T = TypeVar("T")

TTY_REDRAW_S = 0.1          # a terminal line is redrawn at most this often
LOG_EVERY_S = 10.0          # a plain line at most this often elsewhere
_CLEAR_EOL = "\x1b[K"


def format_duration(seconds: float) -> str:
    """0:07, 12:05, 1:02:03."""
    s = max(0, int(round(seconds)))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def format_rate(per_s: float, unit: str = "") -> str:
    """Three significant figures (whole numbers from 100 up); slow work reads better as
    seconds per item."""
    u = f" {unit}" if unit else ""
    if per_s <= 0:
        return f"0{u}/s"
    if per_s < 1:
        return f"{1 / per_s:.3g} s each"
    if per_s >= 100:
        return f"{per_s:.0f}{u}/s"
    return f"{per_s:.3g}{u}/s"


def format_line(label: str, done: int, total: Optional[int], elapsed_s: float,
                unit: str = "", final: bool = False) -> str:
    """One progress line: count, percentage, rate and ETA (or the time taken, at the end).

    format_line("sweep", 3, 12, 6.0) == "sweep: 3/12 25% 2 s each ETA 0:18"
    """
    parts = [f"{label}: {done}/{total}" if total is not None else f"{label}: {done}"]
    if total:
        parts.append(f"{100 * done / total:.0f}%")
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    if done > 0 and elapsed_s > 0:
        parts.append(format_rate(rate, unit))
    if final:
        parts.append(f"in {format_duration(elapsed_s)}")
    elif total is not None and done > 0 and rate > 0:
        parts.append(f"ETA {format_duration((total - done) / rate)}")
    return " ".join(parts)


class Progress:
    """A progress reporter; `advance()` after each item, `finish()` (or `with`) at the end."""

    def __init__(self, label: str, total: Optional[int] = None, stream: Optional[TextIO] = None,
                 *, tty: Optional[bool] = None, unit: str = "", every_s: float = LOG_EVERY_S,
                 clock: Callable[[], float] = time.monotonic):
        if total is not None and total < 0:
            raise ValueError(f"progress total must be >= 0, got {total}")
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream if stream is not None else sys.stderr
        if tty is None:
            try:
                tty = self.stream.isatty()
            except (AttributeError, ValueError):
                tty = False
        self.tty = tty
        self.every_s = TTY_REDRAW_S if tty else every_s
        self.clock = clock
        self.done = 0
        self.t0 = clock()
        self._last = self.t0
        self._drawn = False          # a terminal line is showing, not yet ended
        self._finished = False
        self._dead = False           # the stream failed: stay quiet from now on

    # ---- counting --------------------------------------------------------------------
    def advance(self, n: int = 1) -> None:
        self.set(self.done + n)

    def set(self, done: int) -> None:
        self.done = done
        now = self.clock()
        if now - self._last >= self.every_s:
            self._last = now
            self._emit(format_line(self.label, done, self.total, now - self.t0, self.unit))

    def iterate(self, items: Iterable[T]) -> Iterator[T]:
        """Yield the items, advancing once each; finishes when they run out."""
        try:
            for item in items:
                yield item
                self.advance()
        finally:
            self.finish()

    def finish(self) -> None:
        if self._finished:
            return
        self._finished = True
        elapsed = self.clock() - self.t0
        self._emit(format_line(self.label, self.done, self.total, elapsed, self.unit,
                               final=True), end=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is None:
            self.finish()
        elif self._drawn:            # interrupted: leave the terminal on a fresh line
            self._write("\n")
            self._drawn = False

    # ---- output ----------------------------------------------------------------------
    def _emit(self, line: str, end: bool = False) -> None:
        if self.tty:
            self._write(f"\r{line}{_CLEAR_EOL}" + ("\n" if end else ""))
            self._drawn = not end
        else:
            self._write(line + "\n")

    def _write(self, text: str) -> None:
        if self._dead:
            return
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):      # closed pipe or file: the work goes on
            self._dead = True
