"""The IVR stack for end-to-end tests: cardd and ctid as processes on four simulated PRI
spans (etc/cardd-pri4.toml), the far side (virtual cards, the PRI exchanges, callers) in
the test's process on the lockstep (fast) clock, and a CTI client watching ctid's events.

Callers follow scripts: ("hear", TEXT) waits until the prompt TEXT (as the IVR's TTS cache
renders it) has been heard whole, byte for byte; ("keys", DIGITS) keys DTMF; ("wait", S);
("hangup",). A caller whose script is done stays on the line."""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {"OPENBLAS_NUM_THREADS": "1"}
QUEUES = ("gov12345-consult", "gov12345-complaint", "bill170", "fault112")

CTID_TOML = """
[ctid]
run_dir = "{d}/run"
timezone = "Asia/Shanghai"

[cti]
events = "ipc://{d}/run/ctid-events.sock"
requests = "ipc://{d}/run/ctid-requests.sock"

[metrics]
listen = "127.0.0.1:{metrics}"

[database]
url = "sqlite:///{d}/run/hotline.db"

[[cardd]]
node = "node1"
events = "ipc://{d}/run/cardd-events.sock"
commands = "ipc://{d}/run/cardd-commands.sock"

[[trunk_group]]
name = "pri"
channels = ["node1/1-15", "node1/17-31", "node1/32-46", "node1/48-62", "node1/63-77",
            "node1/79-93", "node1/94-108", "node1/110-124"]

[[route]]
match = "12345"
to = "ivr:gov12345"
source = "trunk"

[[route]]
match = "170"
to = "ivr:bill170"
source = "trunk"

[[route]]
match = "112"
to = "ivr:fault112"
source = "trunk"

[acd]
announce = "tones"

{queues}

[[agent]]
id = "1001"

[ivr]
flows = ["{d}/ivr"]
tts_cache = "{tts}"
stats_every_s = 2

[ivr.sources]
billing = "sqlite:///{d}/run/ivr-demo.db"
tickets = "sqlite:///{d}/run/ivr-demo.db"
crm = "http://127.0.0.1:{crm}"

[ivr.pin]
max_failures = 3
lock_minutes = 30
"""


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def prepare_flows(d: str) -> str:
    """The shipped flows, with the 12345 office calendar open around the clock (so the
    menu path does not depend on when the test runs)."""
    dest = os.path.join(d, "ivr")
    shutil.copytree(os.path.join(ROOT, "etc", "ivr"), dest)
    path = os.path.join(dest, "gov12345.yaml")
    text = open(path, encoding="utf-8").read()
    text = re.sub(r'open: \["mon-fri 08:30-17:30"\]', 'open: ["mon-sun 00:00-23:59"]', text)
    text = re.sub(r"holidays: \[[^\]]*\]", "holidays: []", text, flags=re.S)
    open(path, "w", encoding="utf-8").write(text)
    return dest


@dataclasses.dataclass
class Caller:
    span: int
    channel: int
    number: str
    ani: str
    script: list
    step: int = 0
    scan_chunk: int = 0                 # heard audio before this chunk is used up
    wait_ticks: int = 0
    heard: list = dataclasses.field(default_factory=list)    # texts heard, in order
    missed: str = ""

    @property
    def done(self) -> bool:
        return self.step >= len(self.script)


class Callers:
    """A director of the world: runs every caller's script, once per tick."""
    CHECK_EVERY = 5                     # ticks between searches for an awaited prompt

    def __init__(self, stack: "IvrStack"):
        self.stack = stack
        self.callers: list[Caller] = []
        self._expected: dict[str, bytes] = {}      # prompt text -> the codes it puts on the wire

    def step(self, tick: int) -> None:
        for c in self.callers:
            while not c.done and self._advance(c, tick):
                pass

    def _advance(self, c: Caller, tick: int) -> bool:
        kind, *args = c.script[c.step]
        office = self.stack.offices[c.span]
        if kind == "keys":
            office.dtmf(c.channel, args[0])
        elif kind == "wait":
            if c.wait_ticks == 0:
                c.wait_ticks = tick + self.stack.world.ticks(args[0])
                return False
            if tick < c.wait_ticks:
                return False
            c.wait_ticks = 0
        elif kind == "hangup":
            office.hang_up(c.channel)
        elif kind == "hear":
            if tick % self.CHECK_EVERY:
                return False
            at = self._find(c, office, args[0])
            if at is None:
                return False
            c.heard.append(args[0])
        c.step += 1
        return True

    def _want(self, text: str) -> bytes:
        want = self._expected.get(text)
        if want is None:
            from simulators.prompt_match import expected_codes
            want = expected_codes(text=text, tts_cache=self.stack.tts, law=self.stack.law)
            self._expected[text] = want
        return want

    def _find(self, c: Caller, office, text: str):
        from simulators.prompt_match import find_prompt
        want = self._want(text)
        bearer = office._bearer(c.channel, "hear")
        chunks = bearer._heard
        need = len(want) // 160 + 2 * self.CHECK_EVERY + 2
        first = max(c.scan_chunk, len(chunks) - need)
        if len(chunks) - first < len(want) // 160:
            return None
        window = np.concatenate(chunks[first:])
        # Exact: on the lockstep clock every block arrives, so a prompt is heard byte for
        # byte. (The tolerant search tries anchors at every place they match, which on a
        # silent window costs a comparison per byte: too slow for 120 callers.)
        at = find_prompt(window, want, tolerance=0)
        if at < 0:
            return None
        c.scan_chunk = first + (at + len(want)) // 160
        return at


