"""E1 error counters (slips, CRC-4, BPV, framing, E-bit, FAS) from the virtual cards to
cardd's subscribers (SpanAlarm) and /metrics, on both backends: the simwire Tick carries
them for `sim`, DAHDI_SPANSTAT for `dahdi` (which has no slip counter)."""
from __future__ import annotations

import collections
import os
import threading

import pytest
import zmq
from prometheus_client import generate_latest

from drivers.cardd import Cardd
from hotline_proto import cardd_pb2
from simulators.actors import ActorError
from simulators.actors.pri_co import attach_pri
from simulators.actors.r2_co import attach_r2
from simulators.cards import VirtualCards
from simulators.clock import Clock
from simulators.ctisim import cards_for, frontend_for, private_cardd_config
from simulators.scenario import ScenarioError, parse_scenario
from simulators.world import World

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Jobs:
    """Work for the world's thread, run at the start of its next tick."""

    def __init__(self):
        self.queue: collections.deque = collections.deque()

    def step(self, tick: int) -> None:
        while self.queue:
            self.queue.popleft()()


class Node:
    """Real cardd in-process, ctisim's cards and exchange in a thread, a SUB on the bus."""

    def __init__(self, tmp_path, backend: str, config: str, office):
        self.path, self.cfg = private_cardd_config(os.path.join(ROOT, "etc", config),
                                                   str(tmp_path), backend)
        self.cards = cards_for(self.cfg)
        self.world = World(self.cards)
        self.jobs = Jobs()
        self.world.directors.append(self.jobs)
        self.office = office(self.world, self.cfg)[1]
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
        self.run(60)

    def run(self, ticks: int) -> None:
        self.d.run(max_ticks=self.d.tick + ticks)
        while self.sub.poll(0):
            e = cardd_pb2.ChannelEvent()
            e.ParseFromString(self.sub.recv_multipart()[1])
            self.events.append(e)

    def do(self, fn) -> None:
        self.jobs.queue.append(fn)
        self.run(2)

    def alarms(self) -> list:
        return [e.span_alarm for e in self.events if e.WhichOneof("kind") == "span_alarm"]

    def metric(self, counter: str) -> float:
        """hotline_cardd_span_errors_total for span 1, as /metrics shows it."""
        text = generate_latest(self.d.metrics.registry).decode()
        want = f'hotline_cardd_span_errors_total{{counter="{counter}",span="1"}} '
        line = next((x for x in text.splitlines() if x.startswith(want)), None)
        return float(line.split()[-1]) if line else 0.0

    def close(self) -> None:
        # cardd first, while the emulation still answers (the dahdi backend closes each
        # channel file through it).
        self.sub.close()
        self.d.close()
        self.clock.stop()
        self.thread.join(timeout=5)
        self.frontend.close()


@pytest.fixture
def node(request, tmp_path):
    backend, config, office = request.param
    n = Node(tmp_path, backend, config, office)
    yield n
    n.close()


@pytest.mark.parametrize("node", [("sim", "cardd-pri.toml", attach_pri)], indirect=True)
def test_slips_and_errors_reach_subscribers_and_metrics_on_sim(node):
    n = node
    assert not n.alarms()                                   # a clean line reports nothing
    n.do(lambda: (n.office.slip(3), n.office.errors(crc4=10, ebit=4, bpv=2, fas=1, frame=5)))
    n.run(60)                                               # cardd polls every 50 ticks
    (alarm,) = n.alarms()
    assert (alarm.slips, alarm.crc4_errors, alarm.ebit_errors, alarm.bpv_errors,
            alarm.fas_errors, alarm.frame_errors) == (3, 10, 4, 2, 1, 5)
    assert alarm.alarms == 0 and alarm.dchannel_errors == 0
    assert (n.metric("slips"), n.metric("crc4_errors"), n.metric("fas_errors")) == (3, 10, 1)
    n.do(lambda: n.office.slip(2))
    n.run(60)
    assert [a.slips for a in n.alarms()] == [3, 5]          # running totals
    assert n.alarms()[-1].crc4_errors == 10
    assert n.metric("slips") == 5 and n.metric("crc4_errors") == 10
    assert n.d.status().spans[0].in_service                 # errors alone take nothing down
    n.run(120)
    assert len(n.alarms()) == 2                             # nothing new, nothing sent


