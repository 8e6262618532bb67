"""The process stack of the CTI end-to-end tests: ctisim (the far side), cardd and ctid as
processes, CTI clients with CURVE keys in the test, and the waits that report a dead
daemon at once.

The far side runs in a process of its own: this file, run as a script, serves the
simulator's virtual cards and world (realtime clock; an exchange on every PRI span of the
cardd configuration, a phone or CO line on every analog port), records what chosen ports
hear, and takes orders on a small control socket."""
import json
import os
import signal
import sys
import time

import pytest
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = {"OPENBLAS_NUM_THREADS": "1"}

# The head of a ctid.toml with CURVE keys and four extensions (8001-8004 on node1/1-4); a
# test adds its trunk groups, routes, queues and agents. Placeholders: d, metrics.
CTID_SECURE_HEAD = """
[ctid]
run_dir = "{d}/run"
timezone = "Asia/Shanghai"

[cti]
events = "ipc://{d}/run/ctid-events.sock"
requests = "ipc://{d}/run/ctid-requests.sock"
keys = "{d}/keys/clients.toml"
server_key = "{d}/keys/ctid.key_secret"
heartbeat_ms = 500

[metrics]
listen = "127.0.0.1:{metrics}"

[database]
url = "sqlite:///{d}/run/hotline.db"

[[cardd]]
node = "node1"
events = "ipc://{d}/run/cardd-events.sock"
commands = "ipc://{d}/run/cardd-commands.sock"

[[extension]]
number = "8001"
channel = "node1/1"

[[extension]]
number = "8002"
channel = "node1/2"

[[extension]]
number = "8003"
channel = "node1/3"

[[extension]]
number = "8004"
channel = "node1/4"
"""


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the far side (run as a script) ----------------------------------------------------------
def tone_dbm0(pcm, hz, rate=8000):
    """The level of the `hz` component of `pcm` (dBm0; a sine of peak 22756 is 0 dBm0)."""
    import numpy as np
    x = np.asarray(pcm, dtype=np.float64)
    if x.size == 0:
        return -120.0
    n = np.arange(x.size)
    amp = 2 * abs(np.dot(x, np.exp(-2j * np.pi * hz * n / rate))) / x.size
    return float(20 * np.log10(max(amp, 1e-9) / 22756.0))


