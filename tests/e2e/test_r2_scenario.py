"""cardd with an R2 span as a process: the r2-china scenario under `ctisim run`, openr2 as
the far end of the real daemon, and a bad variant file refused at start-up."""
import json
import os
import subprocess
import sys
import tomllib

import pytest

from hotline_proto import cardd_pb2
from simulators.carddclient import CarddClient
from simulators.clock import Clock
from simulators.ctisim import cards_for, frontend_for, private_cardd_config
from simulators.procs import ProcessGroup
from simulators.world import World

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENV = dict(os.environ, OPENBLAS_NUM_THREADS="1")


def test_r2_china_scenario_passes_under_ctisim_run():
    proc = subprocess.run([sys.executable, "-m", "simulators.ctisim", "run", "--json",
                           "etc/ctisim/scenarios/r2-china.yaml"],
                          cwd=ROOT, capture_output=True, text=True, timeout=180, env=ENV)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["passed"] and report["failures"] == []
    assert report["expectations"] >= 10 and report["events"] == 11


def test_bad_variant_file_refuses_start_with_file_line_and_key(tmp_path):
    bad = tmp_path / "mine.toml"
    text = open(os.path.join(ROOT, "etc/r2/china.toml"), encoding="utf-8").read()
    text = text.replace('answer = "01"           # backward', 'answer = "1"')
    bad.write_text(text, encoding="utf-8")
    line = text.splitlines().index('answer = "1"') + 1
    raw = tomllib.load(open(os.path.join(ROOT, "etc/cardd-r2.toml"), "rb"))
    raw["span"][0]["r2_variant"] = str(bad)
    path, _ = private_cardd_config(raw, str(tmp_path), "sim")
    proc = subprocess.run([sys.executable, "-m", "drivers.cardd", "--config", path,
                           "--no-metrics"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env=ENV)
    assert proc.returncode == 1
    assert f"span 1: R2 variant: {bad}:{line}: line.answer: expected 2 bits" in proc.stderr


@pytest.fixture(scope="module")
def openr2():
    sys.path.insert(0, os.path.join(ROOT, "cffi_build"))
    try:
        from simulators import openr2_peer
        if openr2_peer.available():
            import importlib

            import build_openr2
            build_openr2.build_in_place()
            openr2_peer = importlib.reload(openr2_peer)
    finally:
        sys.path.pop(0)
    assert openr2_peer.available() is None, openr2_peer.available()
    return openr2_peer


def test_openr2_itu_against_the_cardd_process(tmp_path, openr2):
    raw = tomllib.load(open(os.path.join(ROOT, "etc/cardd-r2.toml"), "rb"))
    raw["span"][0]["r2_variant"] = "itu"
    path, cfg = private_cardd_config(raw, str(tmp_path), "sim")
    cards = cards_for(cfg)
    world = World(cards, plan=cfg.tone_plan)
    peer = openr2.OpenR2Peer(world, [1, 2], variant="itu", answer_after=25).attach()
    frontend = frontend_for("sim", cards, cfg)
    frontend.start()
    clock = Clock(cards, world, frontend, mode="fast")
    events: list = []
    client = CarddClient(cfg.events_endpoint, cfg.commands_endpoint)

    def seen(kind, channel):
        events.extend(client.poll_events())
        return [e for e in events if e.WhichOneof("kind") == kind and e.channel == channel]

    def run_until(done, what):
        clock.run(until=done, max_seconds=60)
        assert done(), f"{what} did not happen; openr2: {peer.log_tail(15)}"

    try:
        with ProcessGroup(str(tmp_path / "logs")) as procs:
            procs.python_module("cardd", "drivers.cardd", ["--config", path, "--no-metrics"],
                                cwd=ROOT)
            run_until(lambda: client.subscribed() and frontend.connected(), "cardd start")
            clock.run(max_ticks=10)
            # openr2 calls cardd: ANI and DNIS arrive, the application answers.
            call_in = None
            peer.channel(1).call("54321", "87654321")
            run_until(lambda: seen("incoming", 1), "incoming call")
            inc = seen("incoming", 1)[0].incoming
            assert (inc.ani, inc.dnis, inc.category) == ("87654321", "54321", "ordinary")
            client.send(cardd_pb2.Command(id=1, channel=1, answer=cardd_pb2.Answer()))
            call_in = peer.channel(1).calls[-1]
            run_until(lambda: call_in.answered is not None and seen("answered", 1), "answer")
            # cardd calls openr2: openr2 reports the ANI and DNIS it collected.
            client.send(cardd_pb2.Command(id=2, channel=2, dial=cardd_pb2.Dial(
                number="12345", ani="13812345678")))
            run_until(lambda: seen("answered", 2), "outbound answer")
            call_out = peer.channel(2).calls[-1]
            assert (call_out.dnis, call_out.ani) == ("12345", "13812345678")
            kinds = [e.WhichOneof("kind") for e in events if e.channel == 2]
            assert kinds == ["dial_complete", "proceeding", "alerting", "answered"]
            # Clearing both ways: cardd clears back on 1, openr2 clears back on 2.
            client.send(cardd_pb2.Command(id=3, channel=1, hangup=cardd_pb2.Hangup()))
            peer.channel(2).hang_up()
            run_until(lambda: seen("cleared", 1) and seen("cleared", 2)
                      and call_in.ended is not None, "clearing")
            assert seen("cleared", 2)[0].cleared.cause == 16
            assert call_in.protocol_errors == [] and call_out.protocol_errors == []
            procs.terminate_all()
            clock.run(until=lambda: not procs.alive(), max_seconds=5)
    finally:
        client.close()
        frontend.close()
        peer.close()