class IvrStack:
    def __init__(self, d: str, tts: str):
        from drivers import config as config_mod
        from simulators.actors.pri_co import attach_pri
        from simulators.clock import Clock
        from simulators.ctisim import cards_for, frontend_for, private_cardd_config
        from simulators.procs import ProcessGroup
        from simulators.world import World

        self.d, self.tts = d, tts
        os.makedirs(os.path.join(d, "run"), exist_ok=True)
        prepare_flows(d)
        from ivr.lookup import run_script
        run_script(f"sqlite:///{d}/run/ivr-demo.db", os.path.join(ROOT, "etc", "ivr", "demo.sql"))
        queues = "\n".join(f'[[queue]]\nname = "{q}"\nmembers = ["1001"]\n' for q in QUEUES)
        self.ctid_toml = os.path.join(d, "ctid.toml")
        with open(self.ctid_toml, "w", encoding="utf-8") as f:
            f.write(CTID_TOML.format(d=d, tts=tts, metrics=free_port(), crm=free_port(),
                                     queues=queues))
        self.cardd_toml, cfg = private_cardd_config(os.path.join(ROOT, "etc", "cardd-pri4.toml"),
                                                    d, "sim")
        self.law = cfg.law
        self.cards = cards_for(cfg)
        self.world = World(self.cards, plan=cfg.tone_plan)
        self.offices = attach_pri(self.world, cfg)
        self.callers = Callers(self)
        self.world.directors.append(self.callers)
        self.frontend = frontend_for("sim", self.cards, cfg)
        # Lockstep: every block cardd sends arrives, so prompts can be matched byte for byte
        # however loaded the machine is (on the realtime clock a late tick loses a block).
        self.clock = Clock(self.cards, self.world, self.frontend, mode="fast")
        self.procs = ProcessGroup(os.path.join(d, "logs"))
        self.client = None
        self.events: list = []
        self.cfg = cfg

    # ---- start and stop --------------------------------------------------------------------
    def start(self) -> "IvrStack":
        from ctid.cti.client import CtiClient
        self.frontend.start()
        self.procs.python_module("cardd", "drivers.cardd", ["--config", self.cardd_toml,
                                 "--no-metrics"], cwd=self.d, extra_env=ENV)
        self.procs.python_module("ctid", "ctid.daemon", ["--config", self.ctid_toml,
                                 "--no-metrics"], cwd=self.d, extra_env=ENV)
        self.run_until(lambda: self.frontend.connected()
                       and all(o.co.dchannel_up for o in self.offices.values()),
                       120, "cardd up with four D-channels")
        self.client = CtiClient(f"ipc://{self.d}/run/ctid-events.sock",
                                f"ipc://{self.d}/run/ctid-requests.sock")
        self.run_until(lambda: os.path.exists(f"{self.d}/run/ctid-events.sock")
                       and self._cardd_linked(), 120, "ctid up")
        # A live CTI subscription starts at its first heartbeat: events published before it
        # are not this client's, so no call may be placed until it has seen one.
        self.run_until(lambda: self.client.last_heartbeat > 0, 30, "the CTI subscription live")
        return self

    def _cardd_linked(self) -> bool:
        from hotline_proto import cti_pb2
        self.pump()
        try:
            reply = self.client.request(cti_pb2.Request(snapshot_device=cti_pb2.DeviceRef(
                device="trunk:node1/1")), timeout_s=0.5)
        except Exception:
            return False
        return bool(reply.devices) and reply.devices[0].in_service

    def close(self) -> None:
        try:
            self.procs.terminate_all()
            self.clock.run(until=lambda: not self.procs.alive(), max_seconds=10)
        finally:
            self.procs.__exit__(None, None, None)
            if self.client is not None:
                self.client.close()
            self.frontend.close()

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{c.log_tail(30)}" for name, c in self.procs.children.items())

    # ---- running ---------------------------------------------------------------------------
    def pump(self) -> None:
        from hotline_proto import cti_pb2
        if self.client is None:
            return
        for item in self.client.poll(timeout_ms=0):
            if isinstance(item, cti_pb2.Event):
                self.events.append(item)

    def run_until(self, cond, max_s: float, what: str) -> None:
        n = [0]

        def done():
            n[0] += 1
            if n[0] % 5 == 0:
                self.pump()
                if len(self.procs.alive()) < len(self.procs.children):
                    return True             # a daemon died: report it now
            return cond()
        self.clock.run(until=done, max_seconds=max_s)
        self.pump()
        assert cond(), f"{what}: not within {max_s} s\n{self.describe()}\n{self.logs()}"

    def describe(self) -> str:
        lines = [f"caller {c.channel} ({c.ani}): step {c.step}/{len(c.script)} "
                 f"{c.script[c.step] if not c.done else 'done'}; heard {c.heard}"
                 for c in self.callers.callers[:10]]
        return "\n".join(lines + [o.describe() for o in self.offices.values()])

    # ---- callers ---------------------------------------------------------------------------
    def call(self, channel: int, number: str, ani: str, script: list) -> Caller:
        span = next(s for s, o in self.offices.items() if channel in o.timeslot_of)
        office = self.offices[span]
        office.listen(channel)
        office.call(number, ani, channel=channel)
        c = Caller(span, channel, number, ani, list(script))
        self.callers.callers.append(c)
        return c

    def events_for(self, ani: str, name: str | None = None) -> list:
        return [e for e in self.events if e.calling == ani and (name is None or e.name == name)]

    def ended(self, ani: str) -> bool:
        return bool(self.events_for(ani, "Queued") or self.events_for(ani, "CallCleared"))


if __name__ == "__main__":
    sys.exit("a helper module of the IVR end-to-end tests")
