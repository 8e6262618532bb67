"""The shipped IVR flows end to end: cardd and ctid as processes on four simulated PRI spans,
callers in the test's simulator keying from scripts. What they hear is checked against the
prompt audio byte for byte; where they end (queue with the IVR trail, hang-up) through
ctid's CTI events."""
import json
import os
import sqlite3

import pytest

from tests.e2e.ivr_stack import IvrStack

WELCOME_170 = "欢迎使用话费查询服务。"
ASK_PHONE = "请输入您要查询的十一位手机号码，以井号键结束。"
ASK_PIN = "请输入六位服务密码，以井号键结束。"
WRONG_PIN = "密码错误，请重新输入。"
LOCKED = "密码错误次数过多，查询功能已暂停，请稍后再试或联系人工服务。"
BALANCE_IS = "您的话费余额为"
AFTER_BALANCE = "重听请按1，人工服务请按0，结束请按9。"
INVALID = "您的输入有误。"
NO_INPUT = "对不起，没有收到您的输入。"
TRANSFERRING = "正在为您转接人工服务，请稍候。"
GOODBYE = "感谢您的来电，再见。"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ivr-e2e"))
    s = IvrStack(d, os.path.join(d, "tts-cache"))
    try:
        s.start()
        yield s
    finally:
        s.close()


def queued(stack, ani):
    (e,) = stack.events_for(ani, "Queued")
    return e


def trail_nodes(e):
    return [(step["node"], step.get("exit")) for step in json.loads(e.data["ivr_trail_json"])]


def test_170_bill_query_to_an_operator_with_the_trail(stack):
    ani = "13300000001"
    c = stack.call(1, "170", ani, [
        ("hear", WELCOME_170), ("hear", ASK_PHONE), ("keys", "13800138000#"),
        ("hear", ASK_PIN), ("keys", "123456#"), ("hear", BALANCE_IS),
        ("hear", AFTER_BALANCE), ("keys", "0"), ("hear", TRANSFERRING)])
    stack.run_until(lambda: c.done and stack.ended(ani), 90, "170 caller queued")
    e = queued(stack, ani)
    assert e.device == "queue:bill170"
    assert e.data["ivr_flow"] == "bill170" and e.data["service"] == "bill"
    assert e.data["phone"] == "13800138000"
    trail = e.data["ivr_trail"]
    assert "ask_phone[13800138000]" in trail and "ask_pin[******]" in trail
    assert "123456" not in e.data["ivr_trail_json"]          # the PIN is never shown
    assert [n for n, _ in trail_nodes(e)][-3:] == ["say_balance", "after_balance", "to_operator"]


def test_12345_menu_with_the_crm_down_takes_the_fallback(stack):
    ani = "13300000002"
    c = stack.call(2, "12345", ani, [
        ("hear", "普通话请按1。"), ("keys", "1"),
        ("hear", "您好，欢迎致电12345政务服务便民热线。"),
        ("hear", "咨询请按1，投诉举报请按2，查询工单办理进度请按3，人工服务请按0，重听请按星号键。"),
        ("keys", "3"), ("hear", "请输入八位工单号，以井号键结束。"), ("keys", "20260001#"),
        ("hear", "您查询的工单号是"), ("hear", TRANSFERRING)])
    stack.run_until(lambda: c.done and stack.ended(ani), 120, "12345 caller queued")
    e = queued(stack, ani)
    assert e.device == "queue:gov12345-consult"
    assert (e.data["service"], e.data["case_no"], e.data["vip"]) == ("progress", "20260001", "no")
    nodes = trail_nodes(e)
    assert ("profile", "fallback") in nodes                  # the CRM is not there
    assert "ask_case[20260001]" in e.data["ivr_trail"]


def test_invalid_keys_and_a_timeout_end_with_an_operator(stack):
    ani = "13300000003"
    c = stack.call(3, "170", ani, [
        ("hear", ASK_PHONE), ("keys", "123#"), ("hear", INVALID), ("hear", ASK_PHONE),
        ("hear", NO_INPUT), ("hear", ASK_PHONE), ("keys", "99999999999#"),
        ("hear", TRANSFERRING)])                     # the third failure goes to on_fail
    stack.run_until(lambda: c.done and stack.ended(ani), 120, "caller sent to an operator")
    e = queued(stack, ani)
    assert e.device == "queue:bill170" and e.data["phone"] == ""
    exits = [x for n, x in trail_nodes(e) if n == "ask_phone"]
    assert exits[-1] == "fail"                      # the trail names the exit taken


def test_pin_locked_after_three_failures(stack):
    ani = "13300000004"
    c = stack.call(4, "170", ani, [
        ("hear", ASK_PHONE), ("keys", "13912345678#"),
        ("hear", ASK_PIN), ("keys", "000000#"), ("hear", WRONG_PIN),
        ("hear", ASK_PIN), ("keys", "111111#"), ("hear", WRONG_PIN),
        ("hear", ASK_PIN), ("keys", "222222#"), ("hear", LOCKED), ("hear", GOODBYE)])
    stack.run_until(lambda: c.done and stack.events_for(ani, "CallCleared"), 120,
                    "caller locked out")
    assert not stack.events_for(ani, "Queued")
    # The right PIN now is refused too: the account is locked.
    again = "13300000005"
    c2 = stack.call(5, "170", again, [
        ("hear", ASK_PHONE), ("keys", "13912345678#"), ("hear", ASK_PIN), ("keys", "123456#"),
        ("hear", LOCKED)])
    stack.run_until(lambda: c2.done and stack.events_for(again, "CallCleared"), 90,
                    "locked account refused")


def test_112_fault_report_creates_a_ticket(stack):
    ani = "01088886666"
    c = stack.call(6, "112", ani, [
        ("hear", "您好，这里是112障碍申告台。"),
        ("hear", "请输入故障电话号码，以井号键结束；查询本机请直接按井号键。"), ("keys", "#"),
        ("hear", "您的障碍单号是"), ("hear", "请记录。我们会尽快处理。重听请按1，结束请按9。"),
        ("keys", "9"), ("hear", GOODBYE)])
    stack.run_until(lambda: c.done and stack.events_for(ani, "CallCleared"), 120,
                    "fault reported")
    with sqlite3.connect(f"{stack.d}/run/ivr-demo.db") as db:
        rows = db.execute("SELECT id, phone, caller FROM tickets WHERE caller = ?", (ani,)).fetchall()
    assert len(rows) == 1 and rows[0][1] == ani and rows[0][0] >= 2026001
