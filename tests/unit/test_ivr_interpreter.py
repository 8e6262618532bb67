"""The interpreter walks the shipped flows: scripted keys, invalid keys, timeouts, look-up
answers, hang-ups; exact action sequences on an injected clock."""
import datetime as dt
import json
import textwrap
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from ivr.flow import FlowSet, load_flow
from ivr.interpreter import (CallInfo, Collect, End, FaxBack, Hangup, IvrSession, Lookup, Play,
                             Prompt, Queue, RecordVoicemail, SetVar, StopMedia, Transfer)
from ivr.lookup import LookupResult
from ivr.stats import IvrStats
from ivr.validate import load_checked

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"
FLOWS = load_checked([ETC])
TZ = ZoneInfo("Asia/Shanghai")


def at(*args):
    return dt.datetime(*args, tzinfo=TZ).timestamp()


MON_10 = at(2026, 11, 23, 10, 0)        # a Monday in office hours
PIN_HASH = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"   # 123456


def P(flow, name, lang="zh"):
    """The catalog prompt `name` of `flow` as the interpreter must play it."""
    by_lang = FLOWS[flow].prompts[name].by_lang
    entry = by_lang.get(lang) or by_lang["*"]
    return Prompt(entry.text, entry.file, lang)


def T(text, lang="zh"):
    return Prompt(text, "", lang)


class Caller:
    """Drives one session: each call advances the injected clock and returns the actions."""

    def __init__(self, flow, ani="13800138000", t0=MON_10, flows=FLOWS, **kw):
        self.stats = kw.pop("stats", IvrStats())
        self.s = IvrSession(flows, flow, CallInfo("C1", ani, "12345"), stats=self.stats, **kw)
        self.t = t0

    def start(self):
        return self.s.start(self.t)

    def done(self, after=2.0, interrupted=False, digit=""):
        self.t += after
        return self.s.on_prompt_done(interrupted, digit, self.t)

    def keys(self, digits, gap=0.4):
        out = []
        for d in digits:
            self.t += gap
            out += self.s.on_digit(d, self.t)
        return out

    def wait(self, seconds):
        self.t += seconds
        return self.s.on_timer(self.t)

    def answer(self, request_id, after=0.2, **result):
        self.t += after
        return self.s.on_lookup_result(request_id, LookupResult(**result), self.t)


def data(caller, **extra):
    """The attached data a leaving call must carry (trail JSON checked apart)."""
    d = caller.s.attached_data()
    d.update(extra)
    return d


CRM_LOOKUP = Lookup("C1:1", "crm", "http", "http://127.0.0.1:8089", "callers/13800138000", {},
                    2.0, "GET")
LANG_PLAY = Play((P("gov12345", "choose_language"), T("For English, press 2.", "en")), True)


# ---- 12345 ---------------------------------------------------------------------------
def to_main(c):
    """Start a 12345 call and bring it to the main menu (Mandarin, not a VIP)."""
    c.start(); c.done(); c.wait(4); c.done()
    return c.answer("C1:1", ok=True, row=None)


def test_12345_mandarin_by_default_invalid_key_then_consult_queue():
    c = Caller("gov12345")
    assert c.start() == [LANG_PLAY]
    assert c.done() == []
    assert c.wait(3.9) == []                                 # not yet
    assert c.wait(0.1) == [SetVar("lang", "zh"), Play((P("gov12345", "welcome"),), True)]
    assert c.done() == [CRM_LOOKUP]
    assert c.answer("C1:1", ok=True, row=None) == [Play((P("gov12345", "main_menu"),), True)]
    assert c.done() == []
    assert c.keys("9") == [Play((P("gov12345", "invalid"), P("gov12345", "main_menu")), True)]
    assert c.done() == []
    assert c.keys("1") == [Play((P("gov12345", "transferring"),), False)]
    trail = "screen>language>welcome>profile>hours>main[91]>consult"
    actions = c.done()
    assert actions == [Queue("gov12345-consult", 0, data(c, service="consult", vip="no")),
                       End("queued", trail)]
    d = actions[0].data
    assert d["ivr_trail"] == trail and d["ivr_flow"] == "gov12345" and d["ivr_lang"] == "zh"
    steps = json.loads(d["ivr_trail_json"])
    assert [(s["node"], s["keys"], s["exit"]) for s in steps] == [
        ("screen", "", "else"), ("language", "", "default"), ("welcome", "", "next"),
        ("profile", "", "not_found"), ("hours", "", "else"), ("main", "91", "1"),
        ("consult", "", "queued")]
    assert steps[-1]["t"] == pytest.approx(c.t - MON_10 - 2.0)
    assert c.s.finished and c.s.outcome == "queued"
    assert c.keys("1") == [] and c.done() == []                # a finished session ignores all


