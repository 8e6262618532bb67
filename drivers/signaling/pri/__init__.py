"""ISDN PRI on E1 spans: libpri's D-channel with our B-channel state machines.

    span.py      PriSpan (one D-channel, its B-channels' lines, span health, restarts)
    config.py    PriConfig (which side, switch type, call handling choices)
    commands.py  the commands a B-channel takes, checked
    causes.py    Q.850 cause tables
    pcap.py      LINUX_LAPD pcap writer and reader for D-channel captures

`span_for(span_cfg, channel_cfgs, block, law, metrics)` builds the PriSpan cardd runs for
one configured span.
"""
from __future__ import annotations

from .config import PriConfig
from .span import PriChannel, PriSpan, PriState


def span_for(span_cfg, channel_cfgs, *, block: int = 160, law: str = "alaw",
             metrics=None) -> PriSpan:
    """The PriSpan for a drivers.config.SpanConfig and its ChannelConfigs."""
    cfg = PriConfig.from_span(span_cfg, tick_ms=block * 1000 // 8000, law=law)
    channels = [(c.channel, c.timeslot) for c in channel_cfgs if c.span == span_cfg.span]
    return PriSpan(span_cfg.span, channels, cfg, metrics=metrics, name=span_cfg.name)


__all__ = ["PriConfig", "PriChannel", "PriSpan", "PriState", "span_for"]
