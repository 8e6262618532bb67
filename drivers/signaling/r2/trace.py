"""Per-call R2 traces, on demand: every CAS change and MF signal with its tick.

A line with tracing on (`R2Line.set_trace(True, sink)`) keeps an `R2Trace` for the call
in progress and hands it to `sink` when the channel is idle again; the last few finished
traces also stay on the line (`R2Line.traces`). What a trace holds, one entry per line:

    tick  +ms     kind     what
    1043  +0      cas_rx   0011 seize
    1043  +0      cas_tx   1111 seize_ack
    1046  +60     mf_rx    I-3 on: DNIS digit 3
    1046  +60     mf_tx    A-1 on: next_digit
    ...

kinds: cas_rx / cas_tx (ABCD bits and the line signal), mf_rx / mf_tx (signal on or
off, with its group and meaning), state (state changes), timer (a timer ran out), call
(call events: incoming, answered, cleared...), error (protocol errors).

`TraceWriter(directory)` is a sink that writes each finished trace as a text file,
`r2-ch<channel>-<first tick>-<in|out>.trace`, in a worker thread (the audio loop never
waits on disk).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import queue
import threading

log = logging.getLogger("r2.trace")

KINDS = ("cas_rx", "cas_tx", "mf_rx", "mf_tx", "state", "timer", "call", "error")


@dataclasses.dataclass(frozen=True)
class TraceEntry:
    tick: int
    kind: str
    text: str


@dataclasses.dataclass
class R2Trace:
    channel: int
    direction: str                 # "in" (we are the incoming register) or "out"
    variant: str
    started: int                   # tick of the first entry
    tick_ms: int = 20
    entries: list[TraceEntry] = dataclasses.field(default_factory=list)
    ended: int | None = None
    summary: dict = dataclasses.field(default_factory=dict)   # ani, dnis, category, result

    def add(self, tick: int, kind: str, text: str) -> None:
        self.entries.append(TraceEntry(int(tick), kind, text))

    def kinds(self, *kinds: str) -> list[TraceEntry]:
        return [e for e in self.entries if e.kind in kinds]

    def lines(self) -> list[str]:
        way = {"in": "incoming", "out": "outgoing"}.get(self.direction, self.direction)
        out = [f"R2 trace: channel {self.channel}, {way} call, variant "
               f"{self.variant}, ticks {self.started}..{self.ended if self.ended is not None else '?'}"
               f" ({self.tick_ms} ms each)"]
        if self.summary:
            out.append("summary: " + ", ".join(f"{k}={v!r}" for k, v in self.summary.items()))
        for e in self.entries:
            out.append(f"{e.tick:>8}  +{(e.tick - self.started) * self.tick_ms:<7} {e.kind:<7}  {e.text}")
        return out

    def format(self) -> str:
        return "\n".join(self.lines()) + "\n"

    def as_dict(self) -> dict:
        return {"channel": self.channel, "direction": self.direction, "variant": self.variant,
                "started": self.started, "ended": self.ended, "tick_ms": self.tick_ms,
                "summary": dict(self.summary),
                "entries": [dataclasses.asdict(e) for e in self.entries]}

    @property
    def filename(self) -> str:
        return f"r2-ch{self.channel:03d}-{self.started}-{self.direction}.trace"


class TraceWriter:
    """A trace sink writing one file per call into `directory`, off the caller's thread."""

    def __init__(self, directory: str | os.PathLike, limit: int = 1000):
        self.directory = os.fspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self._queue: queue.Queue = queue.Queue(maxsize=limit)
        self.dropped = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name="r2-trace", daemon=True)
        self._thread.start()

    def __call__(self, trace: R2Trace) -> None:
        try:
            self._queue.put_nowait(trace)
        except queue.Full:
            self.dropped += 1            # a stuck disk costs traces, never the audio loop

    def _run(self) -> None:
        while True:
            trace = self._queue.get()
            if trace is None:
                return
            path = os.path.join(self.directory, trace.filename)
            try:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(trace.format())
                self.written += 1
            except OSError as e:
                log.warning("R2 trace %s not written: %s", path, e)

    def close(self, timeout: float | None = 5.0) -> None:
        """Write what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout)
