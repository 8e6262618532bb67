"""Operator reports: CDR summaries computed exactly from CDRs written through a real Store
(SQLite), `ctictl report cdr` exporting CSV/XLSX that read back and drawing a PNG,
`ctictl report acd-sim-plot` running a small staffing sweep, and progress output."""
import csv
import datetime as dt
import io
import struct
import zoneinfo

import openpyxl
import pytest

from ctid import ctictl
from ctid.acd.erlang import erlang_c_asa, erlang_c_service_level
from ctid.reports.acd_sweep import parse_agents, smallest_meeting, sweep
from ctid.reports.cdr_report import format_text, summarize
from ctid.reports.progress import Progress, format_duration, format_line
from ctid.storage import Store

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def at(day: int, hour: int, minute: int = 0) -> float:
    return dt.datetime(2026, 11, day, hour, minute, tzinfo=SHANGHAI).timestamp()


def leg(device, role, started, answered=None, ended=None, cause=16):
    return {"device": device, "role": role, "started": started, "answered": answered,
            "ended": ended, "cause": cause}


def call(cid, started, ended, outcome, legs, calling="13812345678", called="12345"):
    return {"call_id": cid, "started": started, "ended": ended, "calling": calling,
            "called": called, "outcome": outcome, "data": {}, "transfers": [], "legs": legs}


T1, T2, T3, T4 = at(23, 10, 0), at(23, 10, 30), at(23, 11, 15), at(23, 11, 40)
T5, T6, T7 = at(24, 9, 5), at(24, 9, 30), at(25, 8, 0)

CDRS = [
    # inbound, answered after 10 s, 90 s of talk
    call("C1", T1, T1 + 100, "answered",
         [leg("trunk:node1/5", "caller", T1, T1, T1 + 100),
          leg("ext:8001", "called", T1, T1 + 10, T1 + 100)]),
    # inbound, nobody answers
    call("C2", T2, T2 + 30, "noAnswer",
         [leg("trunk:node1/5", "caller", T2, T2, T2 + 30),
          leg("ext:8001", "called", T2, None, T2 + 30, 19)]),
    # outbound: the extension's caller leg carries no answer time (as the call model
    # writes it); the far end answers after 20 s, 60 s of talk
    call("C3", T3, T3 + 80, "answered",
         [leg("ext:8002", "caller", T3, None, T3 + 80),
          leg("trunk:node1/6", "called", T3, T3 + 20, T3 + 80)], calling="8002",
         called="13900000000"),
    # internal, busy
    call("C4", T4, T4 + 5, "busy",
         [leg("ext:8001", "caller", T4, None, T4 + 5, 17),
          leg("ext:8002", "called", T4, None, T4 + 5, 17)], calling="8001", called="8002"),
    # inbound, answered after 5 s by 8001, transferred to 8002 at +40; call ends at +100
    call("C5", T5, T5 + 100, "answered",
         [leg("trunk:node1/5", "caller", T5, T5, T5 + 100),
          leg("ext:8001", "called", T5, T5 + 5, T5 + 35),
          leg("ext:8002", "transfer_target", T5 + 35, T5 + 40, T5 + 100)]),
    # inbound, answered after 3 s, still going (no end, no outcome yet)
    call("C6", T6, None, "",
         [leg("trunk:node1/7", "caller", T6, T6),
          leg("ext:8003", "called", T6, T6 + 3)]),
    # outside the window asked for below
    call("C7", T7, T7 + 60, "answered",
         [leg("trunk:node1/8", "caller", T7, T7, T7 + 60),
          leg("ext:8004", "called", T7, T7 + 1, T7 + 60)]),
]
SINCE, UNTIL = at(23, 0), at(25, 0)


@pytest.fixture
def db(tmp_path):
    url = f"sqlite:///{tmp_path}/hotline.db"
    store = Store(url, tz=SHANGHAI).start()
    for c in CDRS:
        store.submit_cdr(c)
    assert store.close(timeout=30)
    return url


def tally(t):
    return (t.calls, t.answered, t.talked, round(t.talk_s, 6), t.timed, round(t.answer_s, 6))