def test_12345_english_vip_barge_in_to_priority_operator():
    c = Caller("gov12345")
    assert c.start() == [LANG_PLAY]
    # barge-in as cardd reports it: PromptDone(interrupted, digit) first, then the Digit
    assert c.done(after=1.0, interrupted=True, digit="2") == []
    assert c.keys("2", gap=0.0) == [SetVar("lang", "en"), Play((P("gov12345", "welcome", "en"),), True)]
    assert c.done() == [CRM_LOOKUP]
    assert c.answer("C1:1", ok=True, row={"vip": "yes", "name": "张三"}) == [
        SetVar("vip", "yes"), Play((P("gov12345", "main_menu", "en"),), True)]
    assert c.done() == []
    assert c.keys("0") == [Play((P("gov12345", "transferring", "en"),), False)]
    assert c.done() == [Queue("gov12345-consult", 10, data(c, service="operator", vip="yes")),
                        End("queued", "screen>language[2]>welcome>profile>hours>main[0]>operator>vip_operator")]


def test_12345_digit_before_prompt_done_makes_that_report_stale():
    c = Caller("gov12345")
    c.start()
    # another backend's order: the Digit first; the PromptDone that follows is stale
    assert c.keys("2", gap=1.0) == [SetVar("lang", "en"), Play((P("gov12345", "welcome", "en"),), True)]
    assert c.done(after=0.02, interrupted=True, digit="2") == []          # the language prompt's
    assert c.done() == [CRM_LOOKUP]                                       # the welcome's


def test_12345_slow_crm_gets_a_wait_prompt_then_the_flow_goes_on():
    c = Caller("gov12345")
    c.start(); c.done(); c.wait(4)
    assert c.done() == [CRM_LOOKUP]
    assert c.wait(0.49) == []
    assert c.wait(0.01) == [Play((P("gov12345", "please_wait"),), False)]
    assert c.wait(1.5) == [SetVar("lookup_error", "timeout"), Play((P("gov12345", "main_menu"),), True)]
    assert c.answer("C1:1", ok=True, row={"vip": "yes"}) == []           # too late: ignored
    # cardd reports the replaced wait prompt, then the menu: only the second one counts
    assert c.done(after=0.02, interrupted=True) == []
    assert c.done() == []
    assert c.keys("2") == [Play((P("gov12345", "transferring"),), False)]
    assert c.s.vars["vip"] == "no"


def test_12345_menu_timeouts_exhaust_retries_to_operator():
    stats = IvrStats()
    c = Caller("gov12345", stats=stats)
    to_main(c)
    assert c.done() == []
    retry = Play((P("gov12345", "no_input"), P("gov12345", "main_menu")), True)
    assert c.wait(6) == [retry]
    assert c.done() == [] and c.wait(6) == [retry]
    assert c.done() == []
    assert c.wait(5.9) == []
    assert c.wait(0.1) == [Play((P("gov12345", "transferring"),), False)]
    assert c.done()[0] == Queue("gov12345-consult", 0, data(c, service="operator", vip="no"))
    main = stats.node("gov12345", "main")
    assert main.entries == 1 and main.exits == {"fail": 1} and main.events == {"no_input": 3}
    assert main.time_s == pytest.approx(2 + 6 + 2 + 6 + 2 + 6)


