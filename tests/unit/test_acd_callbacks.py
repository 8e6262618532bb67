"""Callbacks, exactly: completed only when the customer answers, failed attempts retried
after callback_retry_s in the entry's own place, given up when the attempts are used up.
The ACD core with an injected clock, then the service glue (call model, cardd events)."""
import pytest

from ctid.acd import Acd, AcdConfig, AcdError, CallbackDue, CallbackRegistered, QueueConfig
from ctid.acd_service import callbacks as cb_module
from ctid.config import ConfigError, parse_ctid_config
from hotline_proto import cardd_pb2

from acd_helpers import CTID_BASE
from test_acd_service import Bench, cmd, cmds, names


def make(**kw):
    kw.setdefault("wrapup_s", 0.0)
    kw.setdefault("announce_first_s", None)
    acd = Acd([QueueConfig("q", **kw)], AcdConfig(figures_every_s=None))
    acd.add_agent("a")
    return acd


def dues(acts):
    return [(x.call, x.agent, x.attempt) for x in acts if isinstance(x, CallbackDue)]


def cb_log(acd, call=None):
    return [(r.time, r.event, r.data) for r in acd.log.events(call=call)
            if r.event.startswith("CALLBACK")]


def counts(acd, now):
    f = acd.queue_figures("q", now)
    assert f.callbacks_requested == f.callbacks_completed + f.callbacks_abandoned + \
        f.callbacks_pending
    return (f.callbacks_requested, f.callbacks_completed, f.callbacks_failed,
            f.callbacks_abandoned, f.callbacks_pending)


def registered(acd, call="c0", number="13800138000", t=0.0):
    acd.call_arrived(call, "q", number, now=t)
    acts = acd.request_callback(call, None, now=t + 1)
    assert [type(x) for x in acts if isinstance(x, CallbackRegistered)] == [CallbackRegistered]


# ---- the core ---------------------------------------------------------------------------
def test_a_callback_is_completed_when_the_customer_answers_not_when_the_agent_does():
    acd = make(rona_s=10.0)
    registered(acd)
    acts = acd.agent_login("a", "1001", 5)
    assert dues(acts) == [("c0", "a", 1)]
    acd.agent_answered("a", "c0", 7)
    assert acd.calls["c0"].state == "dialling" and acd.agents["a"].state == "busy"
    assert counts(acd, 7) == (1, 0, 0, 0, 1)
    assert acd.tick(60) == [] and acd.agents["a"].state == "busy"    # no RONA while dialling
    assert acd.callback_connected("c0", 62) == []
    assert acd.calls["c0"].state == "connected"
    assert counts(acd, 62) == (1, 1, 0, 0, 0)
    acd.call_ended("c0", 100)
    assert acd.agents["a"].state == "ready" and "c0" not in acd.calls
    assert cb_log(acd) == [
        (1, "CALLBACK_REQUESTED", {"number": "13800138000", "position": 1}),
        (7, "CALLBACK_DIAL", {"number": "13800138000", "attempt": 1}),
        (62, "CALLBACK_CONNECT", {"number": "13800138000", "attempt": 1})]
    assert [r.event for r in acd.log.events(call="c0") if r.event != "AGENT_STATE"][-1] == \
        "COMPLETE"


