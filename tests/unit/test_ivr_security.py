"""PIN lockout after N failures (account and calling number), every check audited."""
from pathlib import Path

import pytest

from ivr.interpreter import CallInfo, End, Hangup, IvrSession, Play, Prompt, SetVar
from ivr.lookup import LookupResult
from ivr.security import (PinGuard, PinPolicy, PinPolicyError, guard_from_config, pin_matches,
                          storage_audit_row)
from ivr.validate import load_checked

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"
FLOWS = load_checked([ETC])
PIN_HASH = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca12020c923adc6c92"   # 123456


def test_lock_after_n_failures_then_expiry():
    g = PinGuard(PinPolicy(max_failures=3, lock_s=600))
    assert g.check("138", "010", False, 0).result == "failed"
    v = g.check("138", "010", False, 1)
    assert (v.result, v.failures, v.remaining) == ("failed", 2, 1)
    v = g.check("138", "010", False, 2)
    assert (v.result, v.locked_key, v.locked_until) == ("locked", "account:138", 602)
    # while locked even the right PIN is refused, and not counted
    assert g.check("138", "010", True, 100).result == "locked"
    assert g.locks(100) == ["account:138", "caller:010"]
    assert g.check("138", "010", True, 602).result == "ok"
    assert [r["result"] for r in g.audit_log] == ["failed", "failed", "locked", "refused_locked", "ok"]


def test_success_resets_the_count_and_caller_lock_spans_accounts():
    g = PinGuard(PinPolicy(max_failures=2, lock_s=None, lock_on=("caller",)))
    g.check("a", "010", False, 0)
    g.check("a", "010", True, 1)
    assert g.check("a", "010", False, 2).failures == 1         # counting afresh
    assert g.check("b", "010", False, 3).result == "locked"     # another account, same caller
    assert g.check("c", "010", True, 10_000).result == "locked"  # until unlocked by hand
    assert g.check("c", "020", True, 10_000).result == "ok"
    assert g.unlock("caller:010", 10_001, by="admin:li") is True
    assert g.audit_log[-1] == {"time": 10_001, "call_id": "", "flow": "", "account": "",
                               "caller": "", "result": "unlocked", "failures": 0,
                               "locked_key": "caller:010", "locked_until": None, "by": "admin:li"}
    assert g.check("c", "010", True, 10_002).result == "ok"


def test_policy_and_config_errors():
    with pytest.raises(PinPolicyError, match="max_failures"):
        PinPolicy(max_failures=0)
    with pytest.raises(PinPolicyError, match="lock_on"):
        PinPolicy(lock_on=("imei",))
    with pytest.raises(PinPolicyError, match="unknown PIN setting 'lockout'"):
        guard_from_config({"lockout": 3})
    p = guard_from_config({"max_failures": 5, "lock_minutes": 0, "lock_on": "account"})
    assert p == PinPolicy(5, None, ("account",))
    with pytest.raises(PinPolicyError, match="account:NUMBER"):
        PinGuard().unlock("138", 0, by="x")


def test_pin_matching():
    assert pin_matches("123456", PIN_HASH, "sha256")
    assert pin_matches("123456", PIN_HASH.upper(), "sha256")
    assert not pin_matches("123457", PIN_HASH, "sha256")
    assert pin_matches("4321", "4321") and not pin_matches("", "")


def prompts(*names):
    return tuple(Prompt(FLOWS["bill170"].prompts[n].by_lang["zh"].text, "", "zh") for n in names)


def call(guard, ani, phone, pins, t0):
    """One bill170 call: key `phone`, then each PIN in `pins` (the database answers)."""
    s = IvrSession(FLOWS, "bill170", CallInfo(f"C{t0:.0f}", ani), guard=guard)
    t = t0
    s.start(t); s.on_prompt_done(False, "", t); s.on_prompt_done(False, "", t)
    for d in phone:
        s.on_digit(d, t)
    out = []
    for n, pin in enumerate(pins, 1):
        t += 1
        for _ in range(1 if n == 1 else 2):       # (wrong_pin and) ask_pin end
            out = s.on_prompt_done(False, "", t)
        for d in pin:
            out = s.on_digit(d, t)
        out = s.on_lookup_result(f"{s.id}:{n}", LookupResult(True, {
            "pin_sha256": PIN_HASH, "balance": 1, "due_date": "2026-12-15"}), t)
        out = [a for a in out if not isinstance(a, SetVar)]
        if out != [Play(prompts("wrong_pin"), False)]:
            break
    return s, out


def test_170_locks_after_three_wrong_pins_and_audits_each():
    audit = []
    guard = PinGuard(PinPolicy(max_failures=3, lock_s=1800), audit=audit.append)
    s, out = call(guard, "13800138000", "13800138000", ["111111", "222222", "333333"], 1000)
    locked_prompt = prompts("locked", "goodbye")
    assert out == [Play(locked_prompt, False)]
    assert s.on_prompt_done(False, "", 1010) == [Hangup(16), End("hangup", s.trail.compact())]
    assert s.trail.compact().endswith("ask_pin[******]>fetch>check>locked")
    assert [(r["result"], r["failures"], r["account"]) for r in audit] == [
        ("failed", 1, "13800138000"), ("failed", 2, "13800138000"), ("locked", 3, "13800138000")]
    assert all("111111" not in str(r) and "222222" not in str(r) for r in audit)
    assert storage_audit_row(audit[-1]) == {
        "time": audit[-1]["time"], "client": "caller:13800138000", "role": "ivr",
        "request": f"pin account=13800138000 call={s.call.call_id}", "allowed": False,
        "reason": "locked (account:13800138000)"}

    # a second call for the same account from another phone, with the right PIN: refused
    s2, out = call(guard, "02088888888", "13800138000", ["123456"], 1100)
    assert out == [Play(locked_prompt, False)]
    assert audit[-1]["result"] == "refused_locked"
    # after the lock time the right PIN works again
    s3, out = call(guard, "02088888888", "13800138000", ["123456"], 1000 + 1800 + 10)
    assert out[-1].prompts[1].text == "一元"
    assert audit[-1]["result"] == "ok"


def test_170_two_wrong_then_right_pin():
    guard = PinGuard(PinPolicy(max_failures=3))
    s, out = call(guard, "13800138000", "13800138000", ["111111", "222222", "123456"], 1000)
    assert out[-1].prompts[1].text == "一元"
    assert [r["result"] for r in guard.audit_log] == ["failed", "failed", "ok"]
    assert guard.locks(2000) == []


def test_pin_audit_reaches_ctids_audit_table(tmp_path):
    import sqlalchemy as sa

    from ctid.storage import Store
    store = Store(f"sqlite:///{tmp_path / 'ctid.db'}").start()
    try:
        guard = PinGuard(PinPolicy(max_failures=2),
                         audit=lambda row: store.submit_audit(storage_audit_row(row)))
        call(guard, "13800138000", "13800138000", ["111111", "222222"], 1000)
        assert store.flush(10.0)
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT client, role, request, allowed, reason "
                                        "FROM audit ORDER BY id")).all()
    finally:
        store.close()
    assert [tuple(r) for r in rows] == [
        ("caller:13800138000", "ivr", "pin account=13800138000 call=C1000", False, "failed"),
        ("caller:13800138000", "ivr", "pin account=13800138000 call=C1000", False,
         "locked (account:13800138000)")]
