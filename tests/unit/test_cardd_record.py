"""cardd's Record command: an in-process cardd on the simulated cards (simwire, lockstep
clock) records what the far end says into a WAV file and announces it with RecordDone."""
import os
import threading

import numpy as np
import pytest
import zmq

from drivers.backends.base import HwEvent
from drivers.cardd import Cardd
from drivers.media import g711
from drivers.media.levels import dbm0_to_peak
from hotline_proto import cardd_pb2
from simulators.clock import Clock
from simulators.ctisim import cards_for, frontend_for, private_cardd_config


class Talker:
    """The far end on chosen channels: says `speech` (law-coded blocks) when told to."""

    def __init__(self, cards):
        self.cards = cards
        self.saying: dict[int, list] = {}

    def say(self, channel: int, blocks: np.ndarray) -> None:
        self.saying[channel] = list(blocks)

    def step(self, tick):
        for channel, blocks in self.saying.items():
            if blocks:
                self.cards.to_host(channel)[:] = blocks.pop(0)


def speech(seconds: float) -> np.ndarray:
    """A warbling tone at -20 dBm0, law-coded in 20 ms blocks."""
    t = np.arange(int(seconds * 8000)) / 8000
    pcm = dbm0_to_peak(-20) * np.sin(2 * np.pi * (500 + 200 * np.sin(2 * np.pi * 3 * t)) * t)
    return g711.encode("alaw", np.round(pcm).astype(np.int16)).reshape(-1, 160)


@pytest.fixture
def node(tmp_path):
    path, cfg = private_cardd_config("etc/cardd.toml", str(tmp_path), "sim")
    cards = cards_for(cfg)
    frontend = frontend_for("sim", cards, cfg)
    frontend.start()
    talker = Talker(cards)
    clock = Clock(cards, talker, frontend, mode="fast")
    sim = threading.Thread(target=clock.run, kwargs={"max_ticks": 2000}, daemon=True)
    sim.start()
    daemon = Cardd(cfg, zmq.Context.instance())
    sub = zmq.Context.instance().socket(zmq.SUB)
    try:
        daemon.open()
        sub.connect(cfg.events_endpoint)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        daemon.run(max_ticks=20)                # let the subscription settle
        yield daemon, cards, talker, sub, cfg
    finally:
        sub.close()
        clock.stop()
        sim.join(timeout=5)
        daemon.close()
        frontend.close()


def command(daemon, channel, **kind):
    return daemon.handle_command(cardd_pb2.Command(id=1, channel=channel, **kind))


def events(sub, kind):
    out = []
    while sub.poll(100):
        e = cardd_pb2.ChannelEvent()
        e.ParseFromString(sub.recv_multipart()[1])
        if e.WhichOneof("kind") == kind:
            out.append(e)
    return out