def test_a_failed_attempt_is_retried_after_the_pause_in_the_entrys_own_place():
    acd = make(callback_retries=2, callback_retry_s=300.0)
    registered(acd, "c0", "010-1", t=0)
    acd.call_arrived("c1", "q", "010-2", now=2)        # a live caller behind the entry
    acd.agent_login("a", "1001", 10)
    acd.agent_answered("a", "c0", 12)
    acts = acd.callback_failed("c0", 20, "busy")
    # the agent wraps up (0 s here) and takes the next in line: the live caller
    assert [(x.agent, x.call) for x in acts if type(x).__name__ == "OfferCall"] == [("a", "c1")]
    assert acd.calls["c0"].state == "callback_retry"
    with pytest.raises(AcdError, match="not waiting"):
        acd.position("c0")
    assert counts(acd, 20) == (1, 0, 1, 0, 1)
    assert cb_log(acd, "c0")[-2:] == [
        (20, "CALLBACK_FAILED", {"reason": "busy", "attempt": 1}),
        (20, "CALLBACK_RETRY", {"attempt": 2, "due": 320.0})]
    acd.agent_answered("a", "c1", 21)
    acd.call_arrived("c2", "q", "010-3", now=200)      # arrived after the entry
    assert acd.tick(319.9) == [] and acd.calls["c0"].state == "callback_retry"
    acd.tick(320)
    assert acd.calls["c0"].state == "callback" and acd.position("c0") == 1
    assert acd.position("c2") == 2                     # the entry kept its place
    acts = acd.call_ended("c1", 330)
    assert dues(acts) == [("c0", "a", 2)]              # the second attempt
    acd.agent_answered("a", "c0", 331)
    acd.callback_failed("c0", 340, "no answer")
    assert counts(acd, 340) == (1, 0, 2, 0, 1)
    acd.agent_answered("a", "c2", 340)
    acd.tick(640)
    acts = acd.call_ended("c2", 650)
    assert dues(acts) == [("c0", "a", 3)]
    acd.agent_answered("a", "c0", 651)
    acts = acd.callback_failed("c0", 660, "busy")      # the last attempt: given up
    assert "c0" not in acd.calls and acd.agents["a"].state == "ready"
    assert counts(acd, 660) == (1, 0, 3, 1, 0)
    assert [e for _, e, _ in cb_log(acd, "c0")] == [
        "CALLBACK_REQUESTED", "CALLBACK_DIAL", "CALLBACK_FAILED", "CALLBACK_RETRY",
        "CALLBACK_DIAL", "CALLBACK_FAILED", "CALLBACK_RETRY",
        "CALLBACK_DIAL", "CALLBACK_FAILED", "CALLBACK_ABANDONED"]
    assert cb_log(acd, "c0")[-1] == (660, "CALLBACK_ABANDONED", {"attempts": 3})
    assert acd.tick(2000) == []                         # nothing left to retry


def test_the_agent_who_answered_wraps_up_after_a_failed_attempt():
    acd = make(wrapup_s=15.0, callback_retries=0)
    registered(acd)
    acd.agent_login("a", "1001", 5)
    acd.agent_answered("a", "c0", 6)
    acd.callback_failed("c0", 30, "busy")
    assert acd.agents["a"].state == "after_call_work"
    assert counts(acd, 30) == (1, 0, 1, 1, 0)          # no retries: abandoned at once
    acd.tick(45)
    assert acd.agents["a"].state == "ready"


def test_a_failure_before_the_agent_answered_frees_the_agent_at_once():
    acd = make(callback_retry_s=60.0)
    registered(acd)
    acd.agent_login("a", "1001", 5)                    # reserved for the entry
    acts = acd.callback_failed("c0", 5, "no callback_trunk")
    assert acd.agents["a"].state == "ready" and acd.calls["c0"].state == "callback_retry"
    assert [(x.old, x.new) for x in acts if type(x).__name__ == "AgentStateChanged"] == [
        ("reserved", "ready")]
    acts = acd.tick(65)                                # back, and the idle agent gets it
    assert dues(acts) == [("c0", "a", 2)]


def test_an_agent_not_answering_is_not_a_failed_attempt():
    acd = make(rona_s=10.0)
    registered(acd)
    acd.agent_login("a", "1001", 5)
    acd.tick(15)
    assert acd.agents["a"].state == "not_ready" and acd.calls["c0"].state == "callback"
    assert counts(acd, 15) == (1, 0, 0, 0, 1)
    assert dues(acd.set_ready("a", 20)) == [("c0", "a", 1)]


def test_the_agent_hanging_up_while_dialling_is_a_failed_attempt():
    acd = make()
    registered(acd)
    acd.agent_login("a", "1001", 5)
    acd.agent_answered("a", "c0", 6)
    acd.call_ended("c0", 9)
    assert acd.calls["c0"].state == "callback_retry"
    assert cb_log(acd)[-2][1:] == ("CALLBACK_FAILED", {
        "reason": "cleared before the customer answered", "attempt": 1})


