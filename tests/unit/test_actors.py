"""Phones and CO lines on virtual cards, with the test playing the host (cardd's side).

The host side here is plain: it reads what the far side sent (cards.host_rx), takes the
hardware events, writes its own audio (cards.host_tx) and hook operations
(cards.host_hook), tick by tick, as a front-end would hand them to cardd.
"""
import numpy as np
import pytest

from drivers.backends.base import HookOp, HwEvent, PortInfo, PortKind, SpanInfo
from drivers.media import g711
from drivers.media.dtmf import detect_digits, dtmf_tone
from drivers.media.fsk import callerid_fsk, decode_callerid
from drivers.media.tones import ToneDetector, ToneGenerator
from simulators.actors import ActorError
from simulators.cards import VirtualCards
from simulators.world import World

PHONE, LINE = 1, 5


class Host:
    """The host end of the cards: what it heard per channel and every event, by tick."""

    def __init__(self, **line_options):
        self.cards = VirtualCards([SpanInfo(1, "analog-1", "analog")],
                                  [PortInfo(PHONE, 1, PortKind.FXS), PortInfo(LINE, 1, PortKind.FXO)])
        self.world = World(self.cards)
        self.world.populate({LINE: line_options})
        self.phone = self.world.phone(PHONE)
        self.line = self.world.co_line(LINE)
        self.events = []                 # (tick, channel, HwEvent)
        self.heard = {PHONE: [], LINE: []}
        self.gen = ToneGenerator(2, "cn")
        self.clips = {0: [], 1: []}      # row -> pending int16 audio to send

    def play_tone(self, channel, name):
        self.gen.start(self.cards.port(channel).row, name)

    def send(self, channel, pcm):
        self.clips[self.cards.port(channel).row].append(np.asarray(pcm, np.int16))

    def run(self, ticks):
        for _ in range(ticks):
            self.cards.next_tick()
            self.world.step(self.cards.tick)
            for channel in (PHONE, LINE):
                self.heard[channel].append(self.cards.host_rx()[self.cards.port(channel).row].copy())
            self.events += [(self.cards.tick, e.channel, e.event) for e in self.cards.take_host_events()]
            pcm = self.gen.generate()
            for row, queue in self.clips.items():
                if queue:
                    clip = queue[0][:160]
                    pcm[row, :len(clip)] += clip
                    queue[0] = queue[0][160:]
                    if not len(queue[0]):
                        queue.pop(0)
            self.cards.host_tx(g711.encode("alaw", np.clip(pcm, -32768, 32767).astype(np.int16)))

    def pcm(self, channel, since=0):
        return g711.decode("alaw", np.concatenate(self.heard[channel][since:]))

    def ticks_of(self, channel, event):
        return [t for t, ch, e in self.events if ch == channel and e == event]


def tones_in(pcm, names=None):
    det = ToneDetector(1, "cn")
    det.enable(0, names)
    found = []
    for i in range(0, len(pcm) - 159, 160):
        found += [e.tone for e in det.process(pcm[i:i + 160][None, :])]
    return found


# ---- CO line: incoming calls ------------------------------------------------------------------
def test_co_line_rings_with_the_china_cadence_and_fsk_caller_id_between_rings():
    host = Host()
    host.line.ring(caller_id="13812345678", name="ZHANG SAN")
    host.run(560)
    start = host.ticks_of(LINE, HwEvent.RINGBEGIN)
    on = host.ticks_of(LINE, HwEvent.RINGERON)
    off = host.ticks_of(LINE, HwEvent.RINGEROFF)
    assert len(start) == 1 and on[0] == start[0]
    assert [t - on[0] for t in on] == [0, 250, 500]           # a ring every 5 s
    assert [t - on[0] for t in off] == [50, 300, 550]         # each 1 s long
    pcm = host.pcm(LINE)
    cids = decode_callerid(pcm)
    assert [(c.number, c.name, c.valid) for c in cids] == [("13812345678", "ZHANG SAN", True)]
    # The spill sits between the first and second ring, starting 0.5-1 s after the first ends.
    loud = np.flatnonzero(np.abs(pcm) > 1000)
    first_ring_end, second_ring = (off[0] - 1) * 160, (on[1] - 1) * 160
    assert first_ring_end + 4000 <= loud[0] <= first_ring_end + 8000
    assert loud[-1] < second_ring


