"""ctictl report ...: operator reports from ctid's database, and staffing charts.

    ctictl report cdr --since 2026-03-01 --until 2026-03-31 --xlsx march.xlsx --plot march.png
    ctictl report cdr --db sqlite:///run/hotline.db --since yesterday --csv calls.csv
    ctictl report acd-sim-plot --agents-range 15-25 --calls-per-hour 360 --plot staffing.png
    ctictl bench report --calls 50000

Registered into ctictl's registry by register_all(); matplotlib and openpyxl are imported
only by the commands that draw or write workbooks.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import zoneinfo
from typing import Optional

DEFAULT_CONFIG = "etc/ctid.toml"
DEFAULT_ZONE = "Asia/Shanghai"


def _err(msg: str) -> int:
    print(f"ctictl: error: {msg}", file=sys.stderr)
    return 2


# ---- dates on the command line -------------------------------------------------------------
def parse_when(text: str, tz: dt.tzinfo, *, end: bool, today: dt.date) -> float:
    """A report bound as epoch seconds. "2026-03-01", "2026-03-01 08:30", ISO 8601 (with
    an offset or local to `tz`), "today", "yesterday". A date alone means its midnight;
    as the end (`end`) it means the whole day: the next midnight."""
    s = text.strip()
    words = {"today": today, "yesterday": today - dt.timedelta(days=1)}
    day: Optional[dt.date] = words.get(s.lower())
    if day is None and len(s) == 10:
        try:
            day = dt.date.fromisoformat(s)
        except ValueError:
            day = None
    if day is not None:
        if end:
            day += dt.timedelta(days=1)
        return dt.datetime.combine(day, dt.time(), tz).timestamp()
    try:
        when = dt.datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f"{text!r} is not a date or time: use YYYY-MM-DD, "
                         f"'YYYY-MM-DD HH:MM', today or yesterday") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=tz)
    return when.timestamp()


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name, e.g. Asia/Shanghai)") \
            from None


# ---- report cdr ------------------------------------------------------------------------------
def _cdr_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"ctid.toml: the database, the zone and device names "
                                    f"(default: {DEFAULT_CONFIG} unless --db is given)")
    p.add_argument("--db", help="database URL, e.g. sqlite:///run/hotline.db (relative "
                                "paths are relative to the current directory)")
    p.add_argument("--tz", help="the report's zone (default: the config's, else "
                                f"{DEFAULT_ZONE})")
    p.add_argument("--since", default="today",
                   help="first day or time (default: today); YYYY-MM-DD, 'YYYY-MM-DD HH:MM', "
                        "today, yesterday")
    p.add_argument("--until", help="last day (included whole) or end time (excluded); "
                                   "default: open")
    p.add_argument("--csv", metavar="FILE", help="write the calls, one line each")
    p.add_argument("--xlsx", metavar="FILE",
                   help="write a workbook: summary, per hour, per day, trunks, extensions, "
                        "calls, legs")
    p.add_argument("--plot", metavar="FILE.png", help="draw calls per hour (or day) by outcome")
    p.add_argument("--bucket", choices=("auto", "hour", "day"), default="auto",
                   help="the chart's bars (auto: hours up to a week, then days)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _open_store(args):
    """(Store, zone, device names) from --db/--config; ValueError naming what is wrong."""
    from ctid.config import ConfigError, load_ctid_config
    from ctid.storage import Store

    cfg = None
    config = args.config or (None if args.db else DEFAULT_CONFIG)
    if config:
        try:
            cfg = load_ctid_config(config)
        except ConfigError as e:
            raise ValueError(f"configuration refused:\n{e}") from None
    url = args.db or cfg.database.url
    tz = _zone(args.tz) if args.tz else (cfg.tz if cfg else _zone(DEFAULT_ZONE))
    names = {}
    if cfg is not None:
        for d in cfg.devices():
            label = d.group if d.id.startswith("trunk:") else d.name
            if label:
                names[d.id] = label
    _check_sqlite_file(url)          # before Store(), which would make its directory
    store = Store(url, tz=tz, name="report")
    try:
        revision = store.revision()
    except Exception as e:           # noqa: BLE001 - any failure: cannot read it, say why
        store.engine.dispose()
        raise ValueError(f"cannot read the database {url!r}: "
                         f"{str(getattr(e, 'orig', e)).strip()[:300]}") from None
    if revision is None:
        store.engine.dispose()
        raise ValueError(f"the database {url!r} has no ctid tables (ctid creates them "
                         f"when it starts)")
    return store, tz, names


def _check_sqlite_file(url: str) -> None:
    """A report reads an existing database; it must not create an empty one."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError
    try:
        u = make_url(url)
    except ArgumentError:
        return                      # Store names the problem
    if u.get_backend_name() != "sqlite":
        return
    db = u.database or ""
    if db in ("", ":memory:") or not os.path.isfile(db):
        raise ValueError(f"no database file {db or '(none)'} (from {url!r}; relative paths "
                         f"are relative to the current directory, here {os.getcwd()})")


