"""Look-ups against real back ends: SQLite with the demo data, an HTTP server on
127.0.0.1 that answers, is slow, or has been stopped (the flow takes its fallback)."""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ivr.interpreter import CallInfo, IvrSession, Lookup, Play, SetVar
from ivr.lookup import HttpSource, LookupResult, LookupService, SqlSource, run_script
from ivr.validate import load_checked

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"
FLOWS = load_checked([ETC])


@pytest.fixture
def demo_db(tmp_path):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    run_script(url, str(ETC / "demo.sql"))
    return url


class Crm(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.5)
        if self.path == "/callers/13800138000":
            body = json.dumps({"vip": "yes", "profile": {"name": "张三", "level": 3}}).encode()
        elif self.path == "/callers/list":
            body = b'[{"vip": "no"}]'
        elif self.path == "/garbage":
            body = b"<html>oops</html>"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def crm():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Crm)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_sql_select_insert_and_errors(demo_db):
    src = SqlSource(demo_db, timeout_s=2)
    r = src.run("SELECT balance, due_date FROM accounts WHERE phone = :p", {"p": "13800138000"})
    assert r == LookupResult(True, {"balance": 12.3, "due_date": "2026-12-15"})
    assert src.run("SELECT balance FROM accounts WHERE phone = :p", {"p": "1"}) == LookupResult(True, None)
    ins = ("INSERT INTO tickets (phone, caller, recording, created) "
           "VALUES (:p, :c, '', CURRENT_TIMESTAMP) RETURNING id")
    assert src.run(ins, {"p": "1", "c": "2"}).row == {"id": 2026001}
    assert src.run(ins, {"p": "1", "c": "2"}).row == {"id": 2026002}
    bad = src.run("SELECT nope FROM accounts", {})
    assert not bad.ok and "no such column: nope" in bad.error
    src.close()


def test_sql_query_past_its_timeout_is_interrupted(demo_db):
    src = SqlSource(demo_db)
    forever = ("WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
               "SELECT count(*) FROM c")
    r = src.run(forever, {}, timeout_s=0.3)
    assert r == LookupResult(False, error="sql: timed out after 0.3 s")
    # the connection is fine afterwards
    assert src.run("SELECT count(*) AS n FROM accounts", {}).row == {"n": 3}


def test_http_answers_not_found_garbage_and_stopped_server(crm):
    server, url = crm
    src = HttpSource(url, timeout_s=1.0)
    assert src.run("callers/13800138000").row["profile"]["level"] == 3
    assert src.run(f"{url}/callers/list").row == {"vip": "no"}
    assert src.run("callers/000") == LookupResult(True, None)
    garbage = src.run("garbage")
    assert not garbage.ok and "not JSON" in garbage.error
    slow = src.run("slow", timeout_s=0.3)
    assert not slow.ok and "timed out after 0.3 s" in slow.error
    server.shutdown()
    server.server_close()
    down = src.run("callers/13800138000")
    assert not down.ok and "Connection refused" in down.error


def run_lookup(service, session, action, t):
    service.submit(action)
    results = service.wait(5.0)
    assert [r[0] for r in results] == [action.request_id]
    return session.on_lookup_result(action.request_id, results[0][1], t)


def test_12345_crm_lookup_live_and_with_the_crm_stopped(crm):
    server, url = crm
    service = LookupService(overrides={"crm": url})
    try:
        def to_profile(call_id, t):
            s = IvrSession(FLOWS, "gov12345", CallInfo(call_id, "13800138000"))
            s.start(t); s.on_prompt_done(False, "", t); s.on_digit("1", t)
            (action,) = s.on_prompt_done(False, "", t)          # welcome over: the CRM look-up
            assert isinstance(action, Lookup) and action.query == "callers/13800138000"
            return s, action

        s, action = to_profile("C1", 1000.0)
        actions = run_lookup(service, s, action, 1000.1)
        assert actions[0] == SetVar("vip", "yes") and isinstance(actions[1], Play)

        server.shutdown()
        server.server_close()
        s, action = to_profile("C2", 2000.0)
        actions = run_lookup(service, s, action, 2000.1)
        assert actions[0].name == "lookup_error" and "Connection refused" in actions[0].value
        assert isinstance(actions[1], Play)                 # the flow goes on: the main menu
        assert [st.exit for st in s.trail.steps][3] == "fallback"
    finally:
        service.close()


def test_170_against_the_demo_database(demo_db):
    service = LookupService(overrides={"billing": demo_db})
    try:
        s = IvrSession(FLOWS, "bill170", CallInfo("C1", "13800138000"))
        t = 1000.0
        s.start(t); s.on_prompt_done(False, "", t); s.on_prompt_done(False, "", t)
        for d in "17012345678":
            s.on_digit(d, t)
        s.on_prompt_done(False, "", t)
        actions = []
        for d in "123456":
            actions += s.on_digit(d, t)
        (action,) = actions
        actions = run_lookup(service, s, action, t + 0.5)
        assert actions[-1].prompts[1].text == "二十万元"
        assert actions[-1].prompts[3].text == "二零二六年十一月三十日"
    finally:
        service.close()


def test_missing_database_driver_or_bad_url_falls_back():
    service = LookupService()
    r = service.run(Lookup("x:1", "db", "sql", "nosuchdb://host/x", "SELECT 1", {}, 1.0))
    assert not r.ok and r.error.startswith("sql:")
    r = service.run(Lookup("x:2", "crm", "http", "http://127.0.0.1:1", "a b", {}, 1.0, "GET"))
    assert not r.ok and r.error.startswith("http:")
    service.close()


def test_170_with_its_database_unreachable_takes_the_fallback(tmp_path):
    gone = f"sqlite:///{tmp_path / 'no-such-dir' / 'billing.db'}"
    service = LookupService(overrides={"billing": gone})
    try:
        s = IvrSession(FLOWS, "bill170", CallInfo("C1", "13800138000"))
        t = 1000.0
        s.start(t); s.on_prompt_done(False, "", t); s.on_prompt_done(False, "", t)
        for d in "13800138000":
            s.on_digit(d, t)
        s.on_prompt_done(False, "", t)
        actions = []
        for d in "123456":
            actions += s.on_digit(d, t)
        actions = run_lookup(service, s, actions[0], t + 0.1)
        assert actions[0].name == "lookup_error" and "unable to open database file" in actions[0].value
        assert actions[1].prompts[0].text == "系统繁忙，正在为您转接人工服务。"
        assert s.trail.compact().endswith("fetch>busy")
    finally:
        service.close()