def test_12345_repeat_key_does_not_use_a_retry():
    c = Caller("gov12345")
    to_main(c)
    c.done()
    menu = Play((P("gov12345", "main_menu"),), True)
    for _ in range(4):
        assert c.keys("*") == [menu]
        assert c.done() == []
    assert c.keys("2") == [Play((P("gov12345", "transferring"),), False)]


def test_12345_case_number_is_collected_and_read_back_digit_by_digit():
    c = Caller("gov12345")
    to_main(c)
    c.done()
    assert c.keys("3") == [Collect("case_no", 8, 8, "#", 8.0, 4.0),
                           Play((P("gov12345", "ask_case"),), True)]
    assert c.done() == []
    assert c.keys("1234567") == []
    assert c.keys("8") == [SetVar("case_no", "12345678"),
                           Play((P("gov12345", "case_is"), T("幺二三四五六七八")), False)]
    assert c.done() == [Play((P("gov12345", "transferring"),), False)]
    q = c.done()[0]
    assert q.data["case_no"] == "12345678" and q.data["service"] == "progress"
    assert q.data["ivr_trail"].endswith("main[3]>ask_case[12345678]>case_read_back>case_queue")


def test_12345_short_case_number_times_out_as_invalid():
    c = Caller("gov12345")
    to_main(c)
    c.done()
    c.keys("3"); c.done()
    assert c.keys("1234") == []
    assert c.wait(3.9) == []
    assert c.wait(0.1) == [Play((P("gov12345", "invalid"), P("gov12345", "ask_case")), True)]


@pytest.mark.parametrize("when, closed", [
    (at(2026, 11, 23, 20, 0), True),     # Monday evening
    (at(2026, 10, 1, 10, 0), True),      # National Day holiday (a Thursday)
    (at(2026, 10, 10, 10, 0), False),    # Saturday made a working day
    (at(2026, 11, 22, 10, 0), True),     # an ordinary Sunday
])
def test_12345_after_hours_takes_a_message(when, closed):
    c = Caller("gov12345", t0=when)
    c.start(); c.done(); c.wait(4)
    assert c.done() == [CRM_LOOKUP]
    actions = c.answer("C1:1", ok=False, error="http: connection refused")
    assert actions[0] == SetVar("lookup_error", "http: connection refused")
    if not closed:
        assert actions[1:] == [Play((P("gov12345", "main_menu"),), True)]
        return
    assert actions[1:] == [Play((P("gov12345", "after_hours"),), False)]
    assert c.keys("5") == []                                 # that prompt cannot be skipped
    actions = c.done(after=10)
    assert actions == [RecordVoicemail("12345", 120.0, 5.0, True, data(c, service="after_hours"))]
    assert c.s.deadline == pytest.approx(c.t + 130)
    c.t += 35
    assert c.s.on_record_done(True, "/spool/vm/12345/1.wav", 35.0, c.t) == [
        SetVar("message", "/spool/vm/12345/1.wav"), Play((P("gov12345", "goodbye"),), False)]
    assert c.done() == [Hangup(16), End("hangup", "screen>language>welcome>profile>hours>after_hours>goodbye")]


def test_12345_recording_that_never_reports_still_ends():
    c = Caller("gov12345", t0=at(2026, 11, 23, 20, 0))
    to_main(c)
    c.done()
    assert c.wait(129.9) == []
    assert c.wait(0.1) == [SetVar("message", ""), Play((P("gov12345", "goodbye"),), False)]


def test_12345_blacklisted_caller_is_refused():
    c = Caller("gov12345", ani="13900000000")
    assert c.start() == [Play((P("gov12345", "refused"),), False)]
    assert c.done() == [Hangup(21), End("hangup", "screen>refuse")]


def test_12345_hangup_in_menu_is_an_abandon():
    stats = IvrStats()
    c = Caller("gov12345", stats=stats)
    to_main(c)
    c.t += 3
    assert c.s.on_hangup(c.t) == [End("abandoned", "screen>language>welcome>profile>hours>main")]
    assert c.s.deadline is None
    main = stats.node("gov12345", "main")
    assert main.abandons == 1 and main.exits == {} and main.time_s == pytest.approx(3)
    assert stats.node("gov12345", "welcome").exits == {"next": 1}


