"""cardd's PlayPrompt ids: an in-process cardd on the simulated cards (simwire, lockstep
clock) echoes each prompt's id in its PromptDone however the prompt ends: played out,
replaced by another PlayPrompt, stopped by StopMedia, or barged in by a digit."""
import numpy as np
import pytest

from ctid.acd_service.audio import write_wav
from drivers.backends.base import HwEvent
from drivers.media import g711
from drivers.media.dtmf import dtmf_tone
from drivers.signaling.analog.config import SignalingError
from drivers.signaling.analog.timers import check_command as analog_check
from drivers.signaling.pri.commands import check_command as pri_check
from hotline_proto import cardd_pb2
from test_cardd_record import command, events, node  # noqa: F401  (node: the fixture)


def wav(tmp_path, name, seconds):
    t = np.arange(int(seconds * 8000)) / 8000
    return write_wav(str(tmp_path / name), np.round(3000 * np.sin(2 * np.pi * 440 * t))
                     .astype(np.int16))


def play(daemon, channel, files, prompt_id=0, barge_in=False):
    reply = command(daemon, channel, play_prompt=cardd_pb2.PlayPrompt(
        files=files, id=prompt_id, barge_in=barge_in))
    assert reply.ok, reply.error


def done(daemon, sub, ticks):
    daemon.run(max_ticks=daemon.tick + ticks)
    return [(e.prompt_done.id, e.prompt_done.interrupted, e.prompt_done.digit)
            for e in events(sub, "prompt_done")]


def test_prompt_done_names_the_prompt_that_ended(node, tmp_path):
    daemon, cards, talker, sub, cfg = node
    long, short = wav(tmp_path, "long.wav", 5.0), wav(tmp_path, "short.wav", 0.2)
    cards.post_event(2, HwEvent.RINGOFFHOOK)                 # a call on channel 2
    daemon.run(max_ticks=daemon.tick + 5)
    assert command(daemon, 2, stop_media=cardd_pb2.StopMedia()).ok      # no dial tone
    events(sub, "prompt_done")
    play(daemon, 2, [long], 7)
    assert done(daemon, sub, 5) == []
    play(daemon, 2, [short], 8)                              # replaces 7, then plays out
    assert done(daemon, sub, 30) == [(7, True, ""), (8, False, "")]
    play(daemon, 2, [long], 9)
    daemon.run(max_ticks=daemon.tick + 5)
    assert command(daemon, 2, stop_media=cardd_pb2.StopMedia()).ok
    assert done(daemon, sub, 5) == [(9, True, "")]
    play(daemon, 2, [long], 4294967295, barge_in=True)       # the largest id
    daemon.run(max_ticks=daemon.tick + 5)
    talker.say(2, g711.encode(cfg.law, dtmf_tone("5")).reshape(-1, 160))   # the caller keys 5
    assert done(daemon, sub, 30) == [(4294967295, True, "5")]
    play(daemon, 2, [short])                                 # no id: 0 comes back
    assert done(daemon, sub, 30) == [(0, False, "")]


@pytest.mark.parametrize("check_command", [analog_check, pri_check])
@pytest.mark.parametrize("bad", [-1, 2 ** 32, "7", True])
def test_a_prompt_id_the_wire_cannot_carry_is_refused(check_command, bad):
    with pytest.raises(SignalingError, match="play_prompt: id must be a whole number"):
        check_command("play_prompt", {"files": ["a.wav"], "id": bad})