# ---- summaries -----------------------------------------------------------------------------
def test_summary_of_stored_cdrs_is_exact(db):
    store = Store(db, tz=SHANGHAI)
    try:
        rows = store.cdrs(SINCE, UNTIL)
    finally:
        store.engine.dispose()
    assert [c["call_id"] for c in rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    r = summarize(rows, SHANGHAI, SINCE, UNTIL)

    # 4 of 6 answered (C6 still open: answered, no talk time yet); talk 90 + 60 + 95;
    # answer times 10 + 20 + 5 + 3
    assert tally(r.total) == (6, 4, 3, 245.0, 4, 38.0)
    assert r.total.answer_rate == pytest.approx(4 / 6)
    assert r.total.avg_talk_s == pytest.approx(245 / 3)
    assert r.total.avg_answer_s == pytest.approx(9.5)
    assert r.by_outcome == {"answered": 3, "(none)": 1, "busy": 1, "noAnswer": 1}
    assert r.outcomes() == ["answered", "(none)", "busy", "noAnswer"]

    assert {k: (v.calls, v.answered) for k, v in r.by_direction.items()} == {
        "inbound": (4, 3), "outbound": (1, 1), "internal": (1, 0)}
    # per device: from when both it and the call were answered to its leg's end
    assert {k: tally(v) for k, v in r.by_trunk.items()} == {
        "trunk:node1/5": (3, 2, 2, 185.0, 0, 0.0),      # C1 90, C2 none, C5 95
        "trunk:node1/6": (1, 1, 1, 60.0, 0, 0.0),
        "trunk:node1/7": (1, 1, 0, 0.0, 0, 0.0)}        # C6 still open
    assert {k: tally(v) for k, v in r.by_extension.items()} == {
        "ext:8001": (4, 2, 2, 120.0, 0, 0.0),           # C1 90, C2 and C4 none, C5 30
        "ext:8002": (3, 2, 2, 120.0, 0, 0.0),           # C3 60 as caller, C4 none, C5 60
        "ext:8003": (1, 1, 0, 0.0, 0, 0.0)}
    assert r.by_trunk["trunk:node1/7"].avg_talk_s is None

    # every hour and day of the window, empty ones included, in local time
    assert len(r.per_hour) == 48 and len(r.per_day) == 2
    assert r.per_hour[0].start == dt.datetime(2026, 11, 23, 0, tzinfo=SHANGHAI)
    busy_hours = {b.start.strftime("%d %H"): (b.tally.calls, b.tally.answered, dict(b.outcomes))
                  for b in r.per_hour if b.tally.calls}
    assert busy_hours == {"23 10": (2, 1, {"answered": 1, "noAnswer": 1}),
                          "23 11": (2, 1, {"answered": 1, "busy": 1}),
                          "24 09": (2, 2, {"answered": 1, "(none)": 1})}
    assert [(b.start.day, b.tally.calls, b.tally.answered) for b in r.per_day] == [
        (23, 4, 2), (24, 2, 2)]
    assert [h for h, t in enumerate(r.hour_of_day) if t.calls] == [9, 10, 11]

    text = format_text(r, {"ext:8001": "Reception"})
    assert "CDR report, 2026-11-23 to 2026-11-24 (Asia/Shanghai)" in text
    assert "calls 6, answered 4 (66.7%), average talk 81.7 s, average answer 9.5 s" in text
    assert "ext:8001 Reception" in text


def test_summary_without_calls_or_window():
    r = summarize([], SHANGHAI)
    assert (r.total.calls, r.per_hour, r.per_day, r.by_outcome) == (0, [], [], {})
    assert r.total.answer_rate is None and r.total.avg_talk_s is None
    assert "calls 0, answered 0 (-)" in format_text(r)
    # no window: the calls' own span sets the hours listed
    r = summarize(CDRS[:2], SHANGHAI)
    assert [b.start.hour for b in r.per_hour] == [10]


# ---- ctictl report cdr --------------------------------------------------------------------
def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_report_cdr_exports_csv_xlsx_and_plot(db, tmp_path, capsys):
    out_csv, out_xlsx, out_png = (tmp_path / "calls.csv", tmp_path / "calls.xlsx",
                                  tmp_path / "calls.png")
    rc = ctictl.main(["report", "cdr", "--db", db, "--tz", "Asia/Shanghai",
                      "--since", "2026-11-23", "--until", "2026-11-24",   # the 24th included
                      "--csv", str(out_csv), "--xlsx", str(out_xlsx), "--plot", str(out_png)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert "calls 6, answered 4 (66.7%)" in cap.out
    # progress on a non-terminal: plain lines, no carriage returns or escapes
    assert "csv: 6/6 100%" in cap.err and "\r" not in cap.err and "\x1b" not in cap.err

    with open(out_csv, encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["call_id"] for r in rows] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert rows[0]["talk_s"] == "90.0" and rows[0]["started"].startswith("2026-11-23T10:00")

    wb = openpyxl.load_workbook(out_xlsx)
    assert wb.sheetnames == ["summary", "per hour", "per day", "trunks", "extensions",
                             "calls", "legs"]
    calls = list(wb["calls"].iter_rows(values_only=True))
    assert [c[0] for c in calls[1:]] == ["C1", "C2", "C3", "C4", "C5", "C6"]
    assert calls[1][1] == dt.datetime(2026, 11, 23, 10, 0)          # local time
    assert len(list(wb["legs"].iter_rows())) == 1 + 13
    days = list(wb["per day"].iter_rows(values_only=True))
    assert days[0][:3] == ("start (Asia/Shanghai)", "calls", "answered")
    assert [d[:3] for d in days[1:]] == [(dt.datetime(2026, 11, 23), 4, 2),
                                         (dt.datetime(2026, 11, 24), 2, 2)]
    trunks = {r[0]: r[2:4] for r in wb["trunks"].iter_rows(min_row=2, values_only=True)}
    assert trunks == {"trunk:node1/5": (3, 2), "trunk:node1/6": (1, 1),
                      "trunk:node1/7": (1, 1)}

    w, h = png_size(out_png)
    assert (w, h) == (1200, 550)
    assert 20_000 < out_png.stat().st_size < 1_000_000      # drawn, not a blank canvas


def test_report_cdr_refuses_bad_input_plainly(db, tmp_path, capsys):
    cases = [
        (["--db", db, "--since", "2026-13-01"], "'2026-13-01' is not a date"),
        (["--db", db, "--since", "2026-11-24", "--until", "2026-11-23"], "must be after"),
        (["--db", f"sqlite:///{tmp_path}/none.db"], "no database file"),
        (["--db", f"sqlite:///{tmp_path}/nodir/none.db"], "no database file"),
        (["--db", "nosuch://x"], "database 'nosuch' is not supported"),
        (["--db", "run/hotline.db"], "is not a database URL"),
        (["--db", db, "--tz", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
        (["--db", db, "--plot", str(tmp_path / "chart.jpg")], "name it NAME.png"),
        (["--db", db, "--csv", str(tmp_path / "no" / "dir.csv")], "no directory"),
        (["--config", str(tmp_path / "missing.toml")], "cannot read"),
    ]
    for extra, said in cases:
        assert ctictl.main(["report", "cdr", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert said in err, (extra, err)
    # a report never creates a database, nor a directory for one
    assert not (tmp_path / "none.db").exists() and not (tmp_path / "nodir").exists()


# ---- ctictl report acd-sim-plot -----------------------------------------------------------
def test_parse_agents():
    assert parse_agents("15-25") == list(range(15, 26))
    assert parse_agents("10-40/10") == [10, 20, 30, 40]
    assert parse_agents("20, 15,18") == [15, 18, 20]
    for bad in ("25-15", "x", "0-3", "1-1000"):
        with pytest.raises(ValueError, match="agents range"):
            parse_agents(bad)


def test_sweep_runs_every_level_and_seed_next_to_erlang_c():
    seen = []
    points = sweep([3, 5], runs=2, seed=7, calls_per_hour=40, aht_s=180, hours=1,
                   on_run=lambda n, k, r: seen.append((n, k, r["seed"])))
    assert seen == [(3, 0, 7), (3, 1, 8), (5, 0, 7), (5, 1, 8)]
    a = 40 * 180 / 3600
    for p in points:
        assert len(p.runs) == 2 and all(r["agents"] == p.agents for r in p.runs)
        assert p.erlang_c["service_level_20s"] == pytest.approx(
            erlang_c_service_level(p.agents, a, 180, 20))
        assert p.erlang_c["asa_s"] == pytest.approx(erlang_c_asa(p.agents, a, 180))
        assert p.low("asa_s") <= p.mean("asa_s") <= p.high("asa_s")
    # Erlang C for 2 Erlangs: 3 agents answer 60.2% within 20 s, 5 agents 95.7%
    assert smallest_meeting(points, 0.8)["erlang_c"] == 5
    assert smallest_meeting(points, 0.995)["erlang_c"] is None


def test_acd_sim_plot_command(tmp_path, capsys):
    out = tmp_path / "staffing.png"
    rc = ctictl.main(["report", "acd-sim-plot", "--agents-range", "2-5", "--runs", "2",
                      "--calls-per-hour", "40", "--aht", "180", "--hours", "2",
                      "--plot", str(out)])
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    lines = cap.out.splitlines()
    assert lines[0].split()[:3] == ["agents", "SL20", "sim"]
    assert [ln.split()[0] for ln in lines[1:5]] == ["2", "3", "4", "5"]
    assert lines[1].split()[4] == "inf"                 # 2 agents for 2 Erlangs: unbounded
    assert lines[-1].startswith("fewest agents for 80% in 20 s")
    assert "acd-sim: 8/8 100%" in cap.err and "\r" not in cap.err
    assert png_size(out) == (1200, 520)
    assert 20_000 < out.stat().st_size < 1_000_000

    assert ctictl.main(["report", "acd-sim-plot", "--agents-range", "9-3",
                        "--plot", str(out)]) == 2
    assert "agents range '9-3'" in capsys.readouterr().err


# ---- progress -------------------------------------------------------------------------------
class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_progress_on_a_pipe_is_plain_periodic_lines():
    clock, out = Clock(), io.StringIO()
    p = Progress("export", total=10, stream=out, unit="calls", every_s=10, clock=clock)
    assert p.tty is False                       # StringIO is no terminal
    for _ in range(10):
        clock.t += 3                            # 3 s per item: a line every 10 s or so
        p.advance()
    p.finish()
    p.finish()                                  # idempotent
    assert out.getvalue().splitlines(keepends=True) == [
        "export: 4/10 40% 3 s each ETA 0:18\n",
        "export: 8/10 80% 3 s each ETA 0:06\n",
        "export: 10/10 100% 3 s each in 0:30\n"]


def test_progress_on_a_terminal_redraws_one_line():
    clock, out = Clock(), io.StringIO()
    with Progress("sweep", total=3, stream=out, tty=True, clock=clock) as p:
        for _ in range(3):
            clock.t += 2
            p.advance()
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("in 0:06\x1b[K\n")
    assert text.startswith("\rsweep: 1/3 33% 2 s each ETA 0:04\x1b[K\r")


def test_progress_formatting_and_a_dead_stream():
    assert format_line("sweep", 3, 12, 6.0) == "sweep: 3/12 25% 2 s each ETA 0:18"
    assert format_line("read", 0, None, 0.0) == "read: 0"
    assert format_line("rows", 5000, None, 2.0, "rows") == "rows: 5000 2500 rows/s"
    assert format_duration(3723) == "1:02:03" and format_duration(59.6) == "1:00"

    class Closed(io.StringIO):
        def write(self, _):
            raise BrokenPipeError("reader went away")
    clock = Clock()
    p = Progress("x", total=2, stream=Closed(), every_s=0, clock=clock)
    assert list(p.iterate(["a", "b"])) == ["a", "b"]     # the work goes on
