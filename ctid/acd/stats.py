"""Statistics: the append-only queue log and the live figures of each queue.

The log is Asterisk's queue_log made richer: one record per queue or agent transition,
``(time, queue, call, agent, event, data)``, with ``data`` a small dict; records map
one-to-one onto a SQL table row (``LogRecord.row()``). Events:

  ENTERQUEUE, OFFER, RINGNOANSWER, CONNECT, COMPLETE, ABANDON, WITHDRAWN, OVERFLOW,
  EXITWITHTIMEOUT, TRANSFER, CALLBACK_REQUESTED, CALLBACK_DIAL, CALLBACK_CONNECT,
  CALLBACK_FAILED, CALLBACK_RETRY, CALLBACK_ABANDONED, CALLBACK_CANCELLED,
  STICKY_WAIT, STICKY_EXPIRED, AGENT_STATE, SUPERVISOR_FORCE, SUPERVISE, CORRECTION.

Live figures count calls that *left* the queue during the period (answered, abandoned,
overflowed away, timed out), so a burst of callers still waiting does not dent the
service level before anything happened to them. A call withdrawn by whoever placed it
(WITHDRAWN: a consultation taken back) is not counted at all:

  offered         = answered + abandoned + overflowed + timed_out
  service level   = answered within the threshold / offered
  ASA             = mean time from entering the queue to answer, over answered calls
  abandon rate    = abandoned / offered
  AHT             = (talk + hold + wrap-up) / handled calls, a call counting as
                    handled once its wrap-up is over

Callback requests are counted apart: the caller hung up by choice, which is neither an
abandon nor an answer. ``completed`` counts when the customer answers the call back (not
when the agent does), ``failed`` counts each attempt that did not reach them, and
``abandoned`` each entry given up (no attempts left, or cancelled), so that

  callbacks requested = completed + abandoned + still pending (waiting, ringing an agent,
                        dialling, or waiting for a retry)
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Optional


@dataclasses.dataclass(frozen=True, slots=True)
class LogRecord:
    time: float
    queue: str
    call: str
    agent: str
    event: str
    data: dict

    def row(self) -> dict[str, Any]:
        return {"time": self.time, "queue": self.queue, "call": self.call,
                "agent": self.agent, "event": self.event, "data": dict(self.data)}


class QueueLog:
    """Append-only. ``keep`` retains records for ``drain``; ``sink`` sees each one."""

    def __init__(self, keep: bool = True, sink: Optional[Callable[[LogRecord], None]] = None):
        self.keep = keep
        self.sink = sink
        self.records: list[LogRecord] = []
        self.count = 0

    def append(self, time: float, queue: str, call: str, agent: str, event: str,
               data: Optional[dict] = None) -> None:
        self.count += 1
        if not self.keep and self.sink is None:
            return
        rec = LogRecord(time, queue or "", call or "", agent or "", event, data or {})
        if self.keep:
            self.records.append(rec)
        if self.sink is not None:
            self.sink(rec)

    def drain(self) -> list[LogRecord]:
        """Records since the last drain (for the database writer)."""
        out, self.records = self.records, []
        return out

    def events(self, event: Optional[str] = None, call: Optional[str] = None,
               agent: Optional[str] = None) -> list[LogRecord]:
        return [r for r in self.records if (event is None or r.event == event)
                and (call is None or r.call == call) and (agent is None or r.agent == agent)]


class QueueStats:
    """Counters for one queue over the current period."""

    EMA_ALPHA = 0.05        # handle-time estimate for expected-wait announcements

    def __init__(self, sl_threshold_s: float, default_aht_s: float):
        self.sl_threshold_s = sl_threshold_s
        self.aht_estimate = default_aht_s
        self.reset(0.0)

    def reset(self, now: float) -> None:
        self.period_start = now
        self.answered = 0
        self.answered_within_sl = 0
        self.abandoned = 0
        self.overflowed = 0
        self.timed_out = 0
        self.wait_answered_s = 0.0
        self.handled = 0
        self.talk_s = 0.0
        self.acw_s = 0.0
        self.callbacks_requested = 0
        self.callbacks_completed = 0
        self.callbacks_failed = 0          # attempts, so one entry may count several times
        self.callbacks_abandoned = 0

    COUNTERS = ("period_start", "answered", "answered_within_sl", "abandoned", "overflowed",
                "timed_out", "wait_answered_s", "handled", "talk_s", "acw_s",
                "callbacks_requested", "callbacks_completed", "callbacks_failed",
                "callbacks_abandoned", "aht_estimate")

    def to_dict(self) -> dict:
        """The period's figures (for the ACD's state file)."""
        return {k: getattr(self, k) for k in self.COUNTERS}

    def from_dict(self, d: dict) -> None:
        """Continue the period `d` describes; ValueError names a bad counter (nothing set)."""
        vals = {}
        for k in self.COUNTERS:
            v = d.get(k, getattr(self, k))
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 \
                    or v == float("inf"):
                raise ValueError(f"{k} must be a number >= 0, got {v!r}")
            vals[k] = v if k.endswith("_s") or k in ("period_start", "aht_estimate") else int(v)
        for k, v in vals.items():
            setattr(self, k, v)

    @property
    def offered(self) -> int:
        return self.answered + self.abandoned + self.overflowed + self.timed_out

    def on_answered(self, wait_s: float) -> None:
        self.answered += 1
        self.wait_answered_s += wait_s
        if wait_s <= self.sl_threshold_s:
            self.answered_within_sl += 1

    def on_talk_end(self, talk_s: float, wrapup_s: float) -> None:
        """Talk over; wrapup_s is the wrap-up it is expected to get (for the estimate)."""
        a = self.EMA_ALPHA
        self.aht_estimate = (1 - a) * self.aht_estimate + a * (talk_s + wrapup_s)

    def on_handled(self, talk_s: float, acw_s: float) -> None:
        """A call is fully handled: its wrap-up (possibly zero) has ended."""
        self.handled += 1
        self.talk_s += talk_s
        self.acw_s += acw_s

    def service_level(self) -> Optional[float]:
        off = self.offered
        return self.answered_within_sl / off if off else None

    def asa_s(self) -> Optional[float]:
        return self.wait_answered_s / self.answered if self.answered else None

    def abandon_rate(self) -> Optional[float]:
        off = self.offered
        return self.abandoned / off if off else None

    def aht_s(self) -> Optional[float]:
        return (self.talk_s + self.acw_s) / self.handled if self.handled else None
