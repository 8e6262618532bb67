"""ctisim, cardd and ctid as processes, a CTI client in the test: a call from the CO line to
an extension, answered, held, retrieved, transferred by consultation, cleared by the far
end, with the exact CSTA events; a refused request for another agent's device; CDRs in
SQLite; then ctid restarting in the middle of a call that keeps its audio, and the client
recovering by snapshot.

The far side runs in a process of its own: this file, run as a script, serves the
simulator's virtual cards and world (realtime clock) and takes orders for its phones and CO
lines on a small control socket.
"""
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest
import zmq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ANI = "13812345678"


# ---- the far side (run as a script) ----------------------------------------------------------
def sim_main(cardd_config: str, control: str) -> int:
    from drivers import config as config_mod
    from simulators.clock import Clock
    from simulators.ctisim import cards_for, frontend_for
    from simulators.world import World

    cfg = config_mod.load_cardd_config(cardd_config)
    cards = cards_for(cfg)
    world = World(cards, plan=cfg.tone_plan)
    world.populate()
    frontend = frontend_for("sim", cards, cfg)
    frontend.start()
    clock = Clock(cards, world, frontend, mode="realtime")
    sock = zmq.Context.instance().socket(zmq.REP)
    sock.bind(control)

    class Orders:
        def step(self, tick):
            while True:
                try:
                    order = json.loads(sock.recv(zmq.NOBLOCK))
                except zmq.Again:
                    return
                try:
                    if order["op"] == "stop":
                        clock.stop()
                        answer = None
                    else:
                        actor = world.actors[order["channel"]]
                        if order["op"] == "do":
                            answer = getattr(actor, order["action"])(**order.get("args", {}))
                        else:
                            answer = getattr(actor, order["attr"])
                    sock.send_string(json.dumps({"ok": True, "value": answer},
                                                default=lambda o: getattr(o, "value", str(o))))
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
def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


CTID_TOML = """
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

[[trunk_group]]
name = "co"
channels = "node1/5-8"
number = "12345"

[[route]]
match = "8XXX"
to = "ext:"

[[route]]
match = "12345"
to = "ext:8001"
"""


class Stack:
    def __init__(self, d):
        from simulators.ctisim import private_cardd_config
        from simulators.procs import ProcessGroup
        from ctid.cti.auth import generate_keypair
        self.d = d
        os.makedirs(f"{d}/keys")
        self.cardd_toml, _ = private_cardd_config(os.path.join(ROOT, "etc/cardd.toml"), d, "sim")
        generate_keypair(f"{d}/keys", "ctid")
        entries = []
        for name, rest in (("agent1", 'role = "agent"\ndevices = ["ext:8001"]\n'),
                           ("watcher", 'role = "observer"\n')):
            public, _, _ = generate_keypair(f"{d}/keys", name)
            entries.append(f'[clients.{name}]\nkey = "{public}"\n{rest}')
        with open(f"{d}/keys/clients.toml", "w") as f:
            f.write("\n".join(entries))
        self.metrics_port = free_port()
        self.ctid_toml = f"{d}/ctid.toml"
        with open(self.ctid_toml, "w") as f:
            f.write(CTID_TOML.format(d=d, metrics=self.metrics_port))
        self.procs = ProcessGroup(f"{d}/logs")
        self.control = f"ipc://{d}/simctl.sock"
        self.ctx = zmq.Context()
        self.ctl = None
        self.clients = []

    def start(self):
        env = {"OPENBLAS_NUM_THREADS": "1"}
        self.procs.start("ctisim", [sys.executable, os.path.abspath(__file__), self.cardd_toml,
                                    self.control], env={**os.environ, **env}, cwd=self.d)
        self.procs.python_module("cardd", "drivers.cardd", ["--config", self.cardd_toml, "--no-metrics"],
                                 cwd=self.d, extra_env=env)
        self.start_ctid()
        self.ctl = self.ctx.socket(zmq.REQ)
        self.ctl.setsockopt(zmq.RCVTIMEO, 10_000)
        self.ctl.setsockopt(zmq.LINGER, 0)
        self.ctl.connect(self.control)

    def start_ctid(self):
        self.procs.python_module("ctid", "ctid.daemon", ["--config", self.ctid_toml],
                                 cwd=self.d, extra_env={"OPENBLAS_NUM_THREADS": "1"})

    def restart_ctid(self):
        child = self.procs.children["ctid"]
        child.popen.send_signal(signal.SIGTERM)
        child.popen.wait(15)
        self.start_ctid()

    def sim(self, op, channel=None, **kw):
        self.ctl.send_string(json.dumps({"op": op, "channel": channel, **kw}))
        answer = json.loads(self.ctl.recv())
        assert answer["ok"], answer["error"]
        return answer["value"]

    def do(self, channel, action, **args):
        return self.sim("do", channel, action=action, args=args)

    def get(self, channel, attr):
        return self.sim("get", channel, attr=attr)

    def client(self, name, **kw):
        from ctid.cti.client import CtiClient
        d = self.d
        c = CtiClient.from_files(f"ipc://{d}/run/ctid-events.sock", f"ipc://{d}/run/ctid-requests.sock",
                                 f"{d}/keys/ctid.key", f"{d}/keys/{name}.key_secret", ctx=self.ctx, **kw)
        self.clients.append(c)
        return c

    def logs(self):
        return "\n".join(f"--- {c.name}:\n{c.log_tail(25)}" for c in self.procs.children.values())

    def stop(self):
        for c in self.clients:
            c.close()
        if self.ctl is not None:
            try:
                self.sim("stop")
            except Exception:
                pass
            self.ctl.close(linger=0)
        self.procs.stop_all(grace_s=10)
        self.ctx.term()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(str(tmp_path_factory.mktemp("ctid-e2e")))
    s.start()
    yield s
    s.stop()


