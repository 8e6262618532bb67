"""cardd with a PRI span, in this process, against the simulator's exchange over the sim
backend (ZeroMQ simwire, lockstep clock): events on the bus, commands, captures, alarms.
"""
from __future__ import annotations

import collections
import os
import subprocess
import threading

import pytest

from tests.conftest import need_tool
import zmq

from drivers.cardd import Cardd
from drivers.signaling import span_health
from hotline_proto import cardd_pb2
from simulators.actors.pri_co import CoPlan, attach_pri
from simulators.clock import Clock
from simulators.ctisim import cards_for, frontend_for, private_cardd_config
from simulators.world import World

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(ROOT, "etc", "cardd-pri.toml")


class Jobs:
    """Work for the world's thread: run at the start of its next tick (thread-safe)."""

    def __init__(self):
        self.queue: collections.deque = collections.deque()

    def step(self, tick: int) -> None:
        while self.queue:
            self.queue.popleft()()


class Node:
    def __init__(self, tmp_path, backend: str = "sim", config: str = CONFIG):
        self.path, self.cfg = private_cardd_config(config, str(tmp_path), backend)
        self.cards = cards_for(self.cfg)
        self.world = World(self.cards)
        self.jobs = Jobs()
        self.world.directors.append(self.jobs)
        self.office = attach_pri(self.world, self.cfg)[1]
        self.co = self.office.co
        self.frontend = frontend_for(backend, self.cards, self.cfg)
        self.frontend.start()
        self.clock = Clock(self.cards, self.world, self.frontend, mode="fast")
        self.thread = threading.Thread(target=self.clock.run, daemon=True)
        self.thread.start()
        self.d = Cardd(self.cfg, zmq.Context.instance())
        self.d.open()
        self.sub = zmq.Context.instance().socket(zmq.SUB)
        self.sub.connect(self.cfg.events_endpoint)
        self.sub.setsockopt(zmq.SUBSCRIBE, b"")
        self.events: list[cardd_pb2.ChannelEvent] = []
        self.run(60)                         # D-channel up, subscription settled

    def run(self, ticks: int) -> None:
        self.d.run(max_ticks=self.d.tick + ticks)
        while self.sub.poll(0):
            e = cardd_pb2.ChannelEvent()
            e.ParseFromString(self.sub.recv_multipart()[1])
            self.events.append(e)

    def do(self, fn) -> None:
        """Run fn in the world's thread on its next tick, and let that tick happen."""
        self.jobs.queue.append(fn)
        self.run(2)

    def command(self, channel: int, **kind) -> cardd_pb2.Reply:
        (name, msg), = kind.items()
        cmd = cardd_pb2.Command(id=1, channel=channel)
        getattr(cmd, name).CopyFrom(msg)
        return self.d.handle_command(cmd)

    def of(self, kind: str, channel: int | None = None) -> list:
        return [getattr(e, kind) for e in self.events if e.WhichOneof("kind") == kind
                and (channel is None or e.channel == channel)]

    def close(self) -> None:
        self.sub.close()
        self.clock.stop()
        self.thread.join(timeout=5)
        self.d.close()
        self.frontend.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.close()


def test_calls_both_ways_with_isdn_numbers_on_the_bus(node):
    n = node
    status = n.d.status()
    assert status.spans[0].signaling == "pri_cpe" and status.spans[0].link_up
    assert {c.signaling for c in status.channels} == {cardd_pb2.SIG_PRI}
    assert [c.channel for c in status.channels] == [*range(1, 16), *range(17, 32)]
    n.do(lambda: n.office.call("8001", "13800138000", channel=17, ani_ton="national",
                               presentation="restricted", redirecting="01012345678",
                               redirecting_reason="unconditional"))
    n.run(10)
    (inc,) = n.of("incoming", 17)
    assert (inc.ani, inc.dnis, inc.calling_ton, inc.presentation) == \
        ("13800138000", "8001", "national", "restricted")
    assert (inc.redirecting, inc.redirecting_reason) == ("01012345678", "unconditional")
    assert n.command(17, answer=cardd_pb2.Answer()).ok
    n.run(10)
    assert n.co.count("connected") == 1
    n.do(lambda: n.office.hang_up(channel=17, cause=17))
    n.run(10)
    assert [c.cause for c in n.of("cleared", 17)] == [17]
    # Outbound: the Dial command's ISDN fields reach the exchange.
    n.co.plans["95566"] = CoPlan(after=0.2)
    r = n.command(5, dial=cardd_pb2.Dial(number="95566", ani="02161234567",
                                         calling_ton="national", called_ton="subscriber",
                                         presentation="restricted", channel_mode="exclusive"))
    assert r.ok and r.call_id
    n.run(30)
    assert [e.WhichOneof("kind") for e in n.events if e.channel == 5] == \
        ["proceeding", "alerting", "answered"]
    ring = [c for c in n.co.calls if not c.to_host][0].ring
    assert (ring.called_number, ring.called_ton, ring.calling_ton, ring.calling_presentation,
            ring.channel, ring.exclusive) == ("95566", "subscriber", "national", "restricted",
                                              5, True)
    assert all(e.call_id == r.call_id for e in n.events if e.channel == 5)
    assert n.command(5, hangup=cardd_pb2.Hangup(cause=31)).ok
    n.run(10)
    assert [c for c in n.co.calls if not c.to_host][0].cause_from_host == 31
    # An analog-only command is refused with the reason; ISDN fields on a ring are unknown.
    r = n.command(3, ring=cardd_pb2.Ring(caller_id="1"))
    assert not r.ok and "cannot ring" in r.error