def sim_main(cardd_config: str, control: str) -> int:
    import numpy as np

    from drivers import config as config_mod
    from drivers.media import g711
    from simulators.actors import test_tone
    from simulators.actors.pri_co import attach_pri
    from simulators.clock import Clock
    from simulators.ctisim import cards_for, frontend_for
    from simulators.prompt_match import expected_codes, find_prompt
    from simulators.world import World

    cfg = config_mod.load_cardd_config(cardd_config)
    cards = cards_for(cfg)
    world = World(cards, plan=cfg.tone_plan)
    world.populate()
    offices = attach_pri(world, cfg)
    frontend = frontend_for("sim", cards, cfg)
    frontend.start()
    clock = Clock(cards, world, frontend, mode="realtime")
    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind(control)
    recordings: dict[int, list] = {}
    decode = g711.decode_table(cards.law)

    def measure(channel, hz=0.0, file="", skip_s=0.0, head_s=0.0, last_s=0.0):
        codes = np.concatenate(recordings.get(channel) or [np.zeros(0, np.uint8)])
        if last_s:
            codes = codes[-int(last_s * 8000):]
        pcm = decode[codes].astype(np.float64)
        out = {"seconds": codes.size / 8000,
               "level_dbm0": float(10 * np.log10(max(np.mean(pcm ** 2), 1e-9) / (22756.0 ** 2 / 2)))}
        if hz:
            out["tone_dbm0"] = tone_dbm0(pcm, hz)
        if file:
            # cardd passes a lone prompt's codes unchanged; the spoken part is compared (a
            # late tick of the realtime clock on a loaded machine may garble a block or two)
            want = np.frombuffer(expected_codes(file=file, law=cards.law), np.uint8)
            voiced = np.flatnonzero(np.abs(decode[want].astype(np.int32)) > 300)
            want = want[voiced[0]:voiced[-1] + 1] if voiced.size else want
            want = want[int(skip_s * 8000):]
            if head_s:
                want = want[:int(head_s * 8000)]
            out["prompt_at"] = find_prompt(codes, want.tobytes(), tolerance=0.04)
        return out

    def order(o):
        op = o["op"]
        if op == "stop":
            clock.stop()
            return None
        if op == "pri":
            return getattr(offices[o["span"]], o["action"])(**o.get("args", {}))
        if op == "record":
            for ch in o["channels"]:
                recordings[ch] = []
            return None
        if op == "measure":
            return measure(o["channel"], **o.get("args", {}))
        if op == "save":                       # what a port heard, for a failure report
            np.save(o["path"], np.concatenate(recordings.get(o["channel"]) or [np.zeros(0, np.uint8)]))
            return o["path"]
        if op == "talk":                       # speak into a port: a steady tone
            actor = world.actors[o["channel"]]
            pcm = test_tone(o.get("seconds", 2.0), hz=o["hz"], level_dbm0=o.get("level_dbm0", -10.0))
            world.media.engine.play(actor.row, pcm, tag="talk")
            return None
        actor = world.actors[o["channel"]]
        if op == "do":
            return getattr(actor, o["action"])(**o.get("args", {}))
        if op == "set":
            setattr(actor, o["attr"], o["value"])
            return None
        return getattr(actor, o["attr"])

    class Orders:
        def step(self, tick):
            for ch, chunks in recordings.items():
                chunks.append(cards.from_host(ch).copy())
            while True:
                try:
                    o = json.loads(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    return
                try:
                    answer = order(o)
                    sock.send_string(json.dumps({"ok": True, "value": answer},
                                                default=lambda v: getattr(v, "value", str(v))))
                except Exception as e:           # the test sees the refusal
                    sock.send_string(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))

    world.directors.append(Orders())
    signal.signal(signal.SIGTERM, lambda *_: clock.stop())
    try:
        clock.run()
    finally:
        frontend.close()
        sock.close(linger=0)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    sys.exit(sim_main(sys.argv[1], sys.argv[2]))


