"""ctisim: the hardware simulator's command line.

    ctisim run SCENARIO.yaml [--backend sim|dahdi] [--clock fast|realtime] [--json] [--keep]
                             [--pcap FILE]
        Virtual cards and the world for the scenario's cardd.toml, cardd as a child process
        (its run directory and sockets under a fresh temporary directory, so runs never
        collide), the scenario, then everything stopped. Exit 0 only when every
        expectation held; otherwise an account of what failed (expected vs seen, the event
        log's tail, cardd's log tail). Exit 2 for a scenario or configuration that cannot run.
        --pcap FILE: the PRI spans' D-channel frames, as the exchange saw them (LINUX_LAPD).
    ctisim serve --config cardd.toml [--backend sim|dahdi] [--clock realtime|fast]
        The virtual cards (idle phones and CO lines) for a cardd started separately, at the
        endpoints the configuration names, until interrupted.
    ctisim demo [--seconds N] [--backend sim|dahdi] [--scenario FILE]
        Cards, cardd, ctid (when in the tree; for scenarios without client rules) and the
        demo scenario (etc/ctisim/scenarios/demo-ctid.yaml with ctid, demo.yaml without) in
        real time with a live view; stops after N seconds (or $DEMO_SECONDS; otherwise at
        Ctrl-C) and prints a summary.
    ctisim bench [--ports N] [--seconds S]
        Prints the world's cost per tick with every port busy and the simwire's lockstep
        round trip.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import sys
import tempfile
import time
import tomllib
from typing import Callable

from drivers import config as config_mod
from drivers.backends.base import PortInfo, PortKind, SpanInfo

from .cards import Frontend, VirtualCards
from .carddclient import CarddClient
from .clock import Clock
from .ctid_demo import ctid_available, start_ctid
from .procs import ProcessGroup, on_termination, source_root
from .scenario import (Duration, Failure, Scenario, ScenarioError, ScenarioRun,
                       check_against_cards, load_scenario)
from .actors.pri_co import span_actors
from .actors.r2_co import span_actors as r2_span_actors
from .simwire import SimwireFrontend
from .world import World

DEMO_SCENARIO = os.path.join(source_root(), "etc", "ctisim", "scenarios",
                             "demo-ctid.yaml" if ctid_available() else "demo.yaml")
BACKENDS = ("sim", "dahdi")
FOREVER = Duration(ticks=1 << 40, text="until interrupted")

# Daemons the demo starts besides cardd: callables taking the running Stack (ctid, the
# recorder... add themselves here; each starts its process with stack.procs and may add a
# director to stack.world).
DEMO_DAEMONS: list[Callable[["Stack"], None]] = [start_ctid] if ctid_available() else []


# ---- cardd's configuration, made private to one run -------------------------------------
def dump_toml(data: dict) -> str:
    """TOML for the subset cardd.toml uses: tables, arrays of tables, scalars, scalar lists."""
    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v, ensure_ascii=False)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        raise TypeError(f"cannot write {type(v).__name__} {v!r} as TOML")

    def table(prefix: str, d: dict, out: list[str]) -> None:
        for k, v in d.items():
            if not isinstance(v, dict) and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v)):
                out.append(f"{k} = {value(v)}")
        for k, v in d.items():
            name = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                out.append(f"\n[{name}]")
                table(name, v, out)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for item in v:
                    out.append(f"\n[[{name}]]")
                    table(name, item, out)

    out: list[str] = []
    table("", data, out)
    return "\n".join(out).lstrip("\n") + "\n"


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_cardd_config(source: str | dict, workdir: str, backend: str) -> tuple[str, config_mod.CarddConfig]:
    """Write a copy of cardd's configuration whose run directory, sockets and metrics port
    belong to this run (under `workdir`), for the chosen backend. Returns (path, config)."""
    if isinstance(source, str):
        config_mod.load_cardd_config(source)          # errors name the user's file and line
        with open(source, "rb") as f:
            raw = tomllib.load(f)
    else:
        raw = json.loads(json.dumps(source))          # a deep copy of the inline table
    run = os.path.join(workdir, "run")
    raw.setdefault("node", {})["run_dir"] = run
    old = raw.get("backend", {})
    raw["backend"] = {"type": backend, "timeout_s": old.get("timeout_s", 10.0)}
    if backend == "sim":
        raw["backend"]["endpoint"] = f"ipc://{run}/ctisim-cards.sock"
    else:
        raw["backend"]["emulation"] = f"ipc://{run}/ctisim-dahdi.sock"
    raw["bus"] = {"events": f"ipc://{run}/cardd-events.sock",
                  "commands": f"ipc://{run}/cardd-commands.sock"}
    raw["metrics"] = {"listen": f"127.0.0.1:{free_tcp_port()}"}
    path = os.path.join(workdir, "cardd.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump_toml(raw))
    return path, config_mod.load_cardd_config(path)


def cards_for(cfg: config_mod.CarddConfig) -> VirtualCards:
    """One virtual port per configured channel, same numbers and kinds; spans likewise."""
    spans = [SpanInfo(span=s.span, name=s.name, kind=s.kind) for s in cfg.spans]
    ports = [PortInfo(channel=c.channel, span=c.span, kind=PortKind(c.port)) for c in cfg.channels]
    return VirtualCards(spans, ports, block=cfg.block, law=cfg.law)


def frontend_for(backend: str, cards: VirtualCards, cfg: config_mod.CarddConfig) -> Frontend:
    if backend == "sim":
        return SimwireFrontend(cards, cfg.backend_options.get("endpoint", "ipc://run/ctisim-cards.sock"))
    from .dahdi_emulation import DahdiEmulationFrontend
    endpoint = cfg.backend_options.get("emulation") or "ipc://run/ctisim-dahdi.sock"
    return DahdiEmulationFrontend(cards, endpoint)


# ---- the running stack: cards, world, front-end, cardd, the scenario --------------------
class Stack:
    def __init__(self, scenario: Scenario, backend: str, clock: str, workdir: str,
                 pcap: str | None = None):
        if scenario.cardd is None:
            raise ScenarioError(scenario.path, None, "cardd", "the scenario names no cardd configuration")
        self.scenario = scenario
        self.backend = backend
        self.workdir = workdir
        self.config_path, self.cfg = private_cardd_config(scenario.cardd, workdir, backend)
        self.cards = cards_for(self.cfg)
        check_against_cards(scenario, {c.channel: c.port for c in self.cfg.channels})
        self.world = World(self.cards, plan=self.cfg.tone_plan)
        self.world.populate(scenario.lines)
        self.span_actors = span_actors(self.world, self.cfg, scenario, pcap)   # PRI spans
        self.span_actors.update(r2_span_actors(self.world, self.cfg, scenario))  # R2 spans
        self.frontend = frontend_for(backend, self.cards, self.cfg)
        self.procs = ProcessGroup(os.path.join(workdir, "logs"))
        self.client: CarddClient | None = None
        self.run: ScenarioRun | None = None
        self.clock = Clock(self.cards, self.world, self.frontend, mode=clock)

    def start(self, log: Callable[[str], None] | None = None) -> None:
        self.frontend.start()
        self.procs.python_module("cardd", "drivers.cardd",
                                 ["--config", self.config_path, "--no-metrics"], cwd=self.workdir)
        self.client = CarddClient(self.cfg.events_endpoint, self.cfg.commands_endpoint)
        actors = collections.ChainMap(self.span_actors, self.world.actors)
        self.run = ScenarioRun(self.scenario, actors, self.client,
                               tick_s=self.world.tick_s, log=log)
        self.world.directors.insert(0, self.run)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop the children while the cards keep ticking: cardd, blocked on its next tick,
        sees its stop flag at once and leaves cleanly; what outlives the grace is killed."""
        self.procs.terminate_all()
        if self.procs.alive() and self.frontend.connected():
            try:
                self.clock.run(until=lambda: not self.procs.alive(), max_seconds=grace_s)
            except (KeyboardInterrupt, Exception):     # stopping must not stop halfway
                pass
        self.procs.stop_all(grace_s=1.0)
        if self.client is not None:
            self.client.close()
        self.frontend.close()
        for actor in self.span_actors.values():
            actor.close()