def test_12345_max_duration_sends_the_caller_to_an_operator():
    c = Caller("gov12345")
    to_main(c)
    # the caller keeps asking for a repeat; after 600 s in the IVR the flow gives up
    while c.t < MON_10 + 590:
        c.done(); c.keys("*")
    assert c.wait(MON_10 + 600 - c.t) == [StopMedia(), Play((P("gov12345", "transferring"),), False)]
    assert c.done(after=0.05, interrupted=True) == []          # the stopped menu prompt
    assert c.done()[0].queue == "gov12345-consult"


# ---- 170 -------------------------------------------------------------------------------
def bill_lookup(n=1, phone="13800138000"):
    return Lookup(f"C1:{n}", "billing", "sql", "sqlite:///run/ivr-demo.db",
                  "SELECT pin_sha256, balance, due_date FROM accounts WHERE phone = :phone",
                  {"phone": phone}, 2.0)


def test_170_balance_in_money_form():
    c = Caller("bill170")
    assert c.start() == [Play((P("bill170", "welcome"),), True)]
    assert c.done() == [Collect("phone", 11, 11, "#", 8.0, 4.0), Play((P("bill170", "ask_phone"),), True)]
    assert c.done() == []
    assert c.keys("13800138000") == [SetVar("phone", "13800138000"),
                                     Collect("pin", 6, 6, "#", 8.0, 4.0),
                                     Play((P("bill170", "ask_pin"),), True)]
    assert c.done() == []
    assert c.keys("123456") == [bill_lookup()]                # no SetVar: the PIN is secret
    assert c.answer("C1:1", ok=True, row={"pin_sha256": PIN_HASH, "balance": 12.3,
                                          "due_date": "2026-12-15"}) == [
        SetVar("expected", PIN_HASH), SetVar("balance", "12.3"), SetVar("due", "2026-12-15"),
        Play((P("bill170", "balance_is"), T("十二元三角"), P("bill170", "due_is"),
              T("二零二六年十二月十五日")), True)]
    assert c.done() == [Play((P("bill170", "after_balance"),), True)]
    assert c.done() == []
    assert c.keys("1") == [Play((P("bill170", "balance_is"), T("十二元三角"), P("bill170", "due_is"),
                                 T("二零二六年十二月十五日")), True)]
    assert c.done() == [Play((P("bill170", "after_balance"),), True)]
    c.done()
    assert c.keys("9") == [Play((P("bill170", "goodbye"),), False)]
    assert c.done() == [Hangup(16), End("hangup", "welcome>ask_phone[13800138000]>ask_pin[******]>"
                                                   "fetch>check>say_balance>after_balance[1]>"
                                                   "say_balance>after_balance[9]>goodbye")]
    assert "123456" not in c.s.attached_data()["ivr_trail_json"]
    assert [r["result"] for r in c.s.guard.audit_log] == ["ok"]


def test_170_invalid_number_then_terminator():
    c = Caller("bill170")
    c.start(); c.done(); c.done()
    assert c.keys("12345678901") == [Play((P("bill170", "invalid"), P("bill170", "ask_phone")), True)]
    c.done()
    assert c.keys("1380013#") == [Play((P("bill170", "invalid"), P("bill170", "ask_phone")), True)]
    c.done()
    assert c.keys("13912345678")[0] == SetVar("phone", "13912345678")
    assert c.s.trail.compact() == "welcome>ask_phone[123456789011380013#13912345678]>ask_pin"


def test_170_unknown_account_fails_like_a_wrong_pin():
    c = Caller("bill170")
    c.start(); c.done(); c.done(); c.keys("13700000000"); c.done(); c.keys("123456")
    assert c.answer("C1:1", ok=True, row=None) == [SetVar("expected", ""),
                                                   Play((P("bill170", "wrong_pin"),), False)]
    assert c.s.guard.audit_log[-1]["result"] == "failed"


