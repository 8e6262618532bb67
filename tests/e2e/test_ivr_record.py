"""112 fault report with a real recording: cardd and ctid as processes (the IVR harness),
the caller keys '#' for their own number, hears the prompt, speaks after the beep and
falls silent; cardd records, ends on silence, and the ticket holds the recording."""
import os
import sqlite3

import numpy as np
import pytest

from drivers.media import g711
from drivers.media.levels import rms_to_dbm0
from tests.e2e.ivr_stack import IvrStack

DESCRIBE = "请在嘀声后描述故障情况，说完请按井号键或挂机。"
TICKET_IS = "您的障碍单号是"
TALK_S = 2.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ivr-record"))
    s = IvrStack(d, os.path.join(d, "tts-cache"))
    try:
        s.start()
        yield s
    finally:
        s.close()


def test_112_caller_speaks_after_the_beep_and_the_ticket_keeps_the_recording(stack):
    ani = "01066667777"
    c = stack.call(7, "112", ani, [
        ("hear", "请输入故障电话号码，以井号键结束；查询本机请直接按井号键。"), ("keys", "#"),
        ("hear", DESCRIBE), ("wait", 0.6)])               # the beep (400 ms) plays
    stack.run_until(lambda: c.done, 60, "caller at the beep")
    office = stack.offices[c.span]
    office.talk(7, TALK_S)
    c.script += [("hear", TICKET_IS), ("keys", "9"), ("hangup",)]
    stack.run_until(lambda: c.done, 60, "recording ended by silence, ticket read back")
    with sqlite3.connect(f"{stack.d}/run/ivr-demo.db") as db:
        (phone, recording), = db.execute(
            "SELECT phone, recording FROM tickets WHERE caller = ?", (ani,)).fetchall()
    assert phone == ani
    assert recording.startswith(os.path.join(stack.d, "run", "voicemail", "112", ""))
    data = open(recording, "rb").read()
    assert data[:4] == b"RIFF" and int.from_bytes(data[20:22], "little") == 6   # A-law WAV
    codes = np.frombuffer(data[data.index(b"data") + 8:], dtype=np.uint8)
    # about what was said: the pause after the beep, the talk up to its last syllable
    assert TALK_S - 0.8 <= codes.size / 8000 <= TALK_S + 0.5, codes.size / 8000
    pcm = g711.decode("alaw", codes).astype(float).reshape(-1, 160)
    levels = rms_to_dbm0(np.sqrt((pcm ** 2).mean(axis=1)))
    assert np.median(levels) > -35                      # speech, not silence or the beep


def test_112_caller_who_hangs_up_after_speaking_still_gets_a_ticket(stack):
    """The prompt says "press # or hang up when you are done": hanging up keeps the message
    and the ticket is still created with it."""
    ani = "01066668888"
    c = stack.call(8, "112", ani, [
        ("hear", "请输入故障电话号码，以井号键结束；查询本机请直接按井号键。"), ("keys", "#"),
        ("hear", DESCRIBE), ("wait", 0.6)])
    stack.run_until(lambda: c.done, 60, "caller at the beep")
    office = stack.offices[c.span]
    office.talk(8, TALK_S)
    c.script += [("wait", TALK_S + 0.3), ("hangup",)]

    def ticket():
        with sqlite3.connect(f"{stack.d}/run/ivr-demo.db") as db:
            return db.execute("SELECT phone, recording FROM tickets WHERE caller = ?",
                              (ani,)).fetchall()
    stack.run_until(lambda: c.done and ticket(), 60, "ticket created after the hang-up")
    (phone, recording), = ticket()
    assert phone == ani and recording and os.path.getsize(recording) > 44 + 8000
    assert stack.events_for(ani, "CallCleared")
