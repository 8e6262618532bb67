"""cardd as a process behind ctisim: bad configuration and bad messages never take it down."""
import os
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import zmq

from hotline_proto import cardd_pb2
from simulators.ctisim import private_cardd_config
from simulators.procs import ProcessGroup

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_invalid_config_is_refused_with_file_line_and_key(tmp_path):
    bad = tmp_path / "cardd.toml"
    text = open(os.path.join(ROOT, "etc/cardd.toml")).read().replace('port = "fxo"', 'port = "fxq"')
    bad.write_text(text)
    line = text.splitlines().index('port = "fxq"            # a CO line is attached (DAHDI signalling fxsks)') + 1
    proc = subprocess.run([sys.executable, "-m", "drivers.cardd", "--config", str(bad)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert f"{bad}:{line}: channels[1].port: 'fxq' is not one of fxs, fxo" in proc.stderr


@pytest.fixture
def running_cardd(tmp_path):
    path, cfg = private_cardd_config(os.path.join(ROOT, "etc/cardd.toml"), str(tmp_path), "sim")
    with ProcessGroup(str(tmp_path)) as procs:
        procs.python_module("ctisim", "simulators.ctisim", ["serve", "--config", path], cwd=ROOT)
        procs.python_module("cardd", "drivers.cardd", ["--config", path], cwd=ROOT)
        ctx = zmq.Context.instance()
        status = cardd_pb2.Command(id=1, status=cardd_pb2.Status()).SerializeToString()
        deadline = time.time() + 60
        while True:              # wait until cardd answers (a fresh probe socket each try)
            probe = ctx.socket(zmq.DEALER)
            probe.setsockopt(zmq.LINGER, 0)
            probe.connect(cfg.commands_endpoint)
            probe.send(status)
            answered = probe.poll(500)
            probe.close()
            if answered:
                break
            assert time.time() < deadline, procs.dead() or "cardd never answered"
        sock = ctx.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(cfg.commands_endpoint)

        def ask(payload: bytes, timeout=20.0) -> cardd_pb2.Reply:
            sock.send(payload)
            assert sock.poll(int(timeout * 1000)), "cardd did not answer"
            reply = cardd_pb2.Reply()
            reply.ParseFromString(sock.recv())
            return reply

        yield cfg, ask, procs
        sock.close()


def metric(cfg, name, **labels) -> float:
    text = urllib.request.urlopen(f"http://{cfg.metrics_listen}/metrics", timeout=10).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{name}\{{{want}\}} (\S+)$" if want else rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_malformed_unknown_and_oversized_commands_are_rejected_and_counted(running_cardd):
    cfg, ask, procs = running_cardd
    r = ask(b"\xff\xff\xff garbage")
    assert not r.ok and "malformed" in r.error
    r = ask(cardd_pb2.Command(id=7, channel=1).SerializeToString())
    assert not r.ok and "unknown or empty command" in r.error and r.id == 7
    r = ask(b"\x00" * (70 * 1024))
    assert not r.ok and "exceeds" in r.error
    r = ask(cardd_pb2.Command(id=8, channel=99, answer=cardd_pb2.Answer()).SerializeToString())
    assert not r.ok and r.error == "no channel 99 on this node"
    r = ask(cardd_pb2.Command(id=9, channel=1, play_tone=cardd_pb2.PlayTone(tone="nope")).SerializeToString())
    assert not r.ok and "has no tone 'nope'" in r.error
    r = ask(cardd_pb2.Command(id=10, channel=5, answer=cardd_pb2.Answer()).SerializeToString())
    assert not r.ok and r.error          # nothing to answer on an idle line: refused, with a reason
    # cardd is still up and answers properly
    r = ask(cardd_pb2.Command(id=11, status=cardd_pb2.Status()).SerializeToString())
    assert r.ok and r.id == 11 and len(r.channels) == 8
    assert all(c.in_service for c in r.channels)
    assert not procs.dead()
    deadline = time.time() + 10
    while metric(cfg, "hotline_cardd_rejected_messages_total", reason="malformed") < 1:
        assert time.time() < deadline, "rejected messages not counted"
        time.sleep(0.2)
    assert metric(cfg, "hotline_cardd_rejected_messages_total", reason="unknown") == 1
    assert metric(cfg, "hotline_cardd_rejected_messages_total", reason="oversized") == 1
    assert metric(cfg, "hotline_cardd_commands_total", command="answer", result="error") == 2


def test_cardctl_status_shows_spans_and_channels(running_cardd):
    cfg, ask, procs = running_cardd
    out = subprocess.run([sys.executable, "-m", "drivers.cardctl", "--config", cfg.path, "status"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "analog-card-1" in out.stdout
    rows = [l for l in out.stdout.splitlines() if re.match(r"^\d+\s+1\s+(fxs|fxo)", l)]
    assert len(rows) == 8 and all(" idle " in r for r in rows)