def test_170_database_down_goes_to_an_operator():
    c = Caller("bill170")
    c.start(); c.done(); c.done(); c.keys("13800138000"); c.done(); c.keys("123456")
    assert c.wait(2.0) == [SetVar("lookup_error", "timeout"), Play((P("bill170", "system_busy"),), False)]
    assert c.answer("C1:1", ok=True, row={"balance": 1}) == []     # too late: ignored
    assert c.done() == [Play((P("bill170", "transferring"),), False)]
    assert c.done()[0] == Queue("bill170", 0, data(c, service="bill", phone="13800138000"))


def test_170_speech_of_a_bad_amount_is_left_out_not_misspoken():
    c = Caller("bill170")
    c.start(); c.done(); c.done(); c.keys("13800138000"); c.done(); c.keys("123456")
    actions = c.answer("C1:1", ok=True, row={"pin_sha256": PIN_HASH, "balance": "n/a",
                                             "due_date": "2026-12-15"})
    assert actions[-1] == Play((P("bill170", "balance_is"), P("bill170", "due_is"),
                                T("二零二六年十二月十五日")), True)
    assert "money: 'n/a' is not a number" in c.s.errors[0]


# ---- 112 -------------------------------------------------------------------------------
def test_112_fault_report_with_ticket_read_back():
    c = Caller("fault112", ani="01062345678")
    assert c.start() == [Play((P("fault112", "welcome"),), True)]
    assert c.done() == [Collect("phone", 0, 12, "#", 8.0, 4.0), Play((P("fault112", "ask_number"),), True)]
    c.done()
    assert c.keys("#") == [SetVar("phone", ""), SetVar("phone", "01062345678"),
                           Play((P("fault112", "describe"),), False)]
    assert c.keys("1") == []                                  # no barge-in on this prompt
    vm_data = data(c, service="fault", phone="01062345678")
    assert c.done() == [RecordVoicemail("112", 60.0, 4.0, True, vm_data)]
    c.t += 20
    insert = ("INSERT INTO tickets (phone, caller, recording, created) VALUES (:phone, :caller, "
              ":recording, CURRENT_TIMESTAMP) RETURNING id")
    assert c.s.on_record_done(True, "/spool/vm/112/7.wav", 20.0, c.t) == [
        SetVar("recording", "/spool/vm/112/7.wav"),
        Lookup("C1:1", "tickets", "sql", "sqlite:///run/ivr-demo.db", insert,
               {"phone": "01062345678", "caller": "01062345678", "recording": "/spool/vm/112/7.wav"}, 2.0)]
    ticket = [SetVar("ticket", "2026001"), Play((P("fault112", "ticket_is"), T("二零二六零零幺")), False)]
    assert c.answer("C1:1", ok=True, row={"id": 2026001}) == ticket
    assert c.done() == [Play((P("fault112", "remember"),), True)]
    c.done()
    assert c.keys("1") == ticket[1:]
    c.done(); c.done()
    assert c.keys("9") == [Play((P("fault112", "goodbye"),), False)]
    assert c.done() == [Hangup(16), End("hangup", "welcome>ask_number[#]>which_number>own_number>"
                                                   "record>create>read_back>confirm[1]>read_back>"
                                                   "confirm[9]>goodbye")]


def test_112_keyed_number_and_failed_insert():
    c = Caller("fault112", ani="01062345678")
    c.start(); c.done(); c.done()
    assert c.keys("01088886666#")[:2] == [SetVar("phone", "01088886666"),
                                          Play((P("fault112", "describe"),), False)]
    c.done()
    c.t += 5
    assert c.s.on_record_done(False, "", 0.0, c.t)[0] == SetVar("recording", "")
    assert c.answer("C1:1", ok=False, error="sql: database is locked") == [
        SetVar("lookup_error", "sql: database is locked"), Play((P("fault112", "system_busy"),), False)]
    q = c.done()[0]
    assert q == Queue("fault112", 0, data(c, service="fault", phone="01088886666", recording=""))