def test_sdmf_and_dtmf_caller_id_forms():
    host = Host()
    host.line.ring(caller_id="02087654321", format="sdmf")
    host.run(150)
    assert [c.number for c in decode_callerid(host.pcm(LINE))] == ["02087654321"]
    host = Host()
    host.line.ring(caller_id="13812345678", callerid="dtmf")
    host.run(120)
    digits = "".join(d.digit for d in detect_digits(host.pcm(LINE)))
    assert digits == "A13812345678C"
    first_ring = host.ticks_of(LINE, HwEvent.RINGERON)[0]
    assert first_ring * 160 > len(dtmf_tone("A13812345678C", 70, 70))   # the spill came first


def test_answer_stops_the_ringing_and_far_hangup_gives_busy_tone_only():
    host = Host()
    host.line.ring(caller_id="13812345678", rings=10)
    host.run(300)
    host.cards.host_hook(LINE, HookOp.OFFHOOK)
    host.run(300)
    assert host.line.check("answered")
    rings_after = [t for t in host.ticks_of(LINE, HwEvent.RINGERON) if t > 300]
    assert rings_after == []
    host.line.talk()
    host.run(100)
    talk = host.pcm(LINE, since=-100)
    assert np.sqrt(np.mean(talk.astype(float) ** 2)) > 300          # the far party is audible
    assert detect_digits(talk) == [] and tones_in(talk) == []       # and is neither DTMF nor a tone
    hangup_tick = host.cards.tick
    host.line.hang_up()
    host.run(150)
    assert tones_in(host.pcm(LINE, since=-150)) == ["busy"]
    after = [(t, e) for t, ch, e in host.events if ch == LINE and t > hangup_tick]
    assert after == []                          # busy tone only: no polarity, no loop break
    host.cards.host_hook(LINE, HookOp.ONHOOK)
    host.run(5)
    assert host.line.check("idle")
    quiet = host.pcm(LINE, since=-3)
    assert np.abs(quiet).max() < 100


def test_polarity_reversal_on_hangup_only_when_configured():
    host = Host(polarity_on_hangup=True)
    host.line.ring(caller_id="13812345678")
    host.run(60)
    host.cards.host_hook(LINE, HookOp.OFFHOOK)
    host.run(10)
    host.line.hang_up()
    host.run(5)
    assert len(host.ticks_of(LINE, HwEvent.POLARITY)) == 1 and host.cards.port(LINE).polarity == 1
    host.cards.host_hook(LINE, HookOp.ONHOOK)
    host.run(5)
    assert len(host.ticks_of(LINE, HwEvent.POLARITY)) == 2 and host.cards.port(LINE).polarity == 0


def test_unanswered_call_stops_after_its_rings():
    host = Host()
    host.line.ring(caller_id="13812345678", rings=2)
    host.run(800)
    assert len(host.ticks_of(LINE, HwEvent.RINGERON)) == 2
    assert host.line.check("idle")


# ---- CO line: outbound calls and faults -------------------------------------------------------
def test_outbound_call_gets_dial_tone_digits_ringback_and_answer_with_polarity():
    host = Host(outbound={"8001": {"after": 2.0, "polarity": True}})
    host.cards.host_hook(LINE, HookOp.OFFHOOK)
    host.run(80)
    assert tones_in(host.pcm(LINE)) == ["dial"]
    host.send(LINE, dtmf_tone("8001"))
    host.run(60)                       # digits (0.8 s) and the number is known: routed at once
    assert host.line.digits == "8001"
    assert host.line.state.value == "routing"
    host.run(100)
    assert host.ticks_of(LINE, HwEvent.POLARITY)              # answer supervision
    assert host.line.check("answered")
    ringback = host.pcm(LINE, since=-160)
    assert np.abs(ringback).max() > 1000                       # ringback was playing


