"""MFC/R2 signaling: our own stack, with each carrier's variant as data (etc/r2/*.toml).

`R2Line` (line.py) runs one E1 timeslot in both directions: line signals on the CAS bits
(`SetCas` actions out, BITSCHANGED events in) and compelled MF register signals through
the media engine. `load_variant` (variant.py) reads a variant file; `R2Trace` and
`TraceWriter` (trace.py) record calls on demand. `make_line` builds a line from cardd's
configuration.
"""
from __future__ import annotations

import os

from .line import R2Error, R2Line, R2Options, R2State, SetCas
from .trace import R2Trace, TraceWriter
from .variant import Variant, VariantError, load_variant

__all__ = ["R2Error", "R2Line", "R2Options", "R2State", "R2Trace", "SetCas", "TraceWriter",
           "Variant", "VariantError", "load_variant", "make_line"]

TRACE_ENV = "CARDD_R2_TRACE"          # a directory: trace every R2 call into it
_writers: dict[str, TraceWriter] = {}


def make_line(channel: int, variant_name: str, block: int = 160, options: dict | None = None,
              trace_dir: str | None = None) -> R2Line:
    """An R2 line for one E1 timeslot, as cardd builds it for a span with signaling "r2".

    `options`: span settings (r2_max_dnis, r2_max_ani, r2_ringback). Tracing: `trace_dir`,
    or else the directory in $CARDD_R2_TRACE; files are written by one worker thread per
    directory.
    """
    options = options or {}
    opts = R2Options(tick_ms=block * 1000 // 8000,
                     max_dnis=options.get("r2_max_dnis"), max_ani=options.get("r2_max_ani"),
                     ringback_tone=options.get("r2_ringback", "ringback"))
    line = R2Line(channel, load_variant(variant_name), opts)
    trace_dir = trace_dir or options.get("r2_trace") or os.environ.get(TRACE_ENV, "")
    if trace_dir:
        writer = _writers.get(trace_dir)
        if writer is None:
            writer = _writers[trace_dir] = TraceWriter(trace_dir)
        line.set_trace(True, writer)
    return line
