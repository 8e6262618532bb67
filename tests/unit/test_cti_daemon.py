"""The ctid loop in process: a cardd stand-in made of cardd's own bus (PUB for events, ROUTER
for commands), the daemon stepping, a CTI client subscribing. Real sockets throughout."""
import time

import pytest
import zmq

from ctid.config import parse_ctid_config
from ctid.cti.client import CtiClient
from ctid.daemon import Ctid
from drivers.bus import CommandServer, EventPublisher
from hotline_proto import cardd_pb2 as S
from hotline_proto import cti_pb2

CONFIG = """
[ctid]
run_dir = "{d}/run"
timezone = "UTC"

[cti]
events = "ipc://{d}/ctid-events.sock"
requests = "ipc://{d}/ctid-requests.sock"
heartbeat_ms = 200

[database]
url = "sqlite:///{d}/hotline.db"

[[cardd]]
node = "node1"
events = "ipc://{d}/cardd-events.sock"
commands = "ipc://{d}/cardd-commands.sock"

[[extension]]
number = "8001"
channel = "node1/1"

[[extension]]
number = "8002"
channel = "node1/2"

[[trunk_group]]
name = "co"
channels = "node1/5-6"
number = "12345"

[[route]]
match = "8XXX"
to = "ext:"

[[route]]
match = "12345"
to = "ext:8001"
"""


class FakeCardd:
    """cardd's wire, played by the test: channel states, events published with gap-free
    seq, commands answered (ok, or an error for the kinds in `refuse`)."""

    def __init__(self, ctx, d):
        self.pub = EventPublisher(ctx, f"ipc://{d}/cardd-events.sock", "node1")
        self.router = CommandServer(ctx, f"ipc://{d}/cardd-commands.sock")
        self.states = {n: S.IDLE for n in (1, 2, 5, 6)}
        self.extra: dict[int, dict] = {}
        self.commands: list[tuple[int, str]] = []
        self.refuse: set[str] = set()

    def event(self, channel, **kind):
        e = S.ChannelEvent(channel=channel)
        (field, msg), = kind.items()
        getattr(e, field).CopyFrom(msg)
        self.pub.publish(e, f"ch.{channel}".encode() if channel else b"node")

    def restart(self):
        self.pub.seq = 0
        self.states = {n: S.IDLE for n in self.states}
        self.extra = {}
        self.event(0, node_started=S.NodeStarted(spans=1, channels=4))

    def serve(self):
        for route, cmd in self.router.poll():
            kind = cmd.WhichOneof("kind")
            if kind == "status":
                reply = S.Reply(ok=True, seq=self.pub.seq)
                for n, st in self.states.items():
                    reply.channels.add(channel=n, span=1, state=st, in_service=True,
                                       **self.extra.get(n, {}))
            else:
                self.commands.append((cmd.channel, kind))
                reply = S.Reply(ok=kind not in self.refuse,
                                error=f"refused {kind}" if kind in self.refuse else "")
            reply.id = cmd.id
            self.router.reply(route, reply)

    def close(self):
        self.pub.close()
        self.router.close()


@pytest.fixture
def world(tmp_path):
    from ctid.storage import Store
    d = str(tmp_path)
    cfg = parse_ctid_config(CONFIG.format(d=d), f"{d}/ctid.toml")
    ctx = zmq.Context()
    store = Store(cfg.database.url, spool_dir=f"{d}/spool").start()
    cardd = FakeCardd(ctx, d)
    cardd.event(0, node_started=S.NodeStarted(spans=1, channels=4))
    daemons, clients = [], []

    def start_ctid():
        daemon = Ctid(cfg, ctx=ctx, store=store).open()
        daemons.append(daemon)
        return daemon

    def client():
        c = CtiClient(cfg.cti.events, cfg.cti.requests, ctx=ctx)
        clients.append(c)
        return c

    def pump(until, limit=10.0, c=None, items=None):
        end = time.monotonic() + limit
        while time.monotonic() < end:
            daemons[-1].step(0.01)
            cardd.serve()
            if c is not None:
                items.extend(c.poll(0))
            if until():
                return True
        return False

    yield {"cfg": cfg, "cardd": cardd, "start": start_ctid, "client": client, "pump": pump,
           "store": store}
    for c in clients:
        c.close()
    for dmn in daemons:
        dmn.close()
    cardd.close()
    store.close()
    ctx.term()


def names(items):
    return [i.name for i in items if isinstance(i, cti_pb2.Event) and i.name != "SystemStatus"]