def run_stack(stack: Stack, until: Callable[[], bool], max_seconds: float | None) -> tuple[str, list[Failure]]:
    """Run the clock until `until`, a child's death, max_seconds or a signal.

    Returns (why it stopped, failures of the machinery itself)."""
    died: list = []

    def done() -> bool:
        died[:] = stack.procs.dead()
        return bool(died) or until()

    restore = on_termination(stack.clock.stop)
    try:
        stats = stack.clock.run(until=done, max_seconds=max_seconds)
    finally:
        restore()
    problems = []
    for child in died:
        problems.append(Failure(0, f"{child.name} exited (code {child.returncode})",
                                f"{child.name} running until the end", "its log:\n" + _indent(child.log_tail(20))))
    if stats.stopped_by == "stop":
        problems.append(Failure(0, "interrupted", "the run to finish", "stopped by a signal"))
    if stats.stopped_by == "max_seconds" and not died:
        if not stack.frontend.connected():
            problems.append(Failure(0, "cardd never connected to the virtual cards",
                                    f"a hello on the {stack.backend} backend's socket",
                                    "cardd's log:\n" + _indent(stack.procs.children["cardd"].log_tail(20))))
        elif stack.run is not None and not stack.run.ready:
            problems.append(Failure(0, "cardd never answered a command", "a reply to status",
                                    "cardd's log:\n" + _indent(stack.procs.children["cardd"].log_tail(20))))
    return stats.stopped_by, problems


