"""ACD callbacks and voicemail end to end: ctisim (the far side), cardd and ctid as
processes, CTI clients in the test.

A caller on a CO line waits in a queue with nobody ready, keys the callback key, hears
the confirmation beeps and is released; an agent becomes ready, their phone rings and is
answered, the customer's number is dialled on the CO trunk and the far side answers (a
polarity reversal, cardd's answer_on_polarity): only then is the callback completed. A
customer who is busy: the attempt counts as failed, the entry comes back after
callback_retry_s, and with no attempts left it is given up. A customer who never answers
(a PRI exchange that rings for ever): the attempt fails at callback_dial_timeout_s and,
with no retries, is given up at once. A caller overflowing to voicemail hears the beep,
speaks, keys '#', and the queue log holds the message's WAV.
"""
import os
import time

import pytest

from drivers.media.audiofile import read_8k_mono
from tests.e2e.acd_stack import (ADMIN, PRI_SPAN, WATCHER, AcdStack, agents_toml, cardd_toml,
                                 metrics, queue_log, route, running, story, trunk_group, until)
from tests.e2e.stack import CTID_SECURE_HEAD, tone_dbm0, wait

# Line 5 (group co, 12345) takes the hotline's callers and dials its callbacks; line 6
# (group co2, 12347) reaches the voicemail queue; the PRI span (group pri) brings callers
# dialling 12348 to the courtesy queue and dials its callbacks.
CTID_TOML = (CTID_SECURE_HEAD + trunk_group("co", "node1/5", "12345")
             + trunk_group("co2", "node1/6", "12347")
             + trunk_group("pri", ["node1/32-46", "node1/48-62"])
             + route("12345", "queue:hotline", "trunk") + route("12347", "queue:vm", "trunk")
             + route("12348", "queue:courtesy", "trunk") + """
[acd]
announce = "tones"
figures_every_s = 1
reconcile_every_s = 2

[[queue]]
name = "hotline"
members = ["1001"]
wrapup_s = 1
rona_s = 10
announce = false
callback_key = "1"
callback_trunk = "co"
callback_retries = 1
callback_retry_s = 2

[[queue]]
name = "courtesy"
members = ["1001"]
wrapup_s = 1
announce = false
callback_key = "1"
callback_trunk = "pri"
callback_retries = 0
callback_dial_timeout_s = 3

[[queue]]
name = "vm"
members = ["1002"]
announce = false
overflow = ["wait>=1:voicemail:300"]
""" + agents_toml("1001", "1002"))

CLIENTS = {"admin": ADMIN, "watcher": WATCHER}
LINE = 5                 # the hotline's CO line
VM_LINE = 6


class CallbackStack(AcdStack):
    def __init__(self, d):
        # a callback is answered at the far side's polarity reversal, not at dialling's end
        super().__init__(d, CTID_TOML, CLIENTS, cardd_toml(pri=True, answer_on_polarity=True))

    def figures(self, queue="hotline"):
        s = self.agent("admin", "", "status", device=f"queue:{queue}").status
        return tuple(int(s[f"callbacks_{k}"]) for k in
                     ("requested", "completed", "failed", "abandoned", "pending"))

    def far_side(self, number, **plan):
        """How the exchange behind the CO line treats a call to `number`."""
        full = self.do(LINE, "_plan", raw=plan)
        plans = self.get(LINE, "plans") or {}
        self.sim("set", channel=LINE, attr="plans", value={**plans, number: full})


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with running(CallbackStack(str(tmp_path_factory.mktemp("acd-callbacks-e2e"))),
                 answering=(1, 2, 3, 4), pri=True) as s:   # agents answer 0.5 s into the first ring
        s.agent("admin", "1001", "login", device="ext:8001", reason="not_ready")
        yield s


def register_callback(stack, caller):
    """A caller on the CO line queues, keys 1, hears the confirmation and is released."""
    mark = stack.mark()
    stack.sim("record", channels=[LINE])
    stack.do(LINE, "ring", caller_id=caller)
    queued = until(stack, mark, "Queued", device="queue:hotline", limit=20)
    call = queued.call_id
    assert queued.calling == caller
    wait(lambda: stack.get(LINE, "state") == "connected", "the caller's line answered", stack)
    stack.do(LINE, "press", digits="1")
    reg = until(stack, mark, "CallbackRegistered", call_id=call)
    assert reg.device == "queue:hotline" and reg.data["callback_number"] == caller
    until(stack, mark, "CallCleared", call_id=call, what="the caller released")
    wait(lambda: stack.get(LINE, "state") == "idle", "the CO line idle again", stack)
    confirm = f"{stack.d}/run/acd/callback-confirm.wav"
    heard = stack.sim("measure", channel=LINE, args={"file": confirm})
    assert heard["prompt_at"] >= 0, "the caller did not hear the confirmation beeps"
    return call, mark