def test_outbound_to_a_busy_number():
    host = Host(outbound={"default": {"busy": True}}, interdigit=1.0)
    host.cards.host_hook(LINE, HookOp.OFFHOOK)
    host.run(30)
    host.send(LINE, dtmf_tone("12345"))
    host.run(200)
    assert host.line.digits == "12345"
    assert "busy" in tones_in(host.pcm(LINE, since=-150))


def test_pulling_the_battery_alarms_the_channel_and_drops_the_call():
    host = Host()
    host.line.ring(caller_id="13812345678")
    host.run(60)
    host.cards.host_hook(LINE, HookOp.OFFHOOK)
    host.run(5)
    host.line.remove_battery()
    host.run(5)
    assert host.ticks_of(LINE, HwEvent.ALARM) and not host.cards.port(LINE).battery
    with pytest.raises(ActorError, match="co_line 5 cannot ring while no battery"):
        host.line.ring(caller_id="1")
    host.line.restore_battery()
    host.run(5)
    assert host.ticks_of(LINE, HwEvent.NOALARM) and host.cards.port(LINE).battery
    assert host.line.check("idle")


# ---- phones -------------------------------------------------------------------------------------
def test_phone_hears_dial_tone_then_silence_then_busy():
    host = Host()
    host.phone.off_hook()
    assert host.ticks_of(PHONE, HwEvent.RINGOFFHOOK) == [] and host.events == []   # posted, not yet taken
    host.run(1)
    assert host.ticks_of(PHONE, HwEvent.RINGOFFHOOK) == [1]
    host.run(20)
    assert host.phone.hearing == "silence"
    host.play_tone(PHONE, "dial")
    host.run(30)                       # 0.6 s: dial tone is told from ringback well within 1 s
    assert host.phone.hearing == "dial"
    host.gen.stop(host.cards.port(PHONE).row)
    host.run(10)
    assert host.phone.hearing == "silence"
    host.play_tone(PHONE, "busy")
    host.run(100)
    assert host.phone.hearing == "busy"
    assert host.phone.observed("heard", "dial")[0] and host.phone.observed("heard", "busy")[0]
    assert not host.phone.observed("heard", "ringback")[0]


def test_phone_counts_rings_decodes_fsk_caller_id_and_answers():
    host = Host()
    ring = host.cards.port(PHONE)
    host.cards.host_hook(PHONE, HookOp.RING)
    host.run(50)
    host.cards.host_hook(PHONE, HookOp.RINGOFF)
    host.run(25)
    host.send(PHONE, callerid_fsk("13812345678", name="LI SI"))
    host.run(175)
    host.cards.host_hook(PHONE, HookOp.RING)
    host.run(10)
    assert host.phone.ring_count == 2 and host.phone.check("ringing", rings=2)
    assert host.phone.caller_id == "13812345678"
    assert host.phone.check("caller_id", number="13812345678", name="LI SI")
    host.phone.off_hook()                     # picks up during the second ring
    assert not ring.ringing                   # ring trip
    host.run(1)
    assert host.ticks_of(PHONE, HwEvent.RINGOFFHOOK) == [host.cards.tick]
    assert host.phone.rings[0][1] - host.phone.rings[0][0] == 50


def test_phone_dials_dtmf_and_hears_host_digits():
    host = Host()
    host.phone.off_hook()
    host.phone.dial("8001")
    host.run(50)
    sent = "".join(d.digit for d in detect_digits(host.pcm(PHONE)))
    assert sent == "8001"
    host.send(PHONE, dtmf_tone("42"))
    host.run(30)
    assert host.phone.digits_heard == "42"


def test_phone_refuses_what_a_phone_cannot_do():
    host = Host()
    with pytest.raises(ActorError, match="phone 1 is on-hook: it cannot dial '12'"):
        host.phone.dial("12")
    with pytest.raises(ActorError, match="hook flash needs it off-hook"):
        host.phone.flash()
    host.phone.off_hook()
    with pytest.raises(ActorError, match="already off-hook"):
        host.phone.off_hook()
    with pytest.raises(ValueError, match="channel 5 is an fxo port"):
        World(host.cards).add_phone(LINE)
