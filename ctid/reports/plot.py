"""PNG charts for operators, drawn with matplotlib's Agg renderer (no display needed).

    plot_calls(report, "march.png", bucket="auto")     # calls per hour/day by outcome
    plot_acd_sweep(points, "staffing.png", ...)        # service level and ASA vs agents

matplotlib is imported when a chart is drawn, so ctictl starts without it. Figures are
built with the object API (no pyplot state), so drawing is safe in any thread.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence

from .acd_sweep import SL_THRESHOLD_S, SweepPoint
from .cdr_report import CdrReport

AUTO_HOURS_MAX_DAYS = 7         # "auto": hourly bars up to a week, daily bars beyond
DPI = 100

# Outcomes a user knows by colour: answered green, the failures warm, the rest greys/blues.
OUTCOME_COLOURS = {
    "answered": "#2e9e44", "noAnswer": "#f0a30a", "busy": "#d9534f", "callRejected": "#a83279",
    "trunksBusy": "#8b4513", "invalidNumber": "#6c757d", "notAvailable": "#9467bd",
    "timeout": "#17becf", "normalClearing": "#4a90d9", "networkCongestion": "#e377c2",
    "networkOutOfOrder": "#7f7f7f",
}
_SPARE_COLOURS = ("#1f77b4", "#bcbd22", "#8c564b", "#ff7f0e", "#aec7e8", "#c5b0d5",
                  "#c49c94", "#dbdb8d")


def _figure(width_in: float, height_in: float):
    from matplotlib.figure import Figure
    return Figure(figsize=(width_in, height_in), dpi=DPI, layout="constrained")


def _save(fig, path: str) -> str:
    if not path.lower().endswith(".png"):
        raise ValueError(f"plot file {path!r}: the chart is a PNG, name it NAME.png")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {path}: no directory {parent}")
    try:
        fig.savefig(path, format="png", dpi=DPI)
    except OSError as e:
        raise ValueError(f"cannot write {path}: {e.strerror}") from None
    return path


def choose_bucket(report: CdrReport, bucket: str = "auto") -> str:
    if bucket in ("hour", "day"):
        return bucket
    if bucket != "auto":
        raise ValueError(f"bucket must be auto, hour or day, got {bucket!r}")
    return "hour" if len(report.per_day) <= AUTO_HOURS_MAX_DAYS else "day"


def outcome_colours(outcomes: Sequence[str]) -> dict[str, str]:
    spare = iter(_SPARE_COLOURS * (1 + len(outcomes) // len(_SPARE_COLOURS)))
    return {o: OUTCOME_COLOURS.get(o) or next(spare) for o in outcomes}


# ---- calls per hour (or day), stacked by outcome ----------------------------------------------
def plot_calls(report: CdrReport, path: str, bucket: str = "auto",
               title: Optional[str] = None) -> str:
    """Stacked bars of calls by outcome per hour or day, the answer rate as a line on a
    second axis, and the totals in a corner. Returns the path written."""
    import matplotlib.dates as mdates
    import numpy as np

    size = choose_bucket(report, bucket)
    buckets = report.buckets(size)
    fig = _figure(12, 5.5)
    ax = fig.add_subplot()
    zone = report.zone
    t = report.total
    if title is None:
        span = ""
        if buckets:
            first, last = buckets[0].start, buckets[-1].start
            span = (first.strftime("%Y-%m-%d") if first.date() == last.date()
                    else f"{first:%Y-%m-%d} to {last:%Y-%m-%d}")
        title = f"Calls per {size} by outcome, {span}"
    ax.set_title(title, loc="left", fontsize=13)
    if not buckets or not t.calls:
        ax.text(0.5, 0.5, "no calls in this period", transform=ax.transAxes, ha="center",
                va="center", fontsize=16, color="#666666")
        ax.set_xticks([])
        ax.set_yticks([])
        return _save(fig, path)

    x = [b.start.replace(tzinfo=None) for b in buckets]      # local wall time
    width = (1 / 24 if size == "hour" else 1.0) * 0.85           # in days, matplotlib's unit
    outcomes = report.outcomes()
    colours = outcome_colours(outcomes)
    bottom = np.zeros(len(buckets))
    for o in outcomes:
        counts = np.array([b.outcomes.get(o, 0) for b in buckets], dtype=float)
        ax.bar(x, counts, width=width, bottom=bottom, color=colours[o], align="edge",
               label=f"{o} ({report.by_outcome[o]})", linewidth=0)
        bottom += counts
    ax.set_ylabel(f"calls per {size}")
    ax.set_ylim(0, max(1.0, bottom.max()) * 1.15)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", color="#dddddd", linewidth=0.8)
    ax.set_axisbelow(True)

    rate_ax = ax.twinx()
    mid = [b.start.replace(tzinfo=None) for b in buckets]
    offset = width / 2
    rates = [100 * b.tally.answer_rate if b.tally.calls else math.nan for b in buckets]
    rate_ax.plot(mdates.date2num(mid) + offset, rates, color="#222222", marker="o",
                 markersize=3, linewidth=1.0, alpha=0.75, label="answer rate (right axis)")
    rate_ax.set_ylim(0, 105)
    rate_ax.set_ylabel("answer rate %")

    loc = mdates.AutoDateLocator(minticks=4, maxticks=14)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    end = buckets[-1].start.replace(tzinfo=None)
    ax.set_xlim(mdates.date2num(x[0]), mdates.date2num(end) + (1 / 24 if size == "hour" else 1))
    ax.set_xlabel(f"local time ({zone})")

    # Legend below the chart and totals beside the title: nothing covers the bars.
    handles, labels = ax.get_legend_handles_labels()
    h2, l2 = rate_ax.get_legend_handles_labels()
    fig.legend(handles + h2, labels + l2, loc="outside lower center", fontsize=9,
               ncols=min(7, len(labels) + 1), frameon=False)
    summary = (f"{t.calls} calls, {t.answered} answered ({_pct(t.answer_rate)}), "
               f"average talk {_secs(t.avg_talk_s)}, average answer {_secs(t.avg_answer_s)}")
    ax.set_title(summary, loc="right", fontsize=10, color="#333333")
    return _save(fig, path)


# ---- staffing sweep -----------------------------------------------------------------------
def plot_acd_sweep(points: Sequence[SweepPoint], path: str, *, calls_per_hour: float,
                   aht_s: float, hours: float, target_sl: Optional[float] = 0.8,
                   patience_s: Optional[float] = None, title: Optional[str] = None) -> str:
    """Two panels against agents: service level (answered within 20 s) and ASA (log scale),
    simulated (mean of the runs, band from lowest to highest run) with Erlang C dashed."""
    if not points:
        raise ValueError("no staffing levels to plot")
    n = [p.agents for p in points]
    runs = len(points[0].runs)
    erl_a = points[0].erlang_c["offered_erlangs"]
    fig = _figure(12, 5.2)
    sl_ax, asa_ax = fig.subplots(1, 2)
    if title is None:
        title = (f"Staffing for {calls_per_hour:g} calls/h, AHT {aht_s:g} s "
                 f"({erl_a:.1f} Erlangs): simulation ({hours:g} h x {runs} "
                 f"{'run' if runs == 1 else 'runs'}) vs Erlang C")
        if patience_s is not None:
            title += f"; callers abandon (mean patience {patience_s:g} s)"
    fig.suptitle(title, fontsize=12)
    erl_label = "Erlang C" if patience_s is None else "Erlang C (no abandons)"
    sim_colour, erl_colour = "#1f77b4", "#d62728"
    sim_label = "simulated, mean" if runs > 1 else "simulated"

    sl = [100 * p.mean("service_level_20s") for p in points]
    sl_lo = [100 * p.low("service_level_20s") for p in points]
    sl_hi = [100 * p.high("service_level_20s") for p in points]
    sl_erl = [100 * p.erlang_c["service_level_20s"] for p in points]
    if runs > 1:
        sl_ax.fill_between(n, sl_lo, sl_hi, color=sim_colour, alpha=0.18,
                           label=f"simulated, range of {runs} runs")
    sl_ax.plot(n, sl, color=sim_colour, marker="o", label=sim_label)
    sl_ax.plot(n, sl_erl, color=erl_colour, linestyle="--", marker="s", markersize=4,
               label=erl_label)
    if target_sl is not None:
        sl_ax.axhline(100 * target_sl, color="#555555", linestyle=":", linewidth=1)
        sl_ax.text(n[0], 100 * target_sl + 1.5, f"target {target_sl:.0%}", fontsize=9,
                   color="#555555")
    sl_ax.set_ylim(0, 102)
    sl_ax.set_ylabel(f"service level: % answered within {SL_THRESHOLD_S:g} s")

    def asa_values(fn):
        return [_finite(fn(p)) for p in points]

    asa = asa_values(lambda p: p.mean("asa_s"))
    asa_lo = asa_values(lambda p: p.low("asa_s"))
    asa_hi = asa_values(lambda p: p.high("asa_s"))
    asa_erl = asa_values(lambda p: p.erlang_c["asa_s"])
    if runs > 1:
        asa_ax.fill_between(n, asa_lo, asa_hi, color=sim_colour, alpha=0.18,
                            label=f"simulated, range of {runs} runs")
    asa_ax.plot(n, asa, color=sim_colour, marker="o", label=sim_label)
    asa_ax.plot(n, asa_erl, color=erl_colour, linestyle="--", marker="s", markersize=4,
                label=erl_label + (", infinite at or below the load"
                                   if any(math.isnan(v) for v in asa_erl) else ""))
    asa_ax.set_yscale("symlog", linthresh=1.0)
    top = max((v for v in asa + asa_hi + asa_erl if not math.isnan(v)), default=1.0)
    asa_ax.set_ylim(0, max(10.0, top) * 40)       # headroom: the legend sits above the curves
    asa_ax.set_ylabel("average speed of answer, s (log scale)")

    from matplotlib.ticker import MaxNLocator
    # Service level rises and ASA falls with agents: these corners stay clear of curves.
    for ax, corner in ((sl_ax, "lower right"), (asa_ax, "upper right")):
        ax.set_xlabel("agents")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(color="#dddddd", linewidth=0.8)
        ax.set_axisbelow(True)
        if n[0] <= erl_a <= n[-1]:
            ax.axvline(erl_a, color="#999999", linewidth=1, linestyle="-.")
        ax.legend(fontsize=9, loc=corner)
    if n[0] <= erl_a <= n[-1]:        # label the load line where no curve runs
        from matplotlib.transforms import blended_transform_factory as blend
        sl_ax.text(erl_a, 0.97, f"offered load {erl_a:.1f} Erl ", fontsize=9,
                   color="#777777", ha="right", va="top",
                   transform=blend(sl_ax.transData, sl_ax.transAxes))
        asa_ax.text(erl_a, 0.03, f" offered load {erl_a:.1f} Erl", fontsize=9,
                    color="#777777", ha="left", va="bottom",
                    transform=blend(asa_ax.transData, asa_ax.transAxes))
    return _save(fig, path)


def _finite(v: float) -> float:
    return v if math.isfinite(v) else math.nan


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1%}"


def _secs(v: Optional[float]) -> str:
    return "-" if v is None else f"{v:.1f} s"