def test_a_call_through_ctid_then_cardd_restarts_and_the_call_is_cleared_with_a_cdr(world):
    cardd, pump = world["cardd"], world["pump"]
    ctid = world["start"]()
    c = world["client"]()
    items = []
    link = ctid.links["node1"]
    assert pump(lambda: not link.seq.syncing and c.last_heartbeat, c=c, items=items)
    cardd.event(5, incoming=S.Incoming(ani="13812345678"))
    assert pump(lambda: (1, "ring") in cardd.commands, c=c, items=items)
    cardd.states[5] = S.RINGING
    cardd.states[1] = S.RINGING
    cardd.event(1, answered=S.Answered())
    assert pump(lambda: (1, "bridge") in cardd.commands, c=c, items=items)
    assert (5, "answer") in cardd.commands
    assert pump(lambda: "Established" in names(items), c=c, items=items)
    ev = [i for i in items if isinstance(i, cti_pb2.Event) and i.name == "Established"][0]
    assert ev.calling == "13812345678" and ev.data["ani"] == "13812345678" and ev.epoch == ctid.server.epoch

    cardd.restart()                                    # cardd's process came back: all idle
    assert pump(lambda: "CallCleared" in names(items), c=c, items=items)
    assert names(items) == ["Delivered", "Established", "ConnectionCleared", "ConnectionCleared",
                            "CallCleared"]
    assert [i.seq for i in items if isinstance(i, cti_pb2.Event)] == [1, 2, 3, 4, 5]
    m = ctid.metrics.registry
    assert m.get_sample_value("hotline_ctid_cardd_resyncs_total", {"node": "node1", "reason": "restart"}) == 1
    store = world["store"]
    assert store.flush(10)
    (cdr,) = store.cdrs()
    assert cdr["calling"] == "13812345678" and cdr["outcome"] == "answered"
    assert [leg["device"] for leg in store.legs(cdr["call_id"])] == ["trunk:node1/5", "ext:8001"]


def test_a_refused_command_becomes_a_cleared_connection_and_a_skipped_seq_a_resync(world):
    cardd, pump = world["cardd"], world["pump"]
    ctid = world["start"]()
    c = world["client"]()
    items = []
    assert pump(lambda: not ctid.links["node1"].seq.syncing and c.last_heartbeat, c=c, items=items)
    cardd.refuse.add("ring")
    cardd.event(5, incoming=S.Incoming(ani="13800000000"))
    assert pump(lambda: "CallCleared" in names(items), c=c, items=items)
    assert names(items) == ["Delivered", "ConnectionCleared", "ConnectionCleared", "CallCleared"]
    cleared = [i for i in items if isinstance(i, cti_pb2.Event) and i.name == "ConnectionCleared"]
    assert cleared[0].device == "ext:8001" and cleared[0].q850 == 41
    assert "cardd refused ring: refused ring" in cleared[0].reason
    assert (5, "hangup") in cardd.commands
    # cardd events lost on the way: ctid notices the skipped seq and asks for Status
    cardd.pub.seq += 3
    cardd.event(2, off_hook=S.OffHook())
    cardd.states[2] = S.DIALTONE
    assert pump(lambda: ctid.metrics.registry.get_sample_value(
        "hotline_ctid_cardd_resyncs_total", {"node": "node1", "reason": "gap"}) == 1)
    assert pump(lambda: ctid.model.parties["ext:8002"].call_id != "")


def test_ctid_restarts_and_rebuilds_the_call_cardd_still_carries(world):
    cardd, pump = world["cardd"], world["pump"]
    cardd.states.update({5: S.CONNECTED, 1: S.CONNECTED})
    cardd.extra = {5: {"bridged_with": 1, "ani": "13812345678", "dnis": "12345", "call_id": "node1-1"},
                   1: {"bridged_with": 5, "call_id": "node1-2"}}
    ctid = world["start"]()
    c = world["client"]()
    assert pump(lambda: not ctid.links["node1"].seq.syncing)
    rid = c.send(cti_pb2.Request(snapshot=cti_pb2.Snapshot()))
    box = []
    assert pump(lambda: box.append(c.take_reply(rid)) or box[-1] is not None)
    snap = box[-1]
    assert snap.ok and len(snap.calls) == 1
    assert {x.device for x in snap.calls[0].connections} == {"trunk:node1/5", "ext:8001"}
    assert snap.calls[0].data["ani"] == "13812345678" and cardd.commands == []
    # and the rebuilt call ends like any other
    items = []
    cardd.event(1, on_hook=S.OnHook())
    assert pump(lambda: "CallCleared" in names(items), c=c, items=items)
    assert (5, "hangup") in cardd.commands