# ---- the stack ----------------------------------------------------------------------------------
class Stack:
    """ctisim, cardd and ctid as processes in `d`, from a cardd configuration (the sim backend
    is put in place of its own), a ctid.toml text (placeholders d and metrics) and the CTI
    clients' entries in clients.toml ({name: role lines}); each client gets a CURVE key."""
    ctid_args: tuple = ()

    def __init__(self, d, cardd_source, ctid_toml, clients):
        from ctid.cti.auth import generate_keypair
        from simulators.ctisim import private_cardd_config
        from simulators.procs import ProcessGroup
        self.d = d
        os.makedirs(f"{d}/keys")
        self.cardd_toml, _ = private_cardd_config(cardd_source, d, "sim")
        generate_keypair(f"{d}/keys", "ctid")
        entries = []
        for name, rest in clients.items():
            public, _, _ = generate_keypair(f"{d}/keys", name)
            entries.append(f'[clients.{name}]\nkey = "{public}"\n{rest}')
        with open(f"{d}/keys/clients.toml", "w") as f:
            f.write("\n".join(entries))
        self.metrics_port = free_port()
        self.ctid_toml = f"{d}/ctid.toml"
        with open(self.ctid_toml, "w") as f:
            f.write(ctid_toml.format(d=d, metrics=self.metrics_port))
        self.procs = ProcessGroup(f"{d}/logs")
        self.control = f"ipc://{d}/simctl.sock"
        self.ctx = zmq.Context()
        self.ctl = None
        self.clients = {}
        self.watch = None                   # a test's subscription, pumped by wait()

    def start(self):
        self.procs.start("ctisim", [sys.executable, os.path.abspath(__file__), self.cardd_toml,
                                    self.control], env={**os.environ, **ENV}, cwd=self.d)
        self.procs.python_module("cardd", "drivers.cardd", ["--config", self.cardd_toml, "--no-metrics"],
                                 cwd=self.d, extra_env=ENV)
        self.start_ctid()
        self.ctl = self.ctx.socket(zmq.REQ)
        self.ctl.setsockopt(zmq.RCVTIMEO, 10_000)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.connect(self.control)

    def start_ctid(self):
        self.procs.python_module("ctid", "ctid.daemon", ["--config", self.ctid_toml, *self.ctid_args],
                                 cwd=self.d, extra_env=ENV)

    def restart_ctid(self):
        child = self.procs.children["ctid"]
        child.popen.send_signal(signal.SIGTERM)
        child.popen.wait(15)
        self.start_ctid()

    # ---- the far side's orders -------------------------------------------------------------
    def sim(self, op, **kw):
        self.ctl.send_string(json.dumps({"op": op, **kw}))
        answer = json.loads(self.ctl.recv())
        assert answer["ok"], answer["error"]
        return answer["value"]

    def do(self, channel, action, **args):
        return self.sim("do", channel=channel, action=action, args=args)

    def get(self, channel, attr):
        return self.sim("get", channel=channel, attr=attr)

    # ---- CTI -------------------------------------------------------------------------------
    def client(self, name):
        """The CTI client `name` (one a name, opened on first use, closed by stop())."""
        from ctid.cti.client import CtiClient
        if name not in self.clients:
            d = self.d
            self.clients[name] = CtiClient.from_files(
                f"ipc://{d}/run/ctid-events.sock", f"ipc://{d}/run/ctid-requests.sock",
                f"{d}/keys/ctid.key", f"{d}/keys/{name}.key_secret", ctx=self.ctx)
        return self.clients[name]

    def logs(self):
        return "\n".join(f"--- {c.name}:\n{c.log_tail(30)}" for c in self.procs.children.values())

    def stop(self):
        for c in self.clients.values():
            c.close()
        if self.ctl is not None:
            try:
                self.sim("stop")
            except Exception:
                pass
            self.ctl.close(linger=0)
        self.procs.stop_all(grace_s=10)
        self.ctx.term()


def wait(cond, what, stack, limit=20.0, step=0.05):
    """cond()'s first true value within `limit` s (stack.watch pumped before each try); fails
    the test at once when a daemon exits. `what` may be a callable, asked only on timeout.
    With ACD_E2E_TIMES set it prints how long each wait took."""
    t0 = time.monotonic()
    end = time.monotonic() + limit
    while time.monotonic() < end:
        if stack.watch is not None:
            stack.watch.pump()
        value = cond()
        if value:
            if os.environ.get("ACD_E2E_TIMES"):         # where the run's time goes
                print(f"  {time.monotonic() - t0:6.2f} s  {what if isinstance(what, str) else '...'}")
            return value
        dead = stack.procs.dead()
        if dead:
            pytest.fail(f"{', '.join(c.name for c in dead)} exited while waiting for {what}\n"
                        f"{stack.logs()}")
        time.sleep(step)
    if callable(what):
        what = what()
    pytest.fail(f"timed out waiting for {what}\n{stack.logs()}")


def ready(stack, client, limit=30):
    """Waits until ctid answers `client` with cardd node1 up; the SystemStatus reply."""
    from hotline_proto import cti_pb2

    def up():
        try:
            r = client.request(cti_pb2.Request(system_status=cti_pb2.SystemStatus()), timeout_s=1.0)
        except Exception:
            return False
        return r.ok and r.status.get("cardd.node1") == "up" and r
    return wait(up, "ctid up with cardd node1 in step", stack, limit=limit)