def wait(cond, what, stack, limit=20.0, step=0.05):
    end = time.monotonic() + limit
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        dead = stack.procs.dead()
        if dead:
            pytest.fail(f"{', '.join(c.name for c in dead)} exited while waiting for {what}\n"
                        f"{stack.logs()}")
        time.sleep(step)
    pytest.fail(f"timed out waiting for {what}\n{stack.logs()}")


class Watch:
    """A subscription polled in the background of the test's waits."""

    def __init__(self, client):
        self.client = client
        self.items = []

    def pump(self):
        self.items += self.client.poll(20)

    def events(self):
        from hotline_proto import cti_pb2
        return [i for i in self.items if isinstance(i, cti_pb2.Event) and i.name != "SystemStatus"]

    def names(self):
        return [e.name for e in self.events()]

    def until(self, name, stack, count=1, limit=20.0, device=None):
        def seen():
            self.pump()
            return sum(1 for e in self.events() if e.name == name and
                       (device is None or e.device == device)) >= count
        wait(seen, f"{count} x {name} {device or ''}; seen {self.names()}", stack, limit, step=0)


def ctictl(stack, *args):
    proc = subprocess.run([sys.executable, "-m", "ctid.ctictl", *args, "--config", stack.ctid_toml,
                           "--key", f"{stack.d}/keys/watcher.key_secret"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def ready(stack, client):
    from hotline_proto import cti_pb2

    def up():
        try:
            r = client.request(cti_pb2.Request(system_status=cti_pb2.SystemStatus()), timeout_s=1.0)
        except Exception:
            return False
        return r.ok and r.status.get("cardd.node1") == "up" and r
    return wait(up, "ctid up with cardd node1 in step", stack, limit=30)


def test_call_hold_retrieve_consult_transfer_far_end_clears(stack):
    from hotline_proto import cti_pb2
    agent = stack.client("agent1")
    ready(stack, agent)
    watch = Watch(agent)
    wait(lambda: watch.pump() or agent.last_heartbeat, "the subscription", stack)

    stack.do(5, "ring", caller_id=ANI)
    watch.until("Delivered", stack)
    wait(lambda: stack.get(1, "ringing") or stack.get(1, "caller_id"), "ext 8001 ringing", stack)
    wait(lambda: stack.get(1, "caller_id") == ANI, "ext 8001 showing the caller's number", stack)
    stack.do(1, "off_hook")
    watch.until("Established", stack, device="ext:8001")
    call_id = watch.events()[0].call_id
    est = [e for e in watch.events() if e.name == "Established"][0]
    assert est.calling == ANI and est.data["ani"] == ANI and est.device == "ext:8001"
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered by cardd", stack)
    stack.do(5, "talk")
    wait(lambda: stack.get(1, "hearing") == "voice", "the caller's voice at ext 8001", stack)

    r = agent.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")))
    assert r.ok, r.error
    r = agent.request(cti_pb2.Request(retrieve_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")))
    assert r.ok, r.error
    r = agent.request(cti_pb2.Request(consultation_call=cti_pb2.ConsultationCall(
        call_id=call_id, device="ext:8001", called="8002")))
    assert r.ok, r.error
    consult = r.call_id
    wait(lambda: stack.get(2, "ringing"), "ext 8002 ringing", stack)
    stack.do(2, "off_hook")
    watch.until("Established", stack, device="ext:8002")
    # the agent may not touch ext 8002: refused, the call goes on
    r = agent.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=consult, device="ext:8002")))
    assert not r.ok and r.error == "refused: hold_call: device ext:8002 is not agent1's to control"
    r = agent.request(cti_pb2.Request(transfer_call=cti_pb2.TransferCall(
        held_call_id=call_id, active_call_id=consult, device="ext:8001")))
    assert r.ok, r.error
    watch.until("Transferred", stack)
    wait(lambda: stack.get(2, "hearing") == "voice", "the caller's voice at ext 8002", stack)
    stack.do(1, "on_hook")                   # the agent puts the handset down

    stack.do(5, "hang_up")                     # the far end: busy tone only, as in China
    watch.until("CallCleared", stack)
    wait(lambda: stack.get(2, "hearing") == "busy", "ext 8002 released (clear tone)", stack)
    stack.do(2, "on_hook")
    evs = watch.events()
    seqs = [e.seq for e in evs]
    assert [(e.name, e.device, e.call_id) for e in evs] == [
        ("Delivered", "ext:8001", call_id),
        ("Established", "ext:8001", call_id),
        ("Held", "ext:8001", call_id),
        ("Retrieved", "ext:8001", call_id),
        ("Held", "ext:8001", call_id),
        ("Originated", "ext:8001", consult),
        ("Delivered", "ext:8002", consult),
        ("Established", "ext:8002", consult),
        ("Transferred", "ext:8001", call_id),
        ("ConnectionCleared", "trunk:node1/5", call_id),
        ("ConnectionCleared", "ext:8002", call_id),
        ("CallCleared", "", call_id)]
    assert evs[8].secondary_call_id == consult
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(e.data["ani"] == ANI for e in evs if e.call_id == call_id)

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    assert 'hotline_ctid_calls_completed_total{outcome="answered"} 1.0' in metrics
    assert 'hotline_ctid_cti_requests_total{request="hold_call",result="refused"} 1.0' in metrics

    from ctid.storage import Store
    store = Store(f"sqlite:///{stack.d}/run/hotline.db")

    def cdr():
        rows = store.cdrs(call_id=call_id)
        return rows[0] if rows else None
    row = wait(cdr, "the CDR in SQLite", stack, limit=10)
    assert row["calling"] == ANI and row["outcome"] == "answered" and row["transfers"]
    legs = [(leg["device"], leg["role"]) for leg in store.legs(call_id)]
    assert legs == [("trunk:node1/5", "caller"), ("ext:8001", "called"),
                    ("ext:8002", "transfer_target")]
    audit = [(a["client"], a["request"], a["allowed"]) for a in store.rows("audit")]
    assert ("agent1", "hold_call", False) in audit and ("agent1", "transfer_call", True) in audit
    store.close()


def test_ctid_restarts_mid_call_the_audio_stays_and_the_client_recovers_by_snapshot(stack):
    from ctid.cti.client import SnapshotTaken
    from hotline_proto import cti_pb2
    watcher = stack.client("watcher")
    ready(stack, watcher)
    watch = Watch(watcher)
    wait(lambda: watch.pump() or watcher.last_heartbeat, "the subscription", stack)
    stack.do(5, "ring", caller_id=ANI)
    wait(lambda: stack.get(1, "ringing"), "ext 8001 ringing", stack)
    stack.do(1, "off_hook")
    watch.until("Established", stack)
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered by cardd", stack)
    stack.do(5, "talk")
    wait(lambda: stack.get(1, "hearing") == "voice", "the caller's voice", stack)
    old_epoch = watcher.stream.epoch

    stack.restart_ctid()
    ready(stack, watcher)

    def snapshot():
        watch.pump()
        return [i for i in watch.items if isinstance(i, SnapshotTaken)]
    (snap,) = wait(snapshot, "a snapshot after the restart", stack)
    assert snap.reason == "epoch" and snap.epoch != old_epoch
    assert any(i.name == "SystemStatus" and i.reason == "epochChanged"
               for i in watch.items if isinstance(i, cti_pb2.Event))
    (call,) = snap.calls
    assert {(c.device, c.state) for c in call.connections} == {
        ("trunk:node1/5", cti_pb2.CS_CONNECTED), ("ext:8001", cti_pb2.CS_CONNECTED)}
    assert call.data["ani"] == ANI and call.data["resynced"] == "cardd"
    assert stack.get(1, "hearing") == "voice"          # cardd's bridge never went away
    # the operator's view of the same, through ctictl
    out = ctictl(stack, "calls")
    assert f"1 calls at seq {snap.seq} (epoch {snap.epoch})" in out
    assert "trunk:node1/5(connected), ext:8001(connected)" in out and f"ani={ANI}" in out
    status = json.loads(ctictl(stack, "status", "--json"))
    assert status["calls"] == "1" and status["cardd.node1"] == "up" and status["security"] == "curve"
    assert status["epoch"] == snap.epoch and status["role"] == "observer"

    before = len(watch.events())
    stack.do(5, "hang_up")
    watch.until("CallCleared", stack)
    wait(lambda: stack.get(1, "hearing") == "busy", "ext 8001 released (clear tone)", stack)
    stack.do(1, "on_hook")
    after = watch.events()[before:]
    assert [(e.name, e.device) for e in after] == [
        ("ConnectionCleared", "trunk:node1/5"), ("ConnectionCleared", "ext:8001"),
        ("CallCleared", "")]
    assert all(e.call_id == call.call_id and e.epoch == snap.epoch for e in after)
    assert after[0].seq == snap.seq + 1
    assert watcher.stats.gaps_unrecovered == 0 and watcher.stats.epoch_changes == 1
