"""The shipped analog scenarios, run by `ctisim run` as a user runs them: ctisim and cardd as
processes over real sockets, on both card backends (the simulator's own wire and the DAHDI
backend against the simulator's DAHDI emulation)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCENARIOS = ["fxs-dial", "fxo-incoming", "fxs-ring-callerid", "fxo-battery"]


def run_scenario(name, backend, *extra):
    path = os.path.join(ROOT, "etc/ctisim/scenarios", f"{name}.yaml")
    proc = subprocess.run([sys.executable, "-m", "simulators.ctisim", "run", path,
                           "--backend", backend, "--json", *extra],
                          cwd=ROOT, capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        pytest.fail(f"ctisim printed no JSON report (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc, report


@pytest.mark.parametrize("backend", ["sim", "dahdi"])
@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes(name, backend):
    proc, report = run_scenario(name, backend)
    assert proc.returncode == 0, json.dumps(report, indent=1)[-4000:]
    assert report["passed"] is True
    assert not report["failures"]
    assert report["expectations"] >= 3


def test_a_broken_expectation_fails_with_an_account(tmp_path):
    """A scenario whose expectation cannot hold exits non-zero and says what it saw."""
    src = open(os.path.join(ROOT, "etc/ctisim/scenarios/fxo-incoming.yaml")).read()
    assert "13812345678" in src
    bad = tmp_path / "wrong-number.yaml"
    bad.write_text(src.replace("cardd: ../../cardd.toml", f"cardd: {ROOT}/etc/cardd.toml")
                      .replace('ani: "13812345678"', 'ani: "10000000000"'))
    proc = subprocess.run([sys.executable, "-m", "simulators.ctisim", "run", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1
    assert "10000000000" in proc.stdout and "13812345678" in proc.stdout