def _indent(text: str, prefix: str = "      ") -> str:
    return "\n".join(prefix + line for line in text.splitlines())


# ---- ctisim run -------------------------------------------------------------------------
def cmd_run(args) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as e:
        print(f"ctisim: scenario refused: {e}", file=sys.stderr)
        return 2
    workdir = tempfile.mkdtemp(prefix="ctisim-")
    verbose = (lambda text: print(text, file=sys.stderr)) if args.verbose else None
    stack = None
    started = time.monotonic()
    try:
        try:
            stack = Stack(scenario, args.backend, args.clock or scenario.clock, workdir,
                          pcap=args.pcap)
        except (ScenarioError, config_mod.ConfigError, ValueError, KeyError) as e:
            print(f"ctisim: cannot run {args.scenario}: {e}", file=sys.stderr)
            return 2
        stack.start(log=verbose)
        why, problems = run_stack(stack, stack.run.finished, scenario.timeout_s)
        failures = problems + stack.run.evaluate()
        if why == "max_seconds" and not problems and not stack.run.finished():
            failures.insert(0, Failure(0, f"timed out after timeout_s={scenario.timeout_s:g}",
                                       "the scenario to finish", _positions(stack.run)))
        report = make_report(stack, failures, time.monotonic() - started)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(format_report(report))
        return 0 if report["passed"] else 1
    finally:
        if stack is not None:
            stack.stop()
        if args.keep:
            print(f"ctisim: run directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _positions(run: ScenarioRun) -> str:
    out = []
    for r in run.scripts:
        if not r.done:
            out.append(f"script {r.script.name!r} waiting at {r.step.describe()}")
    return "; ".join(out) or "scripts done, expectations still open"


def make_report(stack: Stack, failures: list[Failure], elapsed_s: float) -> dict:
    run, sc = stack.run, stack.scenario
    ticks = stack.clock.stats.ticks
    cardd = stack.procs.children.get("cardd")
    return {
        "scenario": sc.name, "path": sc.path, "passed": not failures,
        "backend": stack.backend, "clock": stack.clock.mode,
        "ticks": ticks, "simulated_s": round(ticks * stack.world.tick_s, 3),
        "elapsed_s": round(elapsed_s, 3), "late_ticks": stack.clock.stats.late,
        "expectations": len(sc.expectations), "events": len(run.events),
        "commands": run.commands_sent,
        "failures": [{"line": f.line, "what": f.what, "expected": f.expected, "seen": f.seen}
                     for f in failures],
        "event_tail": run.tail(15),
        "cardd_log_tail": cardd.log_tail(15) if (failures and cardd) else "",
    }


def format_report(r: dict) -> str:
    head = (f"ctisim run {r['scenario']} ({r['path']}): "
            + ("passed" if r["passed"] else f"FAILED ({len(r['failures'])} problem"
               f"{'s' if len(r['failures']) != 1 else ''})"))
    lines = [head, f"  {r['backend']} backend, {r['clock']} clock: {r['ticks']} ticks "
             f"({r['simulated_s']:g} s simulated) in {r['elapsed_s']:.1f} s; "
             f"{r['events']} cardd events, {r['commands']} commands, "
             f"{r['expectations']} expectations"]
    for f in r["failures"]:
        where = f"line {f['line']}: " if f["line"] else ""
        lines += ["", f"FAIL {where}{f['what']}", f"    expected: {f['expected']}",
                  f"    seen:     {f['seen']}"]
    if not r["passed"]:
        lines += ["", "last cardd events:"] + [f"  {e}" for e in r["event_tail"] or ["(none)"]]
        if r["cardd_log_tail"]:
            lines += ["", "cardd log (tail):", _indent(r["cardd_log_tail"], "  ")]
    return "\n".join(lines)


# ---- ctisim serve -----------------------------------------------------------------------
def cmd_serve(args) -> int:
    try:
        cfg = config_mod.load_cardd_config(args.config)
    except config_mod.ConfigError as e:
        print(f"ctisim: configuration refused: {e}", file=sys.stderr)
        return 2
    backend = args.backend or cfg.backend
    cards = cards_for(cfg)
    world = World(cards, plan=cfg.tone_plan)
    world.populate()
    span_actors(world, cfg)                  # an exchange on every PRI span
    r2_span_actors(world, cfg)               # an R2 office on every R2 span
    frontend = frontend_for(backend, cards, cfg)
    frontend.start()
    clock = Clock(cards, world, frontend, mode=args.clock)
    endpoint = getattr(frontend, "endpoint", "")
    print(f"ctisim: serving {len(cards.ports)} ports on {len(cfg.spans)} spans for the {backend} "
          f"backend at {endpoint} ({args.clock} clock); Ctrl-C stops", flush=True)
    restore = on_termination(clock.stop)
    try:
        stats = clock.run()
    finally:
        restore()
        frontend.close()
    print(f"ctisim: stopped after {stats.ticks} ticks ({stats.late} late)")
    return 0


# ---- ctisim demo ------------------------------------------------------------------------
def demo_seconds(args) -> float | None:
    if args.seconds is not None:
        return args.seconds
    env = os.environ.get("DEMO_SECONDS", "").strip()
    if env:
        try:
            return float(env)
        except ValueError:
            raise SystemExit(f"ctisim: DEMO_SECONDS must be a number of seconds, not {env!r}")
    return None


def cmd_demo(args) -> int:
    from .liveview import LiveView
    seconds = demo_seconds(args)
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as e:
        print(f"ctisim: demo scenario refused: {e}", file=sys.stderr)
        return 2
    scenario.duration = Duration(seconds=seconds, text=f"{seconds:g}s") if seconds else FOREVER
    scenario.expectations = []          # the demo shows; it does not judge
    workdir = tempfile.mkdtemp(prefix="ctisim-demo-")
    stack = None
    try:
        try:
            stack = Stack(scenario, args.backend, "realtime", workdir)
        except (ScenarioError, config_mod.ConfigError, ValueError, KeyError) as e:
            print(f"ctisim: cannot start the demo: {e}", file=sys.stderr)
            return 2
        stack.start()
        try:
            for start_daemon in DEMO_DAEMONS:
                start_daemon(stack)
        except (ValueError, OSError) as e:
            print(f"ctisim: cannot start the demo: {e}", file=sys.stderr)
            return 2
        cti = getattr(stack, "cti", None)            # ctid's CTI client, when ctid runs
        view = LiveView(CarddClient(stack.cfg.events_endpoint, stack.cfg.commands_endpoint),
                        stack.world, title=f"ctisim demo ({scenario.name})", cti=cti)
        stack.world.directors.append(view)
        limit = None if seconds is None else seconds + 30.0
        why, problems = run_stack(stack, stack.run.finished, limit)
        view.client.close()
        if cti is not None:
            cti.close()
        summary = view.summary()
        failures = [f for f in problems if f.what != "interrupted"] + stack.run.failures
        print()
        print(f"ctisim demo: {stack.clock.stats.ticks} ticks in {stack.clock.stats.elapsed_s:.1f} s "
              f"({stack.clock.stats.late} late); calls {summary['calls']}, incoming "
              f"{summary['incoming']}, answered {summary['answered']}, cleared {summary['cleared']}, "
              f"digits {summary['digits']}, events {summary['events']} "
              f"(seq {summary['first_seq']}..{summary['last_seq']}, {summary['seq_gaps']} gaps)")
        if summary["cti"] is not None:
            c = summary["cti"]
            names = ", ".join(f"{n} {k}" for n, k in c["by_name"].items()) or "none"
            print(f"ctid: {c['events']} CSTA events for {c['calls']} calls "
                  f"({c['lost']} lost): {names}")
        gate = getattr(stack, "gate", None)
        if gate is not None and gate.gave_up:
            print(f"  note: ctid never reported its cardd link up (status {gate.status}); "
                  f"the scenario ran anyway")
        for f in failures:
            print(f"  note: {f.what}: {f.seen}")
        return 1 if any("exited" in f.what or "never" in f.what for f in problems) else 0
    finally:
        if stack is not None:
            stack.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# ---- ctisim bench ------------------------------------------------------------------------
def bench_cards(ports: int) -> VirtualCards:
    half = ports // 2
    kinds = [PortKind.FXS] * half + [PortKind.FXO] * (ports - half)
    return VirtualCards([SpanInfo(span=1, name="bench", kind="analog")],
                        [PortInfo(channel=i + 1, span=1, kind=k) for i, k in enumerate(kinds)])


class _IdleWorld:
    def step(self, tick: int) -> None:
        pass


def cmd_bench(args) -> int:
    """The world's cost per tick with every port busy, and the simwire's lockstep rate."""
    import threading

    import numpy as np

    from drivers.backends.sim import SimBackend
    cards = bench_cards(args.ports)
    world = World(cards)
    world.populate()
    for actor in world.actors.values():       # everyone busy: phones listen, lines ring
        if actor.kind == "phone":
            actor.off_hook()
        else:
            actor.ring(caller_id="13812345678")
    silence = np.full((len(cards.ports), cards.block), cards.silence, np.uint8)
    ticks = int(args.seconds / world.tick_s)
    started = time.perf_counter()
    for _ in range(ticks):
        cards.next_tick()
        world.step(cards.tick)
        cards.take_host_events()
        cards.host_tx(silence)
    per_tick = (time.perf_counter() - started) / ticks
    print(f"world: {args.ports} ports ({args.ports // 2} phones off-hook, {args.ports - args.ports // 2} "
          f"CO lines ringing with caller ID), {ticks} ticks: {per_tick * 1e3:.3f} ms per 20 ms tick "
          f"({per_tick / world.tick_s * 100:.1f}% of real time)")

    workdir = tempfile.mkdtemp(prefix="ctisim-bench-")
    cards = bench_cards(args.ports)
    frontend = SimwireFrontend(cards, f"ipc://{workdir}/cards.sock")
    frontend.start()
    clock = Clock(cards, _IdleWorld(), frontend, mode="fast", poll_s=0.01)
    thread = threading.Thread(target=clock.run, kwargs={"max_seconds": args.seconds * 20}, daemon=True)
    thread.start()
    backend = SimBackend(endpoint=f"ipc://{workdir}/cards.sock")
    try:
        backend.open()
        tx = np.full((args.ports, cards.block), cards.silence, np.uint8)
        backend.exchange(tx)
        started = time.perf_counter()
        for _ in range(ticks):
            backend.exchange(tx)
        took = time.perf_counter() - started
    finally:
        clock.stop()
        thread.join(5)
        backend.close()
        frontend.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"simwire: {args.ports} ports, lockstep (fast clock, idle world), {ticks} ticks: "
          f"{took / ticks * 1e3:.3f} ms per tick round trip, {ticks / took:.0f} ticks/s "
          f"({ticks / took * world.tick_s:.1f}x real time)")
    return 0


