"""cardd's `sim` backend against ctisim's simwire front-end, over a real ipc socket.

The simulator side runs its real clock loop (fast, lockstep) in a thread; the backend is
driven from the test as cardd drives it: open(), then exchange() once per tick.
"""
import shutil
import tempfile
import threading

import numpy as np
import pytest
import zmq

from drivers.backends import open_backend
from drivers.backends.base import (BackendError, HookOp, HwEvent, PortInfo, PortKind,
                                   SpanAlarm, SpanInfo)
from drivers.backends.sim import SimBackend
from hotline_proto import simwire_pb2
from simulators.cards import VirtualCards
from simulators.clock import Clock
from simulators.simwire import SimwireFrontend

SILENCE = 0xD5


def make_cards():
    spans = [SpanInfo(span=1, name="analog-1", kind="analog")]
    ports = ([PortInfo(channel=c, span=1, kind=PortKind.FXS) for c in (1, 2)]
             + [PortInfo(channel=c, span=1, kind=PortKind.FXO) for c in (5, 6)])
    return VirtualCards(spans, ports)


class FarSide:
    """A world that writes a marker into channel 5's audio and remembers what it heard."""

    def __init__(self, cards):
        self.cards = cards
        self.heard = {}
        self.actions = {}           # tick -> callable run at the start of that tick

    def step(self, tick):
        self.heard[tick] = self.cards.from_host(1).copy()
        self.cards.to_host(5)[:] = tick % 256
        if tick in self.actions:
            self.actions.pop(tick)()


@pytest.fixture
def sim():
    directory = tempfile.mkdtemp(prefix="sw")
    endpoint = f"ipc://{directory}/cards.sock"
    cards = make_cards()
    world = FarSide(cards)
    frontend = SimwireFrontend(cards, endpoint)
    frontend.start()
    clock = Clock(cards, world, frontend, mode="fast", poll_s=0.01)
    thread = threading.Thread(target=clock.run, kwargs={"max_seconds": 30}, daemon=True)
    thread.start()
    yield endpoint, cards, world, frontend
    clock.stop()
    thread.join(5)
    frontend.close()
    shutil.rmtree(directory, ignore_errors=True)


def silence(backend):
    inv = backend.inventory
    return np.full((len(inv.ports), inv.block), SILENCE, dtype=np.uint8)


def test_open_returns_the_cards_inventory(sim):
    endpoint, cards, _, _ = sim
    backend = open_backend("sim", endpoint=endpoint, timeout_s=5)
    try:
        inv = backend.open()
        assert [(p.channel, p.kind) for p in inv.ports] == \
            [(1, PortKind.FXS), (2, PortKind.FXS), (5, PortKind.FXO), (6, PortKind.FXO)]
        assert [(s.span, s.name, s.kind) for s in inv.spans] == [(1, "analog-1", "analog")]
        assert (inv.block, inv.law) == (160, "alaw")
    finally:
        backend.close()


def test_audio_flows_both_ways_in_lockstep(sim):
    endpoint, cards, world, _ = sim
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    backend.open()
    try:
        tx = silence(backend)
        answered = {}                       # tick -> the value cardd sent in answer to it
        tin = backend.exchange(tx)          # the first exchange answers no tick yet
        for n in range(5):
            assert tin.rx.shape == (4, 160)
            assert (tin.rx[2] == tin.tick % 256).all()      # channel 5's marker, this tick
            assert (tin.rx[0] == SILENCE).all()
            tx[0, :] = 100 + n              # channel 1 is row 0
            answered[tin.tick] = 100 + n
            last = tin.tick
            tin = backend.exchange(tx)
            assert tin.tick == last + 1     # lockstep: no tick skipped
        # The far side hears, in the next tick, what the host sent in answer to a tick.
        for t, value in answered.items():
            assert (world.heard[t + 1] == value).all()
    finally:
        backend.close()


def test_hook_operations_reach_the_ports(sim):
    endpoint, cards, _, _ = sim
    seen = []
    cards.hook_listeners.append(lambda port, op: seen.append((port.channel, op)))
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    backend.open()
    try:
        tx = silence(backend)
        backend.exchange(tx)
        backend.hook(1, HookOp.RING)
        backend.hook(5, HookOp.OFFHOOK)
        backend.exchange(tx)
        backend.exchange(tx)   # the ops rode on the previous tx; this one proves it was taken
        assert cards.port(1).ringing
        assert cards.port(5).hook == HookOp.OFFHOOK
        assert seen == [(1, HookOp.RING), (5, HookOp.OFFHOOK)]
        backend.hook(1, HookOp.RINGOFF)
        backend.exchange(tx)
        backend.exchange(tx)
        assert not cards.port(1).ringing
    finally:
        backend.close()


def test_events_and_span_alarms_reach_the_host(sim):
    endpoint, cards, world, _ = sim
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    backend.open()
    try:
        tx = silence(backend)
        first = backend.exchange(tx).tick
        world.actions[first + 2] = lambda: (cards.post_event(5, HwEvent.RINGERON),
                                            cards.set_span_alarms(1, int(SpanAlarm.RED)))
        events = []
        for _ in range(4):
            events += backend.exchange(tx).events
        assert [(e.channel, e.event) for e in events] == [(5, HwEvent.RINGERON), (0, HwEvent.ALARM)]
        assert events[1].span == 1 and events[1].value == SpanAlarm.RED
        assert backend.span_alarms(1) == SpanAlarm.RED
    finally:
        backend.close()