def test_a_callback_is_dialled_when_an_agent_answers_and_completed_when_the_customer_does(stack):
    caller = "13911112222"
    stack.far_side(caller, answer=True, after=1.0, polarity=True)
    entry, mark = register_callback(stack, caller)
    assert stack.figures() == (1, 0, 0, 0, 1)

    stack.agent("admin", "1001", "ready")
    delivered = until(stack, mark, "Delivered", device="ext:8001")
    back = delivered.call_id                         # the call back: a call of its own
    assert back != entry and delivered.data["callback"] == entry
    assert delivered.data["callback_number"] == caller and delivered.agent == "1001"
    until(stack, mark, "Established", call_id=back, device="trunk:node1/5",
          what="the customer answering")
    assert stack.figures() == (1, 1, 0, 0, 0)
    assert stack.get(LINE, "state") == "connected" and stack.get(LINE, "digits") == caller
    assert story(stack, mark, back, ["1001"])[:9] == [
        ("AgentReady", "1001:ready"), ("AgentBusy", "1001:reserved"), ("Delivered", "ext:8001"),
        ("AgentBusy", "1001:ringing"), ("Established", "ext:8001"),
        ("AgentBusy", "1001:busy"), ("Originated", "ext:8001"),
        ("Delivered", "trunk:node1/5"), ("Established", "trunk:node1/5")]
    names = [e.name for e in stack.watch.since(mark)]
    assert names.index("CallbackRegistered") < names.index("Originated")

    stack.do(1, "on_hook")                           # the agent ends the call
    until(stack, mark, "CallCleared", call_id=back)
    wait(lambda: stack.get(LINE, "state") == "idle", "the CO line released", stack)
    until(stack, mark, "AgentReady", agent="1001", what="1001 ready after the wrap-up")
    wait(lambda: [r["data"]["attempt"] for r in queue_log(stack, "CALLBACK_CONNECT")] == [1],
         "CALLBACK_CONNECT in the queue log", stack, limit=10)


def test_a_busy_customer_is_retried_then_given_up_and_never_counted_completed(stack):
    caller = "13922223333"
    stack.far_side(caller, busy=True)
    stack.agent("admin", "1001", "not_ready")
    entry, mark = register_callback(stack, caller)
    assert stack.figures() == (2, 1, 0, 0, 1)
    stack.agent("admin", "1001", "ready")

    first = until(stack, mark, "Delivered", device="ext:8001").call_id
    until(stack, mark, "CallCleared", call_id=first, what="the busy attempt ending")
    stack.do(1, "on_hook")                           # the agent hears it drop and hangs up
    assert stack.figures() == (2, 1, 1, 0, 1)        # failed, pending: not completed
    m2 = stack.mark()
    second = until(stack, m2, "Delivered", device="ext:8001", limit=15,
                   what="the retry ringing the agent")
    assert second.data["callback"] == entry and second.data["callback_attempt"] == "2"
    until(stack, m2, "CallCleared", call_id=second.call_id, what="the second busy attempt")
    stack.do(1, "on_hook")
    assert stack.figures() == (2, 1, 2, 1, 0)        # no attempts left: given up

    def logged():
        retry = [r for r in queue_log(stack, "CALLBACK_RETRY") if r["call"] == entry]
        gone = [r for r in queue_log(stack, "CALLBACK_ABANDONED") if r["call"] == entry]
        return retry and gone and (retry, gone)
    retry, gone = wait(logged, "CALLBACK_RETRY and CALLBACK_ABANDONED in the queue log", stack)
    assert [r["data"]["attempt"] for r in retry] == [2] and gone[0]["data"]["attempts"] == 2
    failed = [r for r in queue_log(stack, "CALLBACK_FAILED") if r["call"] == entry]
    assert [r["data"]["attempt"] for r in failed] == [1, 2]
    assert all("cleared" in r["data"]["reason"] for r in failed)
    assert retry[0]["time"] - failed[0]["time"] < 0.5
    # the retry waited callback_retry_s (2 s) before it reached the agent again
    assert second.time - failed[0]["time"] >= 2.0
    text = metrics(stack)
    for outcome, n in (("requested", 2), ("completed", 1), ("failed", 2), ("abandoned", 1)):
        assert (f'hotline_ctid_acd_queue_events_total{{event="callback_{outcome}",'
                f'queue="hotline"}} {n}.0') in text, outcome