# ---- entry point ------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ctisim", description="Hotline hardware simulator")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run a scenario against cardd and check its expectations")
    r.add_argument("scenario")
    r.add_argument("--backend", choices=BACKENDS, default="sim")
    r.add_argument("--clock", choices=("fast", "realtime"), default=None,
                   help="override the scenario's clock")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("--keep", action="store_true", help="keep the run directory (logs, config)")
    r.add_argument("--verbose", "-v", action="store_true", help="print steps as they run")
    r.add_argument("--pcap", metavar="FILE", default=None,
                   help="write the PRI spans' D-channel traffic to FILE (pcap, LINUX_LAPD)")
    s = sub.add_parser("serve", help="serve virtual cards for a cardd configuration")
    s.add_argument("--config", required=True)
    s.add_argument("--backend", choices=BACKENDS, default=None)
    s.add_argument("--clock", choices=("realtime", "fast"), default="realtime")
    d = sub.add_parser("demo", help="cards, cardd and demo traffic with a live view")
    d.add_argument("--seconds", type=float, default=None)
    d.add_argument("--backend", choices=BACKENDS, default="sim")
    d.add_argument("--scenario", default=DEMO_SCENARIO)
    b = sub.add_parser("bench", help="measure the world's and the simwire's cost per tick")
    b.add_argument("--ports", type=int, default=240)
    b.add_argument("--seconds", type=float, default=10.0, help="simulated seconds per measurement")
    args = p.parse_args(argv)
    return {"run": cmd_run, "serve": cmd_serve, "demo": cmd_demo, "bench": cmd_bench}[args.command](args)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:           # output piped into `head`: not an error of ours
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
