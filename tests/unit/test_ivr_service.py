"""The IVR shell ctid hosts: cardd events in, cardd commands (with rendered prompt files)
and call actions out; look-ups on real SQLite; TTS through espeak-ng."""
import time
import wave
from pathlib import Path

import pytest

from hotline_proto import cardd_pb2
from ivr import interpreter as ia
from ivr.lookup import LookupService, run_script
from ivr.prompts import PromptResolver
from ivr.service import CallAction, ChannelCommand, IvrError, IvrService
from ivr.stats import IvrStats
from ivr.tts import Tts
from ivr.validate import load_checked

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"
BILL = load_checked([ETC / "bill170.yaml"])


def ev(channel, **kind):
    e = cardd_pb2.ChannelEvent(channel=channel)
    (field, msg), = kind.items()
    getattr(e, field).CopyFrom(msg)
    return e


def done(channel=5, interrupted=False, digit=""):
    return ev(channel, prompt_done=cardd_pb2.PromptDone(interrupted=interrupted, digit=digit))


def digit(d, channel=5):
    return ev(channel, digit=cardd_pb2.Digit(digit=d))


def settle(svc, now, want=1, limit_s=20.0):
    """Tick until `want` effects came out (renders and look-ups run on threads)."""
    out, end = [], time.monotonic() + limit_s
    while len(out) < want and time.monotonic() < end:
        out += svc.tick(now)
        if len(out) < want:
            time.sleep(0.005)
    return out


def plays(effects):
    return [list(e.command.play_prompt.files) for e in effects
            if isinstance(e, ChannelCommand) and e.command.WhichOneof("kind") == "play_prompt"]


@pytest.fixture(scope="module")
def tts(tmp_path_factory):
    t = Tts(tmp_path_factory.mktemp("tts"))
    PromptResolver(t).prewarm(BILL)
    return t


@pytest.fixture
def demo_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    run_script(url, str(ETC / "demo.sql"))
    return url


def test_bill170_call_through_the_service(tts, demo_db):
    stats = IvrStats()
    svc = IvrService(BILL, PromptResolver(tts), lookups=LookupService(overrides={"billing": demo_db}),
                     stats=stats)
    t = 1000.0
    (cmd,) = svc.start("C1", "bill170", "node1", 5, ani="13800138000", dnis="170", now=t)
    assert cmd.node == "node1" and cmd.command.channel == 5
    pp = cmd.command.play_prompt
    assert pp.barge_in and pp.files == [str(tts.path_for("欢迎使用话费查询服务。"))]
    with wave.open(pp.files[0]) as w:
        assert w.getframerate() == 8000

    assert plays(svc.on_channel_event("node1", done(), t + 2)) == [[str(tts.path_for(
        "请输入您要查询的十一位手机号码，以井号键结束。"))]]
    svc.on_channel_event("node1", done(), t + 5)
    out = []
    for d in "13800138000":
        out += svc.on_channel_event("node1", digit(d), t + 6)
    assert len(plays(out)) == 1
    svc.on_channel_event("node1", done(), t + 8)
    for d in "123456":
        assert svc.on_channel_event("node1", digit(d), t + 9) == []     # look-up running
    out = settle(svc, t + 9.1)
    (files,) = plays(out)
    assert files[0] == str(tts.path_for("您的话费余额为"))
    assert files[1] == str(tts.path_for("十二元三角"))       # rendered for this call
    assert Path(files[1]).is_file() and Path(files[3]).is_file()
    svc.on_channel_event("node1", done(), t + 15)
    svc.on_channel_event("node1", done(), t + 18)
    out = svc.on_channel_event("node1", digit("9"), t + 19)
    assert plays(out) == [[str(tts.path_for("感谢您的来电，再见。"))]]
    out = svc.on_channel_event("node1", done(), t + 21)
    assert [type(e.action) for e in out] == [ia.Hangup, ia.End]
    assert all(isinstance(e, CallAction) and e.call_id == "C1" for e in out)
    assert svc.ports == {}
    assert svc.status()["outcome.hangup"] == 1
    assert stats.node("bill170", "fetch").exits == {"next": 1}
    svc.close()


def test_uncached_prompts_render_off_the_loop_in_order(tmp_path):
    fresh = Tts(tmp_path)
    svc = IvrService(BILL, PromptResolver(fresh))
    t = 5.0
    assert svc.start("C2", "bill170", "node1", 6, now=t) == []        # rendering
    # the caller hangs up before the prompt is ready: the session ends at once, and the
    # queued play still goes out first, in order, then the port is gone
    out = svc.on_channel_event("node1", ev(6, cleared=cardd_pb2.Cleared(cause=16)), t + 0.1)
    assert out == []
    out = settle(svc, t + 0.2, want=2)
    assert [type(e).__name__ for e in out] == ["ChannelCommand", "CallAction"]
    assert out[1].action.outcome == "abandoned"
    assert fresh.renders == 1 and svc.ports == {}
    svc.close()


def test_unrenderable_prompt_is_left_out_and_the_flow_goes_on(tmp_path):
    broken = Tts(tmp_path, voices={"zh": "no-such-voice"})
    svc = IvrService(BILL, PromptResolver(broken))
    assert svc.start("C3", "bill170", "node1", 7, now=0) == []
    # no playable file for the welcome nor the next prompt: no PlayPrompt goes out, and
    # the session does not hang in silence: it waits for the number, timer running
    assert settle(svc, 0.1, want=1, limit_s=2.0) == []
    port = svc.ports["C3"]
    assert port.session.state is ia.State.INPUT and port.session.deadline == pytest.approx(8.0)
    assert svc.counters["prompt_errors"] == 2
    svc.close()


def test_refused_play_moves_on_and_bad_starts_are_refused(tts):
    svc = IvrService(BILL, PromptResolver(tts))
    svc.start("C4", "bill170", "node1", 8, now=0)
    out = svc.command_failed("C4", "play_prompt", "no such file", 0.5)
    assert plays(out) == [[str(tts.path_for("请输入您要查询的十一位手机号码，以井号键结束。"))]]
    with pytest.raises(IvrError, match="already in the IVR"):
        svc.start("C4", "bill170", "node1", 9, now=1)
    with pytest.raises(IvrError, match="channel node1/8 already serves"):
        svc.start("C5", "bill170", "node1", 8, now=1)
    with pytest.raises(IvrError, match="no IVR flow named 'nope'"):
        svc.start("C5", "nope", "node1", 9, now=1)
    assert svc.on_channel_event("node1", digit("1", channel=30), 1) == []
    assert svc.on_channel_event("node2", digit("1", channel=8), 1) == []
    svc.close()


def test_timers_fire_from_tick(tts):
    svc = IvrService(BILL, PromptResolver(tts))
    svc.start("C6", "bill170", "node1", 10, now=0)
    svc.on_channel_event("node1", done(10), 1)
    svc.on_channel_event("node1", done(10), 2)             # ask_phone finished: 8 s to key
    assert svc.tick(9.9) == []
    out = svc.tick(10.0)
    assert len(plays(out)) == 1                            # no_input + ask_phone again
    svc.close()


def test_benchmark_commands_walk_their_calls_to_the_end(tts):
    from ivr.tools import bench_interpreter, bench_service
    assert bench_interpreter(3)["calls"] == 3              # every walk ends in a hang-up
    r = bench_service(4, str(tts.cache_dir))
    assert r["completed"] == 4 and r["play_commands"] >= 24   # (+ wait prompts if slow)
