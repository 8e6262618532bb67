"""R2Span: an E1 span with MFC/R2 signaling, as cardd's span signaling sees it.

The lines (`lines`: channel -> R2Line) do the work; cardd drives each of them like any
channel (hardware events with the CAS bits, media events, ticks, commands). The span
adds what belongs to the whole span: its health (drivers.signaling.span_health, with no
signaling link to wait for: R2 has no D-channel). A span alarm takes every line out of
service (calls cleared with cause 38); when it clears, the lines come back after the
backoff, sending idle again. Span-level outputs are (channel, action) pairs.
"""
from __future__ import annotations

from drivers.backends.base import HwEvent
from drivers.signaling import span_health as health

from . import make_line


class R2Span:
    kind = "r2"

    def __init__(self, span: int, lines: dict, *, tick_ms: int = 20, metrics=None,
                 name: str | None = None):
        self.span = span
        self.name = name or f"span{span}"
        self.lines = lines
        self.health = health.SpanHealth(span, tick_ms=tick_ms, needs_link=False)
        self.metrics = metrics
        self.dchannel_up = False
        if metrics is not None:
            metrics.in_service.labels(str(span)).set(1)

    def health_reason(self) -> str:
        return self.health._reason()

    def on_dframe(self, frame: bytes, tick: int) -> list:
        return []                              # no D-channel on an R2 span

    def on_tick(self, tick: int) -> list:
        return self._apply(self.health.tick(tick), tick)

    def on_alarm(self, bits: int, tick: int) -> list:
        return self._apply(self.health.alarm(bits, tick), tick)

    def on_counters(self, totals: dict, tick: int) -> list:
        changes = self.health.counts(totals, tick)
        if self.metrics is not None:
            for change in changes:
                for counter, n in change.increases.items():
                    self.metrics.errors.labels(str(self.span), counter).inc(n)
        return changes

    def _apply(self, changes, tick: int) -> list:
        out = []
        for change in changes:
            event = HwEvent.ALARM if isinstance(change, health.Down) else HwEvent.NOALARM
            if self.metrics is not None:
                self.metrics.in_service.labels(str(self.span)).set(0 if event == HwEvent.ALARM else 1)
                if event == HwEvent.ALARM:
                    self.metrics.outages.labels(str(self.span)).inc()
            for channel, line in self.lines.items():
                out += [(channel, action) for action in line.on_hw(event, tick)]
        return out


def span_for(span_cfg, channel_cfgs, *, block: int = 160, law: str = "alaw",
             metrics=None) -> R2Span:
    """The R2Span for a drivers.config.SpanConfig (signaling "r2") and its channels."""
    options = dict(getattr(span_cfg, "options", {}) or {})
    lines = {c.channel: make_line(c.channel, span_cfg.r2_variant, block, options)
             for c in channel_cfgs if c.span == span_cfg.span}
    return R2Span(span_cfg.span, lines, tick_ms=block * 1000 // 8000, metrics=metrics,
                  name=span_cfg.name)