def test_112_caller_hangs_up_while_recording_is_a_message_not_an_abandon():
    """The prompt says "press # or hang up when you are done": a caller who hangs up still
    gets a ticket. The recording closes, the ticket is inserted, and the session ends at the
    first node that would need the caller (the read-back)."""
    stats = IvrStats()
    c = Caller("fault112", ani="01062345678", stats=stats)
    c.start(); c.done(); c.done(); c.keys("#"); c.done()
    c.t += 12
    assert c.s.on_hangup(c.t) == []                       # the recording is still closing
    assert not c.s.finished
    c.t += 0.1
    out = c.s.on_record_done(True, "/spool/vm/112/8.wav", 11.0, c.t)
    assert out[0] == SetVar("recording", "/spool/vm/112/8.wav")
    assert isinstance(out[1], Lookup) and out[1].query.startswith("INSERT INTO tickets")
    assert out[1].params["recording"] == "/spool/vm/112/8.wav"
    done = c.answer("C1:1", ok=True, row={"id": 2026002})
    assert done == [SetVar("ticket", "2026002"),
                    End("voicemail", "welcome>ask_number[#]>which_number>own_number>record>"
                                     "create")]
    assert c.s.finished and c.s.outcome == "voicemail"
    assert stats.node("fault112", "record").abandons == 0
    assert stats.node("fault112", "record").exits == {"next": 1}
    # a hang-up anywhere else is an abandon, as before
    d = Caller("fault112", stats=stats)
    d.start()
    assert d.s.on_hangup(d.t + 1)[-1].outcome == "abandoned"


# ---- language-independent behaviour -------------------------------------------------------
def small_flow(tmp_path, body, head=""):
    p = tmp_path / "s.yaml"
    p.write_text("flow: s\nstart: a\nprompts: {hi: {zh: 你好}}\n" + head + "nodes:\n"
                 + textwrap.indent(textwrap.dedent(body), "  "), encoding="utf-8")
    return FlowSet([load_flow(p)])


def test_prompt_that_never_ends_is_cut_off(tmp_path):
    flows = small_flow(tmp_path, """\
        a: {type: play, prompt: hi, next: b}
        b: {type: hangup, prompt: {say: 再见}}
    """, head="prompt_guard: 10\n")
    c = Caller("s", flows=flows)
    c.start()
    assert c.wait(10) == [Play((T("再见"),), False)]
    # the lost report turns up after all: it belongs to the first prompt, not to this one
    assert c.done(after=0.5) == []
    assert c.done() == [Hangup(16), End("hangup", "a>b")]


def test_transfer_faxback_set_and_subflow(tmp_path):
    sub = tmp_path / "sub.yaml"
    sub.write_text(textwrap.dedent("""\
        flow: helper
        kind: subflow
        start: ask
        vars: {choice: ""}
        nodes:
          ask: {type: menu, prompt: {say: 请选择}, options: {"1": back}, var: choice, on_fail: back}
          back: {type: return}
    """), encoding="utf-8")
    main = tmp_path / "main.yaml"
    main.write_text(textwrap.dedent("""\
        flow: main
        start: s
        vars: {dept: ""}
        nodes:
          s: {type: set, vars: {dept: "8${ani}"}, next: call}
          call: {type: subflow, flow: helper, next: fax}
          fax: {type: faxback, document: "/docs/guide-${choice}.tif", next: xfer}
          xfer: {type: transfer, to: "${dept}", data: {why: sub}}
    """), encoding="utf-8")
    flows = load_checked([sub, main])
    c = Caller("main", ani="001", flows=flows)
    assert c.start() == [SetVar("dept", "8001"), Play((T("请选择"),), True)]
    c.done()
    actions = c.keys("1")
    trail = "s>call>helper:ask[1]>helper:back>fax>xfer"
    assert actions[0] == SetVar("choice", "1")
    fax = actions[1]
    assert (type(fax), fax.document, fax.number) == (FaxBack, "/docs/guide-1.tif", "001")
    assert fax.data["ivr_trail"] == "s>call>helper:ask[1]>helper:back>fax"   # as it was then
    assert actions[2:] == [Transfer("8001", data(c, why="sub")), End("transferred", trail)]