def test_capture_command_writes_a_pcap_that_tshark_decodes(node, tmp_path):
    n = node
    tshark = need_tool("tshark")
    path = str(tmp_path / "span1.pcap")
    r = n.d.handle_command(cardd_pb2.Command(id=2, capture=cardd_pb2.Capture(
        span=1, path=path, seconds=2.0)))
    assert r.ok, r.error
    n.do(lambda: n.office.call("8001", "13800138000", channel=2))
    n.run(5)
    assert n.command(2, answer=cardd_pb2.Answer()).ok
    n.run(20)
    n.do(lambda: n.office.hang_up(channel=2))
    n.run(120)                             # past the capture's 2 s: the file is closed
    out = subprocess.run([tshark, "-r", path], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    setup = [x for x in lines if x.rstrip().endswith("SETUP")]
    connect = [x for x in lines if x.rstrip().endswith("| CONNECT")]
    assert setup and "Remote Network" in setup[0] and "Local User" in setup[0]
    assert connect and "Local User" in connect[0].split("→")[0]
    assert any(x.rstrip().endswith("DISCONNECT") for x in lines)
    # Errors: a span without a D-channel, an unfinished capture to stop.
    r = n.d.handle_command(cardd_pb2.Command(id=3, capture=cardd_pb2.Capture(
        span=9, path=path, seconds=1)))
    assert not r.ok and "span 9 has no D-channel" in r.error
    r = n.d.handle_command(cardd_pb2.Command(id=4, capture=cardd_pb2.Capture(span=1)))
    assert not r.ok and "no capture is running" in r.error


def test_alarm_mid_call_clears_with_38_and_the_span_comes_back_by_itself(node):
    n = node
    n.do(lambda: n.office.call("8001", "1", count=2))
    n.run(5)
    for inc in [e for e in n.events if e.WhichOneof("kind") == "incoming"]:
        assert n.command(inc.channel, answer=cardd_pb2.Answer()).ok
    n.run(10)
    assert n.co.count("connected") == 2
    n.do(lambda: n.office.alarm("red,los"))
    n.run(5)
    (alarm,) = n.of("span_alarm")
    assert alarm.names == ["red", "los"]
    assert sorted(c.cause for c in n.of("cleared")) == [38, 38]
    out = n.of("service")
    assert len(out) == 30 and not any(s.in_service for s in out)
    assert not n.command(9, dial=cardd_pb2.Dial(number="1")).ok
    assert n.d.status().spans[0].in_service is False
    n.do(lambda: n.office.clear_alarm())
    cleared_at = n.d.tick
    n.run(200)
    back = [e for e in n.events if e.WhichOneof("kind") == "service" and e.service.in_service]
    assert len(back) == 30
    delay = 100 + round(100 * span_health.span_jitter(1) * 0.25)
    assert min(e.tick for e in back) - cleared_at >= delay
    assert n.d.status().spans[0].in_service
    assert all(c.state == cardd_pb2.IDLE for c in n.d.status().channels)
    assert n.co.restarts and len(n.co.restarts) == 30         # each channel restarted once


def test_damaged_frames_neither_crash_cardd_nor_leak_channels(node):
    n = node
    n.do(lambda: n.office.call("8001", "1", count=5))
    n.run(5)
    for inc in [e for e in n.events if e.WhichOneof("kind") == "incoming"]:
        n.command(inc.channel, answer=cardd_pb2.Answer())
    n.run(5)
    n.do(lambda: (n.office.garble(200, "garbage"), n.office.garble(50, "truncate"),
                  n.office.corrupt(10, "flip")))
    n.run(50)
    n.do(lambda: n.co.hang_up_all())
    n.run(2500)                            # 50 s: any stuck channel is reset meanwhile
    status = n.d.status()
    assert all(c.state == cardd_pb2.IDLE and c.in_service for c in status.channels), \
        [(c.channel, c.state) for c in status.channels if c.state != cardd_pb2.IDLE]
    assert n.d.spansig.spans[1].link.active_calls() == 0
    n.do(lambda: n.office.call("8001", "1", channel=1))
    n.run(5)
    assert n.command(1, answer=cardd_pb2.Answer()).ok


def test_configured_capture_covers_the_whole_run(tmp_path):
    path = tmp_path / "configured.pcap"
    config = tmp_path / "cardd-pri.toml"
    text = open(CONFIG).read().replace('# pcap = "run/span1-dchannel.pcap"', f'pcap = "{path}"')
    config.write_text(text)
    (tmp_path / "node").mkdir()
    n = Node(tmp_path / "node", config=str(config))
    try:
        n.do(lambda: n.office.call("8001", "1", channel=9))
        n.run(5)
        assert n.command(9, answer=cardd_pb2.Answer()).ok
        n.run(5)
    finally:
        n.close()                       # closing cardd closes the capture
    from drivers.signaling.pri.pcap import read_pcap
    frames = list(read_pcap(str(path)))
    assert not any(net for _, _, net, _ in frames)             # cardd is the user side
    assert {sent for _, sent, _, _ in frames} == {True, False}
    # Q.931 message type: after address, control (2+2) and the 4-octet header start.
    setups = [f for t, sent, net, f in frames if not sent and len(f) > 8 and f[8] == 0x05]
    connects = [f for t, sent, net, f in frames if sent and len(f) > 8 and f[8] == 0x07]
    assert len(setups) == 1 and len(connects) == 1
