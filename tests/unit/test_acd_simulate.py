"""The ACD simulation against queueing theory (Erlang C, Erlang A), and the ctictl commands.

Random traffic makes the simulated figures scatter around the formulas. Two things keep
the checks tight yet honest: each run is compared with Erlang C at the load it actually
generated (arrivals counted, handle time measured), which removes the scatter of the
traffic itself, and several seeds are averaged. Tolerances are about three standard
deviations of that average, measured beforehand over other seeds.
"""
import io
import json
from contextlib import redirect_stdout

import pytest

from ctid import ctictl
from ctid.acd.erlang import (erlang_a, erlang_b, erlang_c, erlang_c_asa,
                             erlang_c_service_level)
from ctid.acd.simulate import simulate


def test_erlang_formulas_match_textbook_values():
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang_c(2, 1.0) == pytest.approx(1 / 3)
    assert erlang_c_asa(2, 1.0, 180.0) == pytest.approx(60.0)
    assert erlang_c_service_level(2, 1.0, 180.0, 0.0) == pytest.approx(2 / 3)
    # Erlang A with very patient callers tends to Erlang C
    ea = erlang_a(20, 0.1, 1 / 180.0, 1e-7)
    assert ea["p_wait"] == pytest.approx(erlang_c(20, 18.0), rel=1e-3)


def _realized(r):
    aht = r["aht_measured_s"]
    a = r["offered"] / (r["hours"] * 3600.0) * aht
    return a, aht


def test_simulation_agrees_with_erlang_c():
    # The example: 20 agents, AHT 180 s, 360 calls/hour (A = 18 E), no abandons.
    pw, asa = [], []
    for seed in (1, 2, 3, 4):
        r = simulate(agents=20, calls_per_hour=360, aht_s=180, hours=150, seed=seed)
        assert r["abandoned"] == 0 and r["offered"] == r["answered"]
        a, aht = _realized(r)
        pw.append(r["p_wait"] / erlang_c(20, a))
        asa.append(r["asa_s"] / erlang_c_asa(20, a, aht))
        ec = r["erlang_c"]
        assert r["service_level_20s"] == pytest.approx(ec["service_level_20s"], abs=0.08)
        assert r["occupancy"] == pytest.approx(0.9, abs=0.02)
    assert sum(pw) / len(pw) == pytest.approx(1.0, abs=0.03)
    assert sum(asa) / len(asa) == pytest.approx(1.0, abs=0.12)


def test_simulation_with_patience_follows_erlang_a():
    ratios = []
    for seed in (1, 2):
        r = simulate(agents=20, calls_per_hour=360, aht_s=180, hours=50, seed=seed,
                     patience_s=180)
        assert r["offered"] == r["answered"] + r["abandoned"]
        ratios.append(r["abandon_rate"] / r["erlang_a"]["p_abandon"])
    assert sum(ratios) / len(ratios) == pytest.approx(1.0, abs=0.15)


def test_less_patience_means_more_abandons_and_shorter_waits():
    runs = [simulate(agents=20, calls_per_hour=360, aht_s=180, hours=20, seed=5, patience_s=p)
            for p in (60, 300)]
    runs.append(simulate(agents=20, calls_per_hour=360, aht_s=180, hours=20, seed=5))
    ab = [r["abandon_rate"] for r in runs]
    asa = [r["asa_s"] for r in runs]
    assert ab[0] > ab[1] > ab[2] == 0
    assert asa[0] < asa[1] < asa[2]
    # theory says the same, in size too
    assert ab[0] == pytest.approx(runs[0]["erlang_a"]["p_abandon"], rel=0.3)


def test_wrapup_counts_in_the_handle_time():
    r = simulate(agents=10, calls_per_hour=150, aht_s=200, hours=20, seed=3, wrapup_s=50)
    assert r["aht_measured_s"] == pytest.approx(200, rel=0.05)
    assert r["occupancy"] == pytest.approx(150 * 200 / 3600 / 10, abs=0.03)


def run_ctictl(argv):
    out = io.StringIO()
    with redirect_stdout(out):
        rc = ctictl.main(argv)
    return rc, out.getvalue()


def test_ctictl_acd_sim_prints_the_figures_as_json():
    rc, out = run_ctictl(["acd-sim", "--agents", "10", "--calls-per-hour", "150", "--aht", "180",
                          "--hours", "5", "--seed", "2", "--patience", "120", "--json"])
    assert rc == 0
    r = json.loads(out)
    for key in ("offered", "answered", "abandoned", "p_wait", "asa_s", "service_level_20s",
                "occupancy"):
        assert key in r
    assert r["offered"] == r["answered"] + r["abandoned"] > 600
    assert 0 < r["p_wait"] < 1 and 0 < r["occupancy"] < 1


def test_ctictl_rejects_bad_arguments_with_a_message(capsys):
    rc, _ = run_ctictl(["acd-sim", "--hours", "2", "--wrapup-s", "400", "--aht", "180"])
    assert rc == 2
    assert "wrapup_s" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        ctictl.main(["acd-sim", "--agents", "0"])


def test_ctictl_bench_acd_serves_every_call():
    rc, out = run_ctictl(["bench", "acd", "--agents", "300", "--queues", "24",
                          "--calls", "3000", "--json"])
    assert rc == 0
    r = json.loads(out)
    assert r["answered"] + r["abandoned"] == r["calls"] == 3000
    assert r["decisions"] >= 3000
    assert 0 < r["decision_ms_p50"] <= r["decision_ms_p99"] <= r["decision_ms_max"]
    assert r["decisions_per_s"] > 0


def test_command_registry_accepts_new_commands_and_refuses_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        ctictl.register("acd-sim", "again", lambda p: None, lambda a: 0)
    ctictl.register("test-echo", "echo for the test", lambda p: p.add_argument("word"),
                    lambda a: print(a.word) or 0)
    try:
        assert run_ctictl(["test-echo", "hello"]) == (0, "hello\n")
    finally:
        del ctictl.COMMANDS["test-echo"]