def test_a_caller_overflowing_to_voicemail_leaves_a_message_in_a_wav_file(stack):
    mark = stack.mark()
    stack.sim("record", channels=[VM_LINE])
    stack.do(VM_LINE, "ring", caller_id="13733334444")
    queued = until(stack, mark, "Queued", device="queue:vm", limit=20)
    call = queued.call_id
    diverted = until(stack, mark, "Diverted", call_id=call)
    assert diverted.reason == "overflow (wait) to voicemail:300"

    def beeped():
        return stack.sim("measure", channel=VM_LINE, args={"hz": 1000.0, "last_s": 0.3}
                         )["tone_dbm0"] > -25.0
    wait(beeped, "the caller hearing the beep", stack, limit=10, step=0.05)
    wait(lambda: not beeped(), "the beep over", stack, limit=5, step=0.05)
    stack.sim("talk", channel=VM_LINE, hz=600.0, seconds=2.0, level_dbm0=-12.0)
    time.sleep(2.3)
    stack.do(VM_LINE, "press", digits="#")
    until(stack, mark, "CallCleared", call_id=call, what="the line cleared after '#'")

    rows = wait(lambda: [r for r in queue_log(stack, "VOICEMAIL") if r["call"] == call],
                "VOICEMAIL in the queue log", stack, limit=10)
    data = rows[0]["data"]
    assert data["mailbox"] == "300" and data["ok"] is True
    path = data["path"] if os.path.isabs(data["path"]) else f"{stack.d}/run/{data['path']}"
    assert os.path.isfile(path), path
    with open(path, "rb") as f:
        assert f.read(4) == b"RIFF" and f.read(8)[4:] == b"WAVE"
    pcm = read_8k_mono(path)                         # the law-coded file, decoded
    rate = 8000
    seconds = pcm.size / rate
    assert 1.8 <= seconds <= 4.5, seconds            # the 2 s spoken, not the beep or '#'
    assert abs(seconds - data["duration_s"]) < 0.3, (seconds, data["duration_s"])
    assert tone_dbm0(pcm, 600.0, rate) > -20.0       # what the caller said is in it


def test_a_customer_who_never_answers_fails_at_the_dial_timeout_and_is_given_up(stack):
    caller, channel = "13944445555", 39
    # the exchange rings the customer for ever: alerting, never a CONNECT
    stack.sim("pri", span=PRI_SPAN, action="plan", args={"number": caller, "answer": False})
    stack.agent("admin", "1001", "not_ready")
    mark = stack.mark()
    stack.pri_call(channel, "12348", caller)
    queued = until(stack, mark, "Queued", device="queue:courtesy", limit=20)
    entry = queued.call_id
    wait(lambda: stack.sim("pri", span=PRI_SPAN, action="_check_connected"),
         "the caller's call answered by the queue", stack)
    stack.sim("pri", span=PRI_SPAN, action="dtmf", args={"channel": channel, "digits": "1"})
    until(stack, mark, "CallbackRegistered", call_id=entry)
    until(stack, mark, "CallCleared", call_id=entry, what="the caller released")
    assert stack.figures("courtesy") == (1, 0, 0, 0, 1)

    stack.agent("admin", "1001", "ready")
    back = until(stack, mark, "Delivered", device="ext:8001").call_id
    until(stack, mark, "Originated", call_id=back, what="the customer's number dialled")
    cleared = until(stack, mark, "CallCleared", call_id=back, limit=15,
                    what="the unanswered attempt given up at the dial timeout")
    stack.do(1, "on_hook")                           # the agent hears it drop and hangs up
    legs = [(e.name, e.device) for e in stack.watch.since(mark)
            if e.call_id == back and e.device.startswith("trunk:")]
    assert [n for n, _ in legs].count("Delivered") == 1     # the customer's phone rang...
    assert "Established" not in [n for n, _ in legs]          # ...and was never answered
    assert stack.figures("courtesy") == (1, 0, 1, 1, 0)   # failed once, given up, never completed

    def logged():
        failed = [r for r in queue_log(stack, "CALLBACK_FAILED") if r["call"] == entry]
        gone = [r for r in queue_log(stack, "CALLBACK_ABANDONED") if r["call"] == entry]
        return failed and gone and (failed, gone)
    failed, gone = wait(logged, "CALLBACK_FAILED and CALLBACK_ABANDONED in the queue log", stack)
    assert [(r["data"]["attempt"], r["data"]["reason"]) for r in failed] == [(1, "no answer in 3 s")]
    assert gone[0]["data"]["attempts"] == 1 and gone[0]["time"] >= failed[0]["time"]
    assert not [r for r in queue_log(stack, "CALLBACK_RETRY") if r["call"] == entry]
    # the agent: after-call work once the attempt is over, then ready for the next call
    acw = until(stack, mark, "AgentWorkingAfterCall", agent="1001")
    until(stack, acw.seq, "AgentReady", agent="1001", what="1001 ready after the wrap-up")