@pytest.mark.parametrize("node", [("dahdi", "cardd-pri.toml", attach_pri)], indirect=True)
def test_spanstat_counters_reach_cardd_and_slips_do_not_exist_there(node):
    n = node
    n.do(lambda: (n.office.slip(7), n.office.errors(crc4=12, ebit=3, bpv=9)))
    n.run(120)                  # SPANSTAT is polled once a second, counters every 50 ticks
    alarm = n.alarms()[-1]
    assert (alarm.crc4_errors, alarm.ebit_errors, alarm.bpv_errors) == (12, 3, 9)
    assert alarm.slips == 0                                 # DAHDI_SPANSTAT has none
    assert n.metric("crc4_errors") == 12 and n.metric("slips") == 0


@pytest.mark.parametrize("node", [("sim", "cardd-r2.toml", attach_r2)], indirect=True)
def test_r2_span_counts_errors_the_same_way(node):
    n = node
    span = n.office.span
    n.do(lambda: (n.office.slip(1), n.office.errors(crc4=2)))
    n.run(60)
    (alarm,) = [e.span_alarm for e in n.events
                if e.WhichOneof("kind") == "span_alarm" and e.span == span]
    assert (alarm.slips, alarm.crc4_errors) == (1, 2)


def test_cards_refuse_bad_counts_without_counting():
    from drivers.backends.base import PortInfo, PortKind, SpanInfo
    cards = VirtualCards([SpanInfo(1, "a", "analog"), SpanInfo(2, "e", "e1")],
                         [PortInfo(1, 1, PortKind.FXS)])
    with pytest.raises(ValueError, match="span 1 is not an E1 span"):
        cards.slip(1)
    with pytest.raises(ValueError, match="unknown span counter 'crc'"):
        cards.count_errors(2, crc4_errors=1, crc=1)
    with pytest.raises(ValueError, match="whole number >= 0"):
        cards.count_errors(2, slips=-1)
    assert not any(cards.span_counters[2].values())
    cards.count_errors(2, crc4_errors=4)
    cards.slip(2, 2)
    assert cards.span_counters[2]["crc4_errors"] == 4 and cards.span_counters[2]["slips"] == 2


def test_scenario_steps_for_slips_and_errors():
    sc = parse_scenario("""
cardd: etc/cardd-pri.toml
steps:
  - {pri: 1, do: slip, count: 3}
  - {pri: 1, do: errors, crc4: 10, ebit: 2}
""")
    slip, errors = sc.scripts[0].steps
    assert (slip.name, slip.params) == ("slip", {"count": 3})
    assert (errors.name, errors.params) == ("errors", {"crc4": 10, "ebit": 2})
    with pytest.raises(ScenarioError, match=":4: crc5: unknown key"):
        parse_scenario("""
cardd: etc/cardd-pri.toml
steps:
  - {pri: 1, do: errors, crc5: 10}
""")
    with pytest.raises(ScenarioError, match="count"):
        parse_scenario("""
cardd: etc/cardd-pri.toml
steps:
  - {pri: 1, do: slip, count: many}
""")


def test_actor_refuses_unknown_words_and_negative_counts():
    from drivers.backends.base import PortInfo, PortKind, SpanInfo
    cards = VirtualCards([SpanInfo(1, "e", "e1")], [PortInfo(1, 1, PortKind.E1)])

    class Office:
        span = 1

        def __init__(self):
            self.cards, self.notes = cards, []

        def note(self, text):
            self.notes.append(text)

    from simulators.actors.pri_co import PriCentralOffice
    office = Office()
    with pytest.raises(ActorError, match="unknown counter 'crc'"):
        PriCentralOffice.errors(office, crc=1)
    with pytest.raises(ActorError, match="whole number"):
        PriCentralOffice.slip(office, -2)
    assert not any(cards.span_counters[1].values()) and not office.notes