def test_a_cancelled_entry_counts_as_abandoned():
    acd = make()
    registered(acd)
    acd.agent_login("a", "1001", 5)
    acd.agent_answered("a", "c0", 6)
    acd.callback_failed("c0", 7, "busy")
    acd.call_abandoned("c0", 8)                        # withdrawn while waiting to retry
    assert "c0" not in acd.calls and counts(acd, 8) == (1, 0, 1, 1, 0)
    assert cb_log(acd)[-1] == (8, "CALLBACK_CANCELLED", {})
    assert acd.tick(1000) == []


def test_callback_calls_out_of_turn_are_refused_and_change_nothing():
    acd = make()
    acd.call_arrived("c0", "q", "010-1", now=0)
    with pytest.raises(AcdError, match="not a callback"):
        acd.callback_connected("c0", 1)
    acd.request_callback("c0", None, now=1)
    with pytest.raises(AcdError, match="'connected' does not apply"):
        acd.callback_connected("c0", 2)
    with pytest.raises(AcdError, match="'failed' does not apply"):
        acd.callback_failed("c0", 2)
    acd.agent_login("a", "1001", 3)
    with pytest.raises(AcdError, match=r"offered \(a callback\): 'connected' does not apply"):
        acd.callback_connected("c0", 4)
    assert acd.calls["c0"].state == "offered" and counts(acd, 4) == (1, 0, 0, 0, 1)
    with pytest.raises(AcdError, match="unknown call"):
        acd.callback_failed("nope", 4)


@pytest.mark.parametrize("key, value, message", [
    ("callback_retries", -1, "callback_retries must be a whole number >= 0, got -1"),
    ("callback_retries", 1.5, "callback_retries must be a whole number >= 0, got 1.5"),
    ("callback_retries", True, "callback_retries must be a whole number >= 0, got True"),
    ("callback_retry_s", -5, "callback_retry_s must be >= 0, got -5"),
])
def test_retry_settings_are_checked(key, value, message):
    with pytest.raises(AcdError, match=message):
        QueueConfig("q", **{key: value})


CONFIG = CTID_BASE + """
[[queue]]
name = "hotline"
callback_key = "1"
callback_trunk = "co"
"""


def test_ctid_toml_reads_the_retry_settings_and_names_bad_ones(tmp_path):
    cfg = parse_ctid_config(CONFIG.format(run=tmp_path), "ctid.toml")
    assert (cfg.queues[0].callback_retries, cfg.queues[0].callback_retry_s) == (2, 300.0)
    cfg = parse_ctid_config(CONFIG.format(run=tmp_path)
                            + "callback_retries = 4\ncallback_retry_s = 90\n", "ctid.toml")
    assert (cfg.queues[0].callback_retries, cfg.queues[0].callback_retry_s) == (4, 90.0)
    text = CONFIG.format(run=tmp_path) + "callback_retries = 1.5\ncallback_retry_s = -3\n"
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "ctid.toml")
    lines = text.splitlines()
    where = [p.where() for p in e.value.problems]
    assert where[0].startswith(f"ctid.toml:{lines.index('callback_retries = 1.5') + 1}: "
                               "queue[0].callback_retries:")
    assert len(where) == 1 or "callback_retry_s" in where[1]


# ---- the service: the far side answers, is busy, or never answers ------------------------
def callback_bench(tmp_path, **queue):
    q = QueueConfig("hotline", members=("1001", "1002"), wrapup_s=5, rona_s=10,
                    announce_first_s=None, **queue)
    b = Bench(tmp_path, queues=[q], callbacks={"hotline": ("1", "co")})
    b.agent(1, "1001", "not_ready")
    b.agent(1, "1002", "not_ready")
    b.records = []
    b.svc.writer = b.records.append
    b.incoming(2, "13800138000")
    b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())     # confirmed, released
    b.agent(30, "1001", "ready")
    out = b.answer(33, 1)                              # the agent answers: dial
    assert cmd(out, 5, "dial").dial.number == "13800138000"
    return b


def figures(b):
    f = b.svc.acd.queue_figures("hotline", b.now)
    return (f.callbacks_requested, f.callbacks_completed, f.callbacks_failed,
            f.callbacks_abandoned, f.callbacks_pending)