def test_bad_digits_and_backward_clock_are_harmless(tmp_path):
    flows = small_flow(tmp_path, """\
        a: {type: menu, prompt: hi, options: {"1": b}, timeout: 5, on_fail: b}
        b: {type: hangup}
    """)
    c = Caller("s", flows=flows)
    c.start(); c.done()
    assert c.s.on_digit("x", c.t) == [] and c.s.on_digit("12", c.t) == []
    assert c.s.on_timer(c.t - 100) == []                  # the clock stepped back: nothing fires
    assert c.s.deadline == pytest.approx(c.t + 5)


def test_overdue_timer_runs_before_a_late_event(tmp_path):
    flows = small_flow(tmp_path, """\
        a: {type: menu, prompt: hi, options: {"1": b}, timeout: 5, retries: 0, on_fail: c}
        b: {type: hangup, cause: 17}
        c: {type: hangup, cause: 31}
    """)
    c = Caller("s", flows=flows)
    c.start(); c.done()
    # the shell missed the timer; the key pressed after the deadline does not count
    assert c.keys("1", gap=6) == [Hangup(31), End("hangup", "a>c")]


def test_branch_conditions(tmp_path):
    flows = small_flow(tmp_path, """\
        a:
          type: branch
          cases:
            - if: {all: [{in_list: vip, var: data.account}, {not: {weekday: [sat, sun]}}]}
              goto: vip
            - if: {any: [{time: "22:00-06:00"}, {date: "2026-12-24..2026-12-26"}]}
              goto: night
            - if: {var: ani, matches: "0[1-9].*"}
              goto: landline
            - if: {var: data.level, ge: 3}
              goto: gold
          else: other
        vip: {type: hangup, cause: 1}
        night: {type: hangup, cause: 2}
        landline: {type: hangup, cause: 3}
        gold: {type: hangup, cause: 4}
        other: {type: hangup, cause: 5}
    """, head="lists: {vip: ['A1']}\n")

    def cause(ani="138", t=MON_10, **data):
        s = IvrSession(flows, "s", CallInfo("C1", ani, "", data))
        return s.start(t)[0].cause

    assert cause(account="A1") == 1
    assert cause(account="A1", t=at(2026, 11, 22, 10, 0)) == 5       # Sunday: not the VIP path
    assert cause(t=at(2026, 11, 23, 23, 30)) == 2 and cause(t=at(2026, 11, 24, 5, 59)) == 2
    assert cause(t=at(2026, 11, 24, 6, 0)) == 5
    assert cause(t=at(2026, 12, 25, 12, 0)) == 2
    assert cause(ani="01062345678") == 3
    assert cause(level="3") == 4 and cause(level="2.5") == 5 and cause(level="high") == 5


def test_170_hash_after_a_full_number_does_not_barge_into_the_pin_prompt():
    """The prompt says "end with #": a caller who keys all 11 digits and then '#' must hear
    the PIN prompt, not have the '#' stop it and count as an empty PIN."""
    c = Caller("bill170")
    c.start()
    c.done()
    c.done()
    ask_pin = Play((P("bill170", "ask_pin"),), True)
    assert c.keys("13800138000")[-1] == ask_pin
    # cardd stopped the PIN prompt at the '#' key-down and reports that before the digit
    assert c.done(after=0.3, interrupted=True, digit="#") == [ask_pin]   # played again
    assert c.keys("#", gap=0.0) == []                                    # and the key is spent
    assert c.done() == []
    assert c.keys("123456") == [bill_lookup()]
    # a '#' long after the full entry is an ordinary key again
    d = Caller("bill170")
    d.start(), d.done(), d.done()
    d.keys("13800138000")
    assert d.done(after=5.0, interrupted=True, digit="#") == []       # barge-in as usual