def run_until_done(daemon, sub, limit_ticks=400):
    """Run ticks until a RecordDone is published (the writer thread closes the file)."""
    found = []
    for _ in range(limit_ticks // 10):
        daemon.run(max_ticks=daemon.tick + 10)
        found += events(sub, "record_done") if sub.poll(0) else []
        if found:
            return found
    raise AssertionError("no RecordDone")


def wav_codes(path):
    data = open(path, "rb").read()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert int.from_bytes(data[20:22], "little") == 6          # A-law
    return np.frombuffer(data[data.index(b"data") + 8:], dtype=np.uint8)


def test_record_writes_the_far_ends_words_after_the_beep(node):
    daemon, cards, talker, sub, cfg = node
    cards.post_event(2, HwEvent.RINGOFFHOOK)            # a call on channel 2
    daemon.run(max_ticks=daemon.tick + 5)
    reply = command(daemon, 2, record=cardd_pb2.Record(path="voicemail/m1.wav", max_s=30,
                                                       silence_s=1.0, beep=True))
    assert reply.ok, reply.error
    daemon.run(max_ticks=daemon.tick + 30)              # the beep (400 ms) plays
    words = speech(1.5)
    talker.say(2, words)
    (done,) = run_until_done(daemon, sub)
    path = os.path.join(cfg.run_dir, "voicemail", "m1.wav")
    assert done.channel == 2 and done.record_done.ok and done.record_done.reason == "silence"
    assert done.record_done.path == path and done.call_id == daemon.slots[2].call_id
    codes = wav_codes(path)
    # the pause between the beep's end and the first word is kept; the silence after is not
    lead = codes.size - words.size
    assert 0 <= lead <= 15 * 160
    assert np.array_equal(codes[lead:], words.ravel())
    assert np.all(np.abs(g711.decode("alaw", codes[:lead])) < 64)
    assert done.record_done.duration_s == pytest.approx(codes.size / 8000)
    assert daemon.engine.taps.consumer(daemon.slots[2].row) is None        # untapped


def test_the_beep_is_heard_and_a_hang_up_ends_the_recording(node):
    daemon, cards, talker, sub, cfg = node
    cards.post_event(3, HwEvent.RINGOFFHOOK)
    daemon.run(max_ticks=daemon.tick + 5)
    assert command(daemon, 3, stop_media=cardd_pb2.StopMedia()).ok       # no dial tone
    assert command(daemon, 3, record=cardd_pb2.Record(path=os.path.join(cfg.run_dir, "h.wav"),
                                                      max_s=60, silence_s=5, beep=True)).ok
    beep = []
    for _ in range(25):
        daemon.run(max_ticks=daemon.tick + 1)
        beep.append(g711.decode("alaw", cards.from_host(3)).astype(float))
    pcm = np.concatenate(beep)
    spectrum = np.abs(np.fft.rfft(pcm))
    assert np.argmax(spectrum) * 8000 / len(pcm) == pytest.approx(1000, abs=10)
    talker.say(3, speech(0.6))
    daemon.run(max_ticks=daemon.tick + 40)
    cards.post_event(3, HwEvent.ONHOOK)                  # the caller hangs up mid-message
    (done,) = run_until_done(daemon, sub)
    assert done.record_done.ok and done.record_done.reason == "hangup"
    assert 0.6 <= done.record_done.duration_s <= 0.6 + 0.15      # the pause after the beep


def test_bad_record_requests_are_refused_clearly(node, tmp_path):
    daemon, cards, talker, sub, cfg = node
    reply = command(daemon, 4, record=cardd_pb2.Record(path="a.wav", max_s=10))
    assert not reply.ok and "no call to record" in reply.error
    cards.post_event(4, HwEvent.RINGOFFHOOK)
    daemon.run(max_ticks=daemon.tick + 5)
    cases = [(dict(path="../x.wav", max_s=10), "'..'"),
             (dict(path=str(tmp_path / "no" / "x.wav"), max_s=10), "does not exist"),
             (dict(path="x.wav", max_s=0), "max_s"), (dict(path="x.wav", max_s=7200), "max_s"),
             (dict(path="", max_s=10), "needs a file path")]
    for fields, words in cases:
        reply = command(daemon, 4, record=cardd_pb2.Record(**fields))
        assert not reply.ok and words in reply.error, (fields, reply.error)
    reply = command(daemon, 4, stop_record=cardd_pb2.StopRecord())
    assert not reply.ok and "not recording" in reply.error
    assert command(daemon, 4, record=cardd_pb2.Record(path="s.wav", max_s=10)).ok
    reply = command(daemon, 4, record=cardd_pb2.Record(path="t.wav", max_s=10))
    assert not reply.ok and "already recording" in reply.error
    assert command(daemon, 4, stop_record=cardd_pb2.StopRecord()).ok
    (done,) = run_until_done(daemon, sub)
    assert not done.record_done.ok and done.record_done.reason == "stopped"   # nothing said
    assert not os.path.exists(os.path.join(cfg.run_dir, "s.wav"))