def test_events_posted_before_the_host_connects_are_not_lost(sim):
    endpoint, cards, _, _ = sim
    cards.post_event(6, HwEvent.ALARM)
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    backend.open()
    try:
        events = backend.exchange(silence(backend)).events
        assert [(e.channel, e.event) for e in events] == [(6, HwEvent.ALARM)]
    finally:
        backend.close()


def test_bad_calls_on_the_backend_are_refused_clearly(sim):
    endpoint, _, _, _ = sim
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    with pytest.raises(BackendError, match="not open"):
        backend.exchange(np.zeros((4, 160), np.uint8))
    backend.open()
    try:
        with pytest.raises(BackendError, match=r"uint8 \(4, 160\)"):
            backend.exchange(np.zeros((3, 160), np.uint8))
        with pytest.raises(BackendError, match="no channel 9"):
            backend.hook(9, HookOp.OFFHOOK)
        with pytest.raises(BackendError, match="not an E1 span"):
            backend.send_dframe(1, b"\x00\x01")
    finally:
        backend.close()


def test_garbage_to_the_simulator_is_counted_and_ignored(sim):
    endpoint, _, _, frontend = sim
    ctx = zmq.Context.instance()
    rogue = ctx.socket(zmq.DEALER)
    rogue.setsockopt(zmq.LINGER, 0)
    rogue.connect(endpoint)
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    backend.open()
    try:
        rogue.send(b"\xff\xfe not a protobuf")
        rogue.send_multipart([b"two", b"frames"])
        # A tx from a peer that never said hello, and a tx of the wrong size from the host.
        rogue.send(simwire_pb2.Envelope(tx=simwire_pb2.Tx(tick=1, tx=b"\x00" * 640)).SerializeToString())
        tx = silence(backend)
        before = backend.exchange(tx).tick
        backend._sock.send(simwire_pb2.Envelope(tx=simwire_pb2.Tx(tick=before, tx=b"\x00" * 7))
                           .SerializeToString())
        for _ in range(3):
            tin = backend.exchange(tx)
        assert tin.tick == before + 3
        assert frontend.stats["malformed"] >= 3
        assert frontend.stats["stray"] == 1
    finally:
        rogue.close()
        backend.close()


def test_garbage_to_the_backend_is_counted_and_ignored():
    directory = tempfile.mkdtemp(prefix="sw")
    endpoint = f"ipc://{directory}/cards.sock"
    ctx = zmq.Context.instance()
    fake = ctx.socket(zmq.ROUTER)
    fake.setsockopt(zmq.LINGER, 0)
    fake.bind(endpoint)
    backend = SimBackend(endpoint=endpoint, timeout_s=5)
    result = {}

    def host():
        try:
            inv = backend.open()
            result["tin"] = backend.exchange(np.full((1, 160), SILENCE, np.uint8))
            result["inv"] = inv
        except Exception as e:      # reported below
            result["error"] = e

    t = threading.Thread(target=host)
    t.start()
    try:
        peer, hello = fake.recv_multipart()
        assert simwire_pb2.Envelope.FromString(hello).hello.client == "cardd"
        inv = simwire_pb2.Inventory(block=160, law="alaw")
        inv.spans.add(span=1, name="a", kind="analog")
        inv.ports.add(channel=1, span=1, kind="fxs")
        fake.send_multipart([peer, b"garbage"])
        fake.send_multipart([peer, simwire_pb2.Envelope(inventory=inv).SerializeToString()])
        fake.recv_multipart()                                       # tx for tick 0
        bad = [simwire_pb2.Tick(tick=1, rx=b"\x01" * 5),          # wrong size
               simwire_pb2.Tick(tick=1, rx=b"\x01" * 160)]        # unknown event, dropped
        bad[1].events.add(channel=1, event=999)
        bad[1].events.add(channel=1, event=int(HwEvent.RINGOFFHOOK))
        for msg in bad:
            fake.send_multipart([peer, simwire_pb2.Envelope(tick=msg).SerializeToString()])
        t.join(5)
    finally:
        fake.close()
        backend.close()
        shutil.rmtree(directory, ignore_errors=True)
    assert "error" not in result, result.get("error")
    assert result["tin"].tick == 1
    assert [e.event for e in result["tin"].events] == [HwEvent.RINGOFFHOOK]
    assert backend.malformed == 3


def test_no_simulator_gives_a_timeout_naming_the_endpoint():
    directory = tempfile.mkdtemp(prefix="sw")
    endpoint = f"ipc://{directory}/nobody.sock"
    backend = SimBackend(endpoint=endpoint, timeout_s=0.2)
    try:
        with pytest.raises(BackendError, match=f"inventory did not come from ctisim at ipc://{directory}/nobody.sock within 0.2 s"):
            backend.open()
    finally:
        backend.close()
        shutil.rmtree(directory, ignore_errors=True)


def test_a_restarted_host_takes_over(sim):
    endpoint, _, _, _ = sim
    first = SimBackend(endpoint=endpoint, timeout_s=5)
    first.open()
    first.exchange(silence(first))
    first.close()                        # cardd died without a word
    second = SimBackend(endpoint=endpoint, timeout_s=5)
    second.open()
    try:
        a = second.exchange(silence(second)).tick
        b = second.exchange(silence(second)).tick
        assert b == a + 1
    finally:
        second.close()
