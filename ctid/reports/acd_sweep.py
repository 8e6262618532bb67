"""Staffing sweep: the ACD simulation (ctid.acd.simulate) run for a range of agent counts,
a few runs each, next to Erlang C for the same load. This is what a supervisor reads to
choose a staffing level: service level and average speed of answer against agents.

A functional core: no clock, no output; `on_run` is called after each simulation so the
caller can show progress.
"""
from __future__ import annotations

import dataclasses
import math
import re
import statistics
from typing import Callable, Optional, Sequence

from ctid.acd.erlang import erlang_c, erlang_c_asa, erlang_c_service_level
from ctid.acd.simulate import simulate

SL_THRESHOLD_S = 20.0           # the simulation's service level is "answered within 20 s"
FIGURES = ("service_level_20s", "asa_s", "p_wait", "abandon_rate", "occupancy")
MAX_LEVELS = 200                # a sweep wider than this is a typo, not a plan


@dataclasses.dataclass
class SweepPoint:
    """One staffing level: every run's figures and Erlang C's."""
    agents: int
    runs: list[dict]
    erlang_c: dict              # p_wait, asa_s (inf when overloaded), service_level_20s

    def values(self, figure: str) -> list[float]:
        return [float(r[figure]) for r in self.runs]

    def mean(self, figure: str) -> float:
        return statistics.fmean(self.values(figure))

    def low(self, figure: str) -> float:
        return min(self.values(figure))

    def high(self, figure: str) -> float:
        return max(self.values(figure))

    def to_dict(self) -> dict:
        sim = {f: {"mean": round(self.mean(f), 4), "min": round(self.low(f), 4),
                   "max": round(self.high(f), 4)} for f in FIGURES}
        erl = {k: (None if isinstance(v, float) and math.isinf(v) else round(v, 4))
               for k, v in self.erlang_c.items()}
        return {"agents": self.agents, "runs": len(self.runs), "simulated": sim,
                "erlang_c": erl}


def parse_agents(text: str) -> list[int]:
    """"15-25", "10-40/5" (every 5th) or "15,18,20" -> sorted agent counts."""
    spec = text.strip()
    out: set[int] = set()
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+)(?:\s*/\s*(\d+))?)?", part)
        if not m:
            raise ValueError(f"agents range {text!r}: expected N-M, N-M/STEP or N,M,..., "
                             f"got {part!r}")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        step = int(m.group(3)) if m.group(3) else 1
        if lo < 1 or hi < lo or step < 1:
            raise ValueError(f"agents range {text!r}: {part!r} needs 1 <= first <= last "
                             f"and a step >= 1")
        out.update(range(lo, hi + 1, step))
        if len(out) > MAX_LEVELS:
            raise ValueError(f"agents range {text!r}: more than {MAX_LEVELS} staffing levels")
    return sorted(out)


def erlang_figures(agents: int, calls_per_hour: float, aht_s: float) -> dict:
    a = calls_per_hour * aht_s / 3600.0
    return {"offered_erlangs": a, "p_wait": erlang_c(agents, a),
            "asa_s": erlang_c_asa(agents, a, aht_s),
            "service_level_20s": erlang_c_service_level(agents, a, aht_s, SL_THRESHOLD_S)}


def sweep(agents: Sequence[int], runs: int = 3, seed: int = 1, *,
          calls_per_hour: float = 360.0, aht_s: float = 180.0, hours: float = 8.0,
          on_run: Optional[Callable[[int, int, dict], None]] = None, **sim) -> list[SweepPoint]:
    """Simulate each staffing level `runs` times (seeds seed, seed+1, ...; the same seeds
    at every level, so the levels see the same callers). `sim`: further simulate()
    arguments (patience_s, wrapup_s, strategy, answer_delay_s, warmup_h).
    on_run(agents, run, result) after each simulation."""
    if not agents:
        raise ValueError("no staffing levels to simulate")
    if not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be a positive integer, got {runs!r}")
    points = []
    for n in agents:
        results = []
        for k in range(runs):
            r = simulate(agents=n, calls_per_hour=calls_per_hour, aht_s=aht_s, hours=hours,
                         seed=seed + k, **sim)
            results.append(r)
            if on_run is not None:
                on_run(n, k, r)
        points.append(SweepPoint(n, results, erlang_figures(n, calls_per_hour, aht_s)))
    return points


def smallest_meeting(points: Sequence[SweepPoint], target_sl: float) -> dict:
    """The fewest agents whose service level reaches `target_sl`: by the simulation's mean
    and by Erlang C (None when no level in the sweep does)."""
    sim = next((p.agents for p in points if p.mean("service_level_20s") >= target_sl), None)
    erl = next((p.agents for p in points if p.erlang_c["service_level_20s"] >= target_sl),
               None)
    return {"simulated": sim, "erlang_c": erl}
