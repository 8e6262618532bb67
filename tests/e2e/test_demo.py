"""`ctisim demo` as a user runs it (`make demo`): cards, cardd, ctid and the demo-ctid
scenario for 20 seconds. It must exit 0 with its summary, calls must have been answered,
ctid must have taken them (CSTA Delivered, Established, CallCleared reached the live view's
CTI client), and none of the scenario's scripts may have stalled (a route in ctid's dial
plan that went nowhere would leave one waiting: the summary notes it).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))



@pytest.fixture(scope="module")
def demo():
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", DEMO_SECONDS="20",
               PYTHONPATH=ROOT + (os.pathsep + os.environ["PYTHONPATH"]
                                  if os.environ.get("PYTHONPATH") else ""))
    proc = subprocess.run([sys.executable, "-m", "simulators.ctisim", "demo"], cwd=ROOT, env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    return proc


def _summary(out: str) -> tuple[str, str]:
    cardd = [l for l in out.splitlines() if l.startswith("ctisim demo:")]
    ctid = [l for l in out.splitlines() if l.startswith("ctid:") and "CSTA events for" in l]
    assert cardd and ctid, f"no summary in the demo's output:\n{out[-3000:]}"
    return cardd[-1], ctid[-1]


def test_demo_exits_0_with_answered_calls(demo):
    assert demo.returncode == 0, f"exit {demo.returncode}\n{demo.stdout[-3000:]}\n{demo.stderr[-2000:]}"
    cardd, _ = _summary(demo.stdout)
    answered = int(re.search(r"answered (\d+)", cardd).group(1))
    assert answered >= 2, cardd
    assert ", 0 gaps)" in cardd, cardd


def test_ctid_took_the_calls(demo):
    _, ctid = _summary(demo.stdout)
    counts = {name: int(n) for name, n in re.findall(r"(\w+) (\d+)", ctid.split(":", 2)[2])}
    for name in ("ServiceInitiated", "Delivered", "Established", "CallCleared"):
        assert counts.get(name, 0) >= 1, f"no {name} from ctid: {ctid}"
    assert "(0 lost)" in ctid, ctid
    # The live view showed ctid's events with their calls (and the extension call's route).
    assert re.search(r"Delivered\s+call C\d+\s+at ext:8003\s+8001 -> 8003", demo.stdout), \
        demo.stdout[-3000:]


def test_no_script_stalled(demo):
    notes = [l for l in demo.stdout.splitlines() if l.strip().startswith("note:")]
    assert not notes, "\n".join(notes)