def test_service_counts_the_callback_completed_when_the_trunk_answers(tmp_path):
    b = callback_bench(tmp_path)
    assert figures(b) == (1, 0, 0, 0, 1)
    out = b.answer(40, 5)
    assert "Established" in names(out) and (5, "bridge") in cmds(out)
    assert figures(b) == (1, 1, 0, 0, 0)
    b.hang_up(100, 5)
    assert b.svc.acd.agents["1001"].state == "after_call_work"
    assert [r.event for r in b.records if r.event.startswith("CALLBACK") or r.event == "COMPLETE"] \
        == ["CALLBACK_REQUESTED", "CALLBACK_DIAL", "CALLBACK_CONNECT", "COMPLETE"]


def test_service_retries_a_busy_customer_as_a_new_callback_later(tmp_path):
    b = callback_bench(tmp_path, callback_retry_s=60.0)
    out = b.ev(40, 5, cleared=cardd_pb2.Cleared(cause=17))     # busy tone at the far end
    assert (1, "hangup") in cmds(out) and "CallCleared" in names(out)
    assert figures(b) == (1, 0, 1, 0, 1)
    (failed,) = [r for r in b.records if r.event == "CALLBACK_FAILED"]
    assert failed.data["attempt"] == 1 and "cleared" in failed.data["reason"]
    assert b.svc.acd.agents["1001"].state == "after_call_work" and not b.svc.placing
    b.hang_up(41, 1)                                   # the agent puts the handset down
    b.tick(99)
    assert b.svc.acd.calls[failed.call].state == "callback_retry"
    out = b.tick(100)                                  # 40 + 60: the agent's phone rings again
    assert cmd(out, 1, "ring").ring.caller_id == "13800138000"
    (pl,) = b.svc.placing.values()
    assert pl.attempt == 2 and b.model.calls[pl.call_id].data["callback_attempt"] == "2"
    b.answer(103, 1)
    b.answer(110, 5)
    assert figures(b) == (1, 1, 1, 0, 0)


def test_service_fails_an_attempt_nobody_answers_within_the_dial_timeout(tmp_path):
    b = callback_bench(tmp_path, callback_retries=0)
    b.tick(33 + cb_module.DIAL_TIMEOUT_S - 1)
    assert figures(b) == (1, 0, 0, 0, 1)
    out = b.tick(33 + cb_module.DIAL_TIMEOUT_S)
    assert "CallCleared" in names(out) and (1, "hangup") in cmds(out) and (5, "hangup") in cmds(out)
    assert figures(b) == (1, 0, 1, 1, 0)
    (failed,) = [r for r in b.records if r.event == "CALLBACK_FAILED"]
    assert failed.data["reason"] == f"no answer in {cb_module.DIAL_TIMEOUT_S:g} s"
    assert [r.event for r in b.records][-1] != "CALLBACK_RETRY" and not b.svc.placing


def test_service_without_a_trunk_fails_the_attempt_and_frees_the_agent(tmp_path):
    q = QueueConfig("hotline", members=("1001",), announce_first_s=None,
                    callback_retries=0)
    b = Bench(tmp_path, queues=[q], callbacks={"hotline": ("1", "")})
    b.agent(1, "1001", "not_ready")
    b.incoming(2, "13800138000")
    b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))   # the music, stopped
    b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())
    out = b.agent(30, "1001", "ready") and b.last
    assert b.svc.acd.agents["1001"].state == "ready" and not b.svc.placing
    assert "ring" not in [k for _, k in cmds(out)]
    f = b.svc.acd.queue_figures("hotline", b.now)
    assert (f.callbacks_failed, f.callbacks_abandoned) == (1, 1)


def test_the_caller_hears_the_whole_confirmation_before_the_line_is_cleared(tmp_path):
    q = QueueConfig("hotline", members=("1001",), announce_first_s=None)
    b = Bench(tmp_path, queues=[q], callbacks={"hotline": ("1", "co")})
    b.agent(1, "1001", "not_ready")
    call = b.incoming(2, "13800138000")
    out = b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    assert cmds(out) == [(5, "stop_media"), (5, "play_prompt")]
    # the music's own PromptDone (stopped) comes after the confirmation started
    out = b.ev(6.1, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))
    assert "CallCleared" not in names(out) and call in b.model.calls
    out = b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())
    assert "CallCleared" in names(out) and call not in b.model.calls
