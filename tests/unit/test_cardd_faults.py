"""A fault in one channel's signaling stays in that channel: the others go on working."""
import threading

import zmq

from drivers import config as config_mod
from drivers.backends.base import HwEvent
from drivers.cardd import Cardd
from hotline_proto import cardd_pb2
from simulators.clock import Clock
from simulators.ctisim import cards_for, frontend_for, private_cardd_config


class Exploding:
    """Stands in for a line whose code hits a bug on its next timer."""
    state = None

    def on_tick(self, tick):
        raise RuntimeError("bug in a signaling module")

    on_hw = on_media = on_tick


def test_one_channel_fault_leaves_the_others_running(tmp_path):
    path, cfg = private_cardd_config("etc/cardd.toml", str(tmp_path), "sim")
    cards = cards_for(cfg)
    frontend = frontend_for("sim", cards, cfg)
    frontend.start()

    class Quiet:
        def step(self, tick):
            pass

    clock = Clock(cards, Quiet(), frontend, mode="fast")
    sim = threading.Thread(target=clock.run, kwargs={"max_ticks": 400}, daemon=True)
    sim.start()
    daemon = Cardd(cfg, zmq.Context.instance())
    sub = zmq.Context.instance().socket(zmq.SUB)
    try:
        daemon.open()
        sub.connect(cfg.events_endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        daemon.run(max_ticks=20)                # let the subscription settle
        daemon.slots[3].line = Exploding()
        cards.post_event(2, HwEvent.RINGOFFHOOK)  # the phone on channel 2 lifts its handset
        daemon.run(max_ticks=60)
        events = []
        while sub.poll(200):
            e = cardd_pb2.ChannelEvent()
            e.ParseFromString(sub.recv_multipart()[1])
            events.append(e)
        kinds = [(e.channel, e.WhichOneof("kind")) for e in events]
        assert (3, "service") in kinds
        fault = next(e for e in events if e.channel == 3)
        assert not fault.service.in_service and fault.service.reason == "internal fault"
        assert (2, "off_hook") in kinds                      # channel 2 still works
        status = daemon.status()
        by_ch = {c.channel: c for c in status.channels}
        assert by_ch[3].state == cardd_pb2.OUT_OF_SERVICE and not by_ch[3].in_service
        assert by_ch[2].state == cardd_pb2.DIALTONE
        assert all(by_ch[c].in_service for c in (1, 2, 4, 5, 6, 7, 8))
        reply = daemon.handle_command(cardd_pb2.Command(id=5, channel=3, answer=cardd_pb2.Answer()))
        assert not reply.ok and "out of service after an internal fault" in reply.error
        seqs = [e.seq for e in events]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    finally:
        sub.close()
        clock.stop()
        sim.join(timeout=5)
        daemon.close()
        frontend.close()
