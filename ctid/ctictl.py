"""ctictl: the operator's command line for ctid.

Subcommands live in a registry, so a new one is one call, no parser code::

    register("status", "show the daemon's state", configure, run)
    register_bench("cti", "CTI event throughput", configure, run)

``configure(parser)`` adds the arguments, ``run(args) -> exit code`` does the work.
``ctictl bench NAME`` dispatches to the benchmark registry the same way.
Now implemented: ``acd-sim`` and ``bench acd``; ``report cdr``, ``report acd-sim-plot`` and
``bench report`` (ctid.reports.cli).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Callable, Optional

Configure = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


@dataclasses.dataclass
class Command:
    name: str
    help: str
    configure: Configure
    run: Run


COMMANDS: dict[str, Command] = {}
BENCHES: dict[str, Command] = {}


def register(name: str, help: str, configure: Configure, run: Run) -> None:
    if name in COMMANDS or name == "bench":
        raise ValueError(f"ctictl command {name!r} is already registered")
    COMMANDS[name] = Command(name, help, configure, run)


def register_bench(name: str, help: str, configure: Configure, run: Run) -> None:
    if name in BENCHES:
        raise ValueError(f"ctictl benchmark {name!r} is already registered")
    BENCHES[name] = Command(name, help, configure, run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctictl", description="Hotline ctid operator tool")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for cmd in sorted(COMMANDS.values(), key=lambda c: c.name):
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    pb = sub.add_parser("bench", help="benchmarks", description="benchmarks")
    bsub = pb.add_subparsers(dest="bench", metavar="NAME", required=True)
    for cmd in sorted(BENCHES.values(), key=lambda c: c.name):
        p = bsub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(p)
        p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args._run(args)
    except ValueError as e:           # AcdError and friends: bad input, said plainly
        print(f"ctictl: error: {e}", file=sys.stderr)
        return 2


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


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, sort_keys=True))
        return
    for k, v in result.items():
        if isinstance(v, dict):
            print(f"{k}:")
            for k2, v2 in v.items():
                print(f"  {k2:<22} {_fmt(v2)}")
        else:
            print(f"{k:<24} {_fmt(v)}")


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


# ---- acd-sim --------------------------------------------------------------------------
def _acd_sim_args(p: argparse.ArgumentParser) -> None:
    from ctid.acd.strategies import STRATEGIES
    p.add_argument("--agents", type=_positive(int), default=20)
    p.add_argument("--calls-per-hour", type=_positive(float), default=360.0)
    p.add_argument("--aht", type=_positive(float), default=180.0,
                   help="mean handle time in seconds (talk + wrap-up)")
    p.add_argument("--hours", type=_positive(float), default=8.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--patience", type=_positive(float), default=None,
                   help="mean caller patience in seconds (exponential); default: infinite")
    p.add_argument("--wrapup-s", type=float, default=0.0)
    p.add_argument("--answer-delay-s", type=float, default=0.0,
                   help="ring time before an agent answers")
    p.add_argument("--warmup-h", type=float, default=0.0,
                   help="hours of traffic before the statistics start")
    p.add_argument("--strategy", choices=STRATEGIES, default="longest_idle")
    p.add_argument("--json", action="store_true")


def _acd_sim(args) -> int:
    from ctid.acd.simulate import simulate
    t0 = time.perf_counter()
    result = simulate(agents=args.agents, calls_per_hour=args.calls_per_hour,
                      aht_s=args.aht, hours=args.hours, seed=args.seed,
                      patience_s=args.patience, wrapup_s=args.wrapup_s,
                      strategy=args.strategy, answer_delay_s=args.answer_delay_s,
                      warmup_h=args.warmup_h)
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    _print(result, args.json)
    return 0


register("acd-sim", "discrete-event simulation of one ACD queue (checks against Erlang C/A)",
         _acd_sim_args, _acd_sim)


# ---- bench acd ------------------------------------------------------------------------
def _bench_acd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--agents", type=_positive(int), default=5000)
    p.add_argument("--queues", type=_positive(int), default=200)
    p.add_argument("--calls", type=_positive(int), default=50000)
    p.add_argument("--occupancy", type=_positive(float), default=1.0,
                   help="offered load as a fraction of the staff's capacity")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")


def _bench_acd(args) -> int:
    from ctid.acd.bench import run
    result = run(agents=args.agents, queues=args.queues, calls=args.calls, seed=args.seed,
                 occupancy=args.occupancy)
    _print(result, args.json)
    return 0


register_bench("acd", "routing decisions per second and latency of a large ACD",
               _bench_acd_args, _bench_acd)


# ---- ctid and its CTI API: status, calls, check-config, keygen, bench events ----------------
from ctid.cti import tools as _cti_tools  # noqa: E402

_cti_tools.register_all(register, register_bench)


# ---- operator reports: report cdr, report acd-sim-plot, bench report ---------------------
from ctid.reports import cli as _reports_cli  # noqa: E402

_reports_cli.register_all(register, register_bench)


# ---- IVR flows --------------------------------------------------------------------------
def _ivr_check(args) -> int:
    from ivr.tools import cmd_check
    return cmd_check(args)


def _ivr_bench(args) -> int:
    from ivr.tools import cmd_bench
    return cmd_bench(args)


def _ivr_args(configure_name):
    def configure(p):
        import ivr.tools
        getattr(ivr.tools, configure_name)(p)
    return configure


register("check-flows", "validate IVR flow files (file:line: node: problem)",
         _ivr_args("configure_check"), _ivr_check)
register_bench("ivr", "IVR interpreter and service throughput", _ivr_args("configure_bench"),
               _ivr_bench)


if __name__ == "__main__":
    raise SystemExit(main())
