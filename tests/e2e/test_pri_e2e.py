"""PRI end to end: ctisim and cardd as processes, on both backends; D-channel captures
from ctisim (--pcap) and from cardd (cardctl pcap), decoded by tshark."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest

from tests.conftest import need_tool

from simulators.ctisim import Stack
from simulators.scenario import parse_scenario

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIO = os.path.join(ROOT, "etc", "ctisim", "scenarios", "pri-30-calls.yaml")
ENV = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "PYTHONPATH": ROOT}


def tshark_lines(path: str) -> list[str]:
    tshark = need_tool("tshark")
    out = subprocess.run([tshark, "-r", path], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@pytest.mark.parametrize("backend", ["sim", "dahdi"])
def test_thirty_simultaneous_calls_scenario(backend, tmp_path):
    pcap = str(tmp_path / "co.pcap")
    proc = subprocess.run([sys.executable, "-m", "simulators.ctisim", "run", SCENARIO,
                           "--backend", backend, "--json", "--pcap", pcap],
                          cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["passed"], (report["failures"], proc.stderr[-2000:])
    assert report["events"] >= 90 and report["commands"] == 30
    lines = tshark_lines(pcap)
    # Seen from the exchange (the network side): its SETUPs go out, cardd's CONNECTs come in.
    assert sum(1 for x in lines if x.rstrip().endswith("| SETUP")
               and "Local Network" in x.split("→")[0]) == 30
    assert sum(1 for x in lines if x.rstrip().endswith("| CONNECT")
               and "Remote User" in x.split("→")[0]) == 30


def test_cardctl_pcap_from_a_running_cardd(tmp_path):
    """cardd (a process) writes its D-channel while the exchange calls it; the capture
    is asked for with cardctl pcap, in real time."""
    scenario = parse_scenario(f"""
cardd: {os.path.join(ROOT, 'etc', 'cardd-pri.toml')}
clock: realtime
timeout_s: 30
steps:
  - {{wait: 2s}}
  - {{pri: 1, do: call, number: "8001", ani: "13800138000", channel: 3}}
  - {{wait_for: {{kind: answered, channel: 3}}, within: 2s}}
  - {{pri: 1, do: hang_up, channel: 3, after: 1s}}
  - {{wait_for: {{kind: cleared, channel: 3}}, within: 2s}}
client:
  - when: {{kind: incoming}}
    send: answer
""", str(tmp_path / "inline.yaml"))
    os.makedirs(tmp_path / "run")
    stack = Stack(scenario, "sim", "realtime", str(tmp_path / "run"))
    stack.start()
    captured = threading.Event()
    runner = threading.Thread(target=stack.clock.run,
                              kwargs={"until": captured.is_set, "max_seconds": 40},
                              daemon=True)
    runner.start()
    pcap = str(tmp_path / "cardd.pcap")
    try:
        # cardd answers once it is up (the scenario waits for that too).
        for _ in range(100):
            if stack.run.ready:
                break
            runner.join(0.1)
        proc = subprocess.run([sys.executable, "-m", "drivers.cardctl", "--config",
                               stack.config_path, "pcap", "--span", "1", "--seconds", "5",
                               pcap], cwd=ROOT, env=ENV, capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 0, proc.stderr
        assert "D-channel frames in" in proc.stdout
        assert stack.run.finished() and not stack.run.evaluate()
        captured.set()
        runner.join(10)
    finally:
        stack.clock.stop()
        runner.join(5)
        stack.stop()
    lines = tshark_lines(pcap)
    # Seen from cardd (the user side): the network's SETUP comes in, cardd's CONNECT goes out.
    setup = [x for x in lines if x.rstrip().endswith("| SETUP")]
    connect = [x for x in lines if x.rstrip().endswith("| CONNECT")]
    assert len(setup) == 1 and "Remote Network" in setup[0].split("→")[0]
    assert len(connect) == 1 and "Local User" in connect[0].split("→")[0]
    assert any(x.rstrip().endswith("| RELEASE COMPLETE") for x in lines)