def _check_outputs(args) -> None:
    """Bad output paths are refused before any work, not after the first file."""
    for flag, path in (("--csv", args.csv), ("--xlsx", args.xlsx), ("--plot", args.plot)):
        if not path:
            continue
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise ValueError(f"{flag} {path}: no directory {parent}")
        if os.path.isdir(path):
            raise ValueError(f"{flag} {path}: it is a directory")
    if args.plot and not args.plot.lower().endswith(".png"):
        raise ValueError(f"--plot {args.plot!r}: the chart is a PNG, name it NAME.png")


def cmd_cdr(args) -> int:
    from . import export
    from .cdr_report import format_text, summarize
    from .progress import Progress

    _check_outputs(args)
    store, tz, names = _open_store(args)
    try:
        today = dt.datetime.now(tz).date()
        since = parse_when(args.since, tz, end=False, today=today) if args.since else None
        until = parse_when(args.until, tz, end=True, today=today) if args.until else None
        if since is not None and until is not None and until <= since:
            raise ValueError(f"--until ({args.until}) must be after --since ({args.since})")
        cdrs = store.cdrs(since, until)
    finally:
        store.engine.dispose()
    report = summarize(cdrs, tz, since, until)
    if args.csv:
        n = export.write_csv(args.csv, Progress("csv", len(cdrs), unit="calls").iterate(cdrs),
                             tz)
        print(f"{args.csv}: {n} calls", file=sys.stderr)
    if args.xlsx:
        n = export.write_xlsx(args.xlsx, report,
                              Progress("xlsx", len(cdrs), unit="calls").iterate(cdrs), names)
        print(f"{args.xlsx}: {n} calls with summary sheets", file=sys.stderr)
    if args.plot:
        from .plot import plot_calls
        plot_calls(report, args.plot, bucket=args.bucket)
        print(f"{args.plot}: chart of {report.total.calls} calls", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        sys.stdout.write(format_text(report, names))
    return 0


# ---- report acd-sim-plot -----------------------------------------------------------------
def _positive(kind):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
        return v
    return parse


def _fraction(text):
    try:
        v = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a fraction: {text!r}") from None
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (or a percentage), got {text}")
    return v


def _sweep_args(p: argparse.ArgumentParser) -> None:
    from ctid.acd.strategies import STRATEGIES
    p.add_argument("--agents-range", default="15-25",
                   help="staffing levels: N-M, N-M/STEP or N,M,... (default: %(default)s)")
    p.add_argument("--plot", metavar="FILE.png", required=True)
    p.add_argument("--runs", type=_positive(int), default=3,
                   help="simulations per level, seeds SEED.. (default: %(default)s)")
    p.add_argument("--calls-per-hour", type=_positive(float), default=360.0)
    p.add_argument("--aht", type=_positive(float), default=180.0,
                   help="mean handle time in seconds (talk + wrap-up)")
    p.add_argument("--hours", type=_positive(float), default=8.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--patience", type=_positive(float), default=None,
                   help="mean caller patience in seconds; default: callers never hang up")
    p.add_argument("--wrapup-s", type=float, default=0.0)
    p.add_argument("--answer-delay-s", type=float, default=0.0)
    p.add_argument("--warmup-h", type=float, default=0.0)
    p.add_argument("--strategy", choices=STRATEGIES, default="longest_idle")
    p.add_argument("--target-sl", type=_fraction, default=0.8,
                   help="service level target drawn on the chart (default: 0.8 = 80%%)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")


def cmd_sweep(args) -> int:
    from .acd_sweep import parse_agents, smallest_meeting, sweep
    from .plot import plot_acd_sweep
    from .progress import Progress

    levels = parse_agents(args.agents_range)
    if not args.plot.lower().endswith(".png"):        # before minutes of simulation
        raise ValueError(f"--plot {args.plot!r}: the chart is a PNG, name it NAME.png")
    parent = os.path.dirname(os.path.abspath(args.plot))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write {args.plot}: no directory {parent}")
    sim = dict(patience_s=args.patience, wrapup_s=args.wrapup_s, strategy=args.strategy,
               answer_delay_s=args.answer_delay_s, warmup_h=args.warmup_h)
    with Progress("acd-sim", total=len(levels) * args.runs, unit="runs") as progress:
        points = sweep(levels, runs=args.runs, seed=args.seed,
                       calls_per_hour=args.calls_per_hour, aht_s=args.aht, hours=args.hours,
                       on_run=lambda *_: progress.advance(), **sim)
    plot_acd_sweep(points, args.plot, calls_per_hour=args.calls_per_hour, aht_s=args.aht,
                   hours=args.hours, target_sl=args.target_sl, patience_s=args.patience)
    best = smallest_meeting(points, args.target_sl)
    if args.json:
        print(json.dumps({"levels": [p.to_dict() for p in points],
                          "target_sl": args.target_sl, "fewest_agents": best}, indent=2))
    else:
        print(format_sweep(points, args.target_sl, best))
    print(f"{args.plot}: chart of {len(levels)} staffing levels", file=sys.stderr)
    return 0


def format_sweep(points, target_sl: float, best: dict) -> str:
    from .acd_sweep import SL_THRESHOLD_S
    lines = [f"{'agents':>6} {'SL20 sim':>9} {'SL20 erl':>9} {'ASA sim':>9} {'ASA erl':>9} "
             f"{'abandon':>8} {'occupancy':>9}"]
    for p in points:
        e = p.erlang_c
        asa_e = "inf" if e["asa_s"] == float("inf") else f"{e['asa_s']:.1f}"
        lines.append(f"{p.agents:>6} {p.mean('service_level_20s'):>9.1%} "
                     f"{e['service_level_20s']:>9.1%} {p.mean('asa_s'):>9.1f} {asa_e:>9} "
                     f"{p.mean('abandon_rate'):>8.1%} {p.mean('occupancy'):>9.1%}")

    def said(v):
        return "none in this range" if v is None else str(v)
    lines.append(f"fewest agents for {target_sl:.0%} in {SL_THRESHOLD_S:g} s: "
                 f"simulated {said(best['simulated'])}, Erlang C {said(best['erlang_c'])}")
    return "\n".join(lines)


# ---- bench report ------------------------------------------------------------------------
def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", type=_positive(int), default=50000)
    p.add_argument("--days", type=_positive(int), default=7)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")


def cmd_bench(args) -> int:
    from .bench import run
    result = run(calls=args.calls, days=args.days, seed=args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for k, v in result.items():
            print(f"{k:<24} {v}")
    return 0


# ---- registration ------------------------------------------------------------------------
REPORTS = {
    "cdr": ("call summaries from the CDRs, with CSV/XLSX export and a chart", _cdr_args,
            cmd_cdr),
    "acd-sim-plot": ("simulate a range of staffing levels and chart service level and ASA "
                     "against Erlang C", _sweep_args, cmd_sweep),
}


def _report_args(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="report", metavar="REPORT", required=True)
    for name, (help_, configure, run) in REPORTS.items():
        q = sub.add_parser(name, help=help_, description=help_)
        configure(q)
        q.set_defaults(_report_run=run)


def cmd_report(args) -> int:
    try:
        return args._report_run(args)
    except BrokenPipeError:            # `ctictl report cdr | head`: not an error
        # Python flushes stdout again at exit; point it at nothing so that is quiet too.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


def register_all(register, register_bench) -> None:
    register("report", "operator reports: cdr, acd-sim-plot", _report_args, cmd_report)
    register_bench("report", "CDR summary, CSV/XLSX export and chart speed",
                   _bench_args, cmd_bench)
