"""IVR operator tools: `python -m ivr COMMAND` (also `ctictl check-flows`, `ctictl bench ivr`).

    check PATH...            validate flow files/folders (file:line: node: problem)
    say KIND VALUE           Mandarin words for digits|number|money|date|time|datetime
    prewarm --cache DIR PATH render every static prompt of the flows into the TTS cache
    demo-db URL              create the demo billing/ticket tables (etc/ivr/demo.sql)
    bench [--sessions N]     interpreter and service throughput figures
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEMO_SQL = HERE.parent / "etc" / "ivr" / "demo.sql"
DEFAULT_FLOWS = HERE.parent / "etc" / "ivr"


def cmd_check(args) -> int:
    from .validate import check_paths
    errors = check_paths(args.paths)
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        print(f"{len(errors)} problem(s)", file=sys.stderr)
        return 2
    from .flow import flow_files
    print(f"ok: {len(flow_files(args.paths))} flow file(s)")
    return 0


def cmd_say(args) -> int:
    from .speech import SAYERS, SpeechError
    try:
        spoken = SAYERS[args.kind](args.value)
    except SpeechError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(spoken.text)
    print(" ".join(spoken.fragments))
    return 0


def cmd_prewarm(args) -> int:
    from .prompts import PromptResolver
    from .tts import Tts, TtsError
    from .validate import load_checked
    flows = load_checked(args.paths)
    tts = Tts(args.cache)
    t0 = time.perf_counter()
    try:
        n = PromptResolver(tts).prewarm(flows)
    except TtsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{n} texts checked, {tts.renders} rendered in {time.perf_counter() - t0:.2f} s "
          f"into {args.cache}")
    return 0


def cmd_demo_db(args) -> int:
    from .lookup import run_script
    if args.url.startswith("sqlite:///"):
        Path(args.url[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    run_script(args.url, str(DEMO_SQL))
    print(f"demo tables ready in {args.url}")
    return 0


# ---- benchmark ----------------------------------------------------------------------------
def _pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def bench_interpreter(calls: int) -> dict:
    """Walk bill170 `calls` times on a synthetic clock: pure interpreter cost."""
    from .interpreter import CallInfo, IvrSession
    from .lookup import LookupResult
    from .validate import load_checked
    flows = load_checked([DEFAULT_FLOWS])
    row = {"pin_sha256": "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92",
           "balance": "12.30", "due_date": "2026-12-15"}
    per_event, events = [], 0
    t0 = time.perf_counter()
    for i in range(calls):
        s = IvrSession(flows, "bill170", CallInfo(f"C{i}", "13800138000"))
        t = 1000.0
        script = [("start",), ("done",), ("done",)] + [("digit", d) for d in "13800138000"] + \
            [("done",)] + [("digit", d) for d in "123456"] + [("lookup",), ("done",), ("done",),
                                                             ("digit", "9"), ("done",)]
        for step in script:
            t += 0.2                       # the look-up answers before its wait prompt
            a = time.perf_counter()
            if step[0] == "start":
                s.start(t)
            elif step[0] == "done":
                s.on_prompt_done(False, "", t)
            elif step[0] == "digit":
                s.on_digit(step[1], t)
            else:
                s.on_lookup_result(f"C{i}:1", LookupResult(True, row), t)
            per_event.append(time.perf_counter() - a)
            events += 1
        assert s.outcome == "hangup", s.outcome
    wall = time.perf_counter() - t0
    return {"calls": calls, "events": events, "calls_per_s": round(calls / wall, 1),
            "events_per_s": round(events / wall), "event_us_p50": round(_pct(per_event, 0.5) * 1e6, 1),
            "event_us_p99": round(_pct(per_event, 0.99) * 1e6, 1)}


def bench_service(sessions: int, cache: str | None) -> dict:
    """`sessions` calls at once in IvrService on bill170, with real TTS files and a real
    SQLite look-up; cardd's events are answered at once. Reports the shell's cost per tick."""
    from hotline_proto import cardd_pb2

    from .lookup import LookupService, run_script
    from .prompts import PromptResolver
    from .service import CallAction, ChannelCommand, IvrService
    from .tts import Tts
    from .validate import load_checked
    flows = load_checked([DEFAULT_FLOWS / "bill170.yaml"])
    tmp = tempfile.mkdtemp(prefix="ivr-bench-")
    db = f"sqlite:///{tmp}/demo.db"
    run_script(db, str(DEMO_SQL))
    tts = Tts(cache or os.path.join(tmp, "tts"))
    t0 = time.perf_counter()
    PromptResolver(tts).prewarm(flows)
    tts.render("十二元三角")
    tts.render("二零二六年十二月十五日")
    prewarm_s = time.perf_counter() - t0
    svc = IvrService(flows, PromptResolver(tts), lookups=LookupService(overrides={"billing": db}))

    def ev(ch, **kind):
        e = cardd_pb2.ChannelEvent(channel=ch)
        (f, m), = kind.items()
        getattr(e, f).CopyFrom(m)
        return e

    # each channel's script: what the caller does after each PlayPrompt it gets
    keys = {ch: list("13800138000") for ch in range(1, sessions + 1)}
    stage = {ch: 0 for ch in keys}
    now = 1000.0
    pending: list = []
    tick_costs, commands, ended, n_events = [], 0, 0, 0
    for ch in keys:
        pending += svc.start(f"C{ch}", "bill170", "node1", ch, ani="13800138000", now=now)
    t_start = time.perf_counter()
    while ended < sessions and time.perf_counter() - t_start < 120:
        now += 0.1
        inputs = []
        for eff in pending:
            if isinstance(eff, ChannelCommand) and eff.command.WhichOneof("kind") == "play_prompt":
                commands += 1
                ch = eff.command.channel
                stage[ch] += 1
                inputs.append(ev(ch, prompt_done=cardd_pb2.PromptDone()))
                if stage[ch] == 2:
                    inputs += [ev(ch, digit=cardd_pb2.Digit(digit=d)) for d in keys[ch]]
                elif stage[ch] == 3:
                    inputs += [ev(ch, digit=cardd_pb2.Digit(digit=d)) for d in "123456"]
                elif stage[ch] == 5:
                    inputs.append(ev(ch, digit=cardd_pb2.Digit(digit="9")))
            elif isinstance(eff, CallAction) and type(eff.action).__name__ == "End":
                ended += 1
        a = time.perf_counter()
        pending = []
        n_events += len(inputs)
        for e in inputs:
            pending += svc.on_channel_event("node1", e, now)
        pending += svc.tick(now)
        tick_costs.append(time.perf_counter() - a)
        if not inputs and not pending:
            time.sleep(0.001)               # waiting on look-up threads
    wall = time.perf_counter() - t_start
    svc.close()
    busy = [c for c in tick_costs if c > 0]
    return {"sessions": sessions, "completed": ended, "cardd_events": n_events,
            "play_commands": commands,
            "event_us_mean": round(sum(busy) / max(1, n_events) * 1e6, 1),
            "wall_s": round(wall, 3), "tick_ms_p50": round(_pct(busy, 0.5) * 1e3, 3),
            "tick_ms_p99": round(_pct(busy, 0.99) * 1e3, 3),
            "tick_ms_max": round(max(busy) * 1e3, 3) if busy else 0.0,
            "prewarm_s": round(prewarm_s, 2), "tts_renders": tts.renders}


def cmd_bench(args) -> int:
    result = {"interpreter": bench_interpreter(args.calls),
              "service": bench_service(args.sessions, args.cache)}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for section, figures in result.items():
            print(f"{section}:")
            for k, v in figures.items():
                print(f"  {k:<16} {v}")
    return 0


def configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calls", type=int, default=2000, help="interpreter walks of bill170")
    p.add_argument("--sessions", type=int, default=120, help="concurrent calls in the service")
    p.add_argument("--cache", default=None, help="TTS cache folder (default: a fresh one)")
    p.add_argument("--json", action="store_true")


def configure_check(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=[str(DEFAULT_FLOWS)],
                   help="flow files or folders (default: etc/ivr)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ivr", description="Hotline IVR tools")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check", help="validate flows")
    configure_check(c)
    c.set_defaults(run=cmd_check)
    c = sub.add_parser("say", help="Mandarin words for a value")
    c.add_argument("kind", choices=("digits", "number", "money", "date", "time", "datetime"))
    c.add_argument("value")
    c.set_defaults(run=cmd_say)
    c = sub.add_parser("prewarm", help="render the flows' prompts into the TTS cache")
    c.add_argument("--cache", required=True)
    c.add_argument("paths", nargs="*", default=[str(DEFAULT_FLOWS)])
    c.set_defaults(run=cmd_prewarm)
    c = sub.add_parser("demo-db", help="create the demo tables")
    c.add_argument("url")
    c.set_defaults(run=cmd_demo_db)
    c = sub.add_parser("bench", help="throughput figures")
    configure_bench(c)
    c.set_defaults(run=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
