"""ctisim, cardd and ctid as processes, a CTI client in the test: a call from the CO line to
an extension, answered, held, retrieved, transferred by consultation, cleared by the far
end, with the exact CSTA events; a refused request for another agent's device; CDRs in
SQLite; then ctid restarting in the middle of a call that keeps its audio, and the client
recovering by snapshot.

The far side (ctisim) runs in a process of its own; tests/e2e/stack.py serves it.
"""
import json
import os
import subprocess
import sys
import urllib.request

import pytest

from tests.e2e.stack import CTID_SECURE_HEAD, ROOT, Stack, ready, wait

ANI = "13812345678"

CTID_TOML = CTID_SECURE_HEAD + """
[[trunk_group]]
name = "co"
channels = "node1/5-8"
number = "12345"

[[route]]
match = "8XXX"
to = "ext:"

[[route]]
match = "12345"
to = "ext:8001"
"""

CLIENTS = {
    "agent1": 'role = "agent"\ndevices = ["ext:8001"]\n',
    "watcher": 'role = "observer"\n',
}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    s = Stack(str(tmp_path_factory.mktemp("ctid-e2e")), os.path.join(ROOT, "etc/cardd.toml"),
              CTID_TOML, CLIENTS)
    s.start()
    yield s
    s.stop()


class Watch:
    """A subscription polled in the background of the test's waits."""

    def __init__(self, client):
        self.client = client
        self.items = []

    def pump(self):
        self.items += self.client.poll(20)

    def events(self):
        from hotline_proto import cti_pb2
        return [i for i in self.items if isinstance(i, cti_pb2.Event) and i.name != "SystemStatus"]

    def names(self):
        return [e.name for e in self.events()]

    def until(self, name, stack, count=1, limit=20.0, device=None):
        def seen():
            self.pump()
            return sum(1 for e in self.events() if e.name == name and
                       (device is None or e.device == device)) >= count
        wait(seen, f"{count} x {name} {device or ''}; seen {self.names()}", stack, limit, step=0)


def ctictl(stack, *args):
    proc = subprocess.run([sys.executable, "-m", "ctid.ctictl", *args, "--config", stack.ctid_toml,
                           "--key", f"{stack.d}/keys/watcher.key_secret"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_call_hold_retrieve_consult_transfer_far_end_clears(stack):
    from hotline_proto import cti_pb2
    agent = stack.client("agent1")
    ready(stack, agent)
    watch = Watch(agent)
    wait(lambda: watch.pump() or agent.last_heartbeat, "the subscription", stack)

    stack.do(5, "ring", caller_id=ANI)
    watch.until("Delivered", stack)
    wait(lambda: stack.get(1, "ringing") or stack.get(1, "caller_id"), "ext 8001 ringing", stack)
    wait(lambda: stack.get(1, "caller_id") == ANI, "ext 8001 showing the caller's number", stack)
    stack.do(1, "off_hook")
    watch.until("Established", stack, device="ext:8001")
    call_id = watch.events()[0].call_id
    est = [e for e in watch.events() if e.name == "Established"][0]
    assert est.calling == ANI and est.data["ani"] == ANI and est.device == "ext:8001"
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered by cardd", stack)
    stack.do(5, "talk")
    wait(lambda: stack.get(1, "hearing") == "voice", "the caller's voice at ext 8001", stack)

    r = agent.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")))
    assert r.ok, r.error
    r = agent.request(cti_pb2.Request(retrieve_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")))
    assert r.ok, r.error
    r = agent.request(cti_pb2.Request(consultation_call=cti_pb2.ConsultationCall(
        call_id=call_id, device="ext:8001", called="8002")))
    assert r.ok, r.error
    consult = r.call_id
    wait(lambda: stack.get(2, "ringing"), "ext 8002 ringing", stack)
    stack.do(2, "off_hook")
    watch.until("Established", stack, device="ext:8002")
    # the agent may not touch ext 8002: refused, the call goes on
    r = agent.request(cti_pb2.Request(hold_call=cti_pb2.CallRef(call_id=consult, device="ext:8002")))
    assert not r.ok and r.error == "refused: hold_call: device ext:8002 is not agent1's to control"
    r = agent.request(cti_pb2.Request(transfer_call=cti_pb2.TransferCall(
        held_call_id=call_id, active_call_id=consult, device="ext:8001")))
    assert r.ok, r.error
    watch.until("Transferred", stack)
    wait(lambda: stack.get(2, "hearing") == "voice", "the caller's voice at ext 8002", stack)
    stack.do(1, "on_hook")                   # the agent puts the handset down

    stack.do(5, "hang_up")                     # the far end: busy tone only, as in China
    watch.until("CallCleared", stack)
    wait(lambda: stack.get(2, "hearing") == "busy", "ext 8002 released (clear tone)", stack)
    stack.do(2, "on_hook")
    evs = watch.events()
    seqs = [e.seq for e in evs]
    assert [(e.name, e.device, e.call_id) for e in evs] == [
        ("Delivered", "ext:8001", call_id),
        ("Established", "ext:8001", call_id),
        ("Held", "ext:8001", call_id),
        ("Retrieved", "ext:8001", call_id),
        ("Held", "ext:8001", call_id),
        ("Originated", "ext:8001", consult),
        ("Delivered", "ext:8002", consult),
        ("Established", "ext:8002", consult),
        ("Transferred", "ext:8001", call_id),
        ("ConnectionCleared", "trunk:node1/5", call_id),
        ("ConnectionCleared", "ext:8002", call_id),
        ("CallCleared", "", call_id)]
    assert evs[8].secondary_call_id == consult
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert all(e.data["ani"] == ANI for e in evs if e.call_id == call_id)

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).read().decode()
    assert 'hotline_ctid_calls_completed_total{outcome="answered"} 1.0' in metrics
    assert 'hotline_ctid_cti_requests_total{request="hold_call",result="refused"} 1.0' in metrics

    from ctid.storage import Store
    store = Store(f"sqlite:///{stack.d}/run/hotline.db")

    def cdr():
        rows = store.cdrs(call_id=call_id)
        return rows[0] if rows else None
    row = wait(cdr, "the CDR in SQLite", stack, limit=10)
    assert row["calling"] == ANI and row["outcome"] == "answered" and row["transfers"]
    legs = [(leg["device"], leg["role"]) for leg in store.legs(call_id)]
    assert legs == [("trunk:node1/5", "caller"), ("ext:8001", "called"),
                    ("ext:8002", "transfer_target")]
    audit = [(a["client"], a["request"], a["allowed"]) for a in store.rows("audit")]
    assert ("agent1", "hold_call", False) in audit and ("agent1", "transfer_call", True) in audit
    store.close()


def test_ctid_restarts_mid_call_the_audio_stays_and_the_client_recovers_by_snapshot(stack):
    from ctid.cti.client import SnapshotTaken
    from hotline_proto import cti_pb2
    watcher = stack.client("watcher")
    ready(stack, watcher)
    watch = Watch(watcher)
    wait(lambda: watch.pump() or watcher.last_heartbeat, "the subscription", stack)
    stack.do(5, "ring", caller_id=ANI)
    wait(lambda: stack.get(1, "ringing"), "ext 8001 ringing", stack)
    stack.do(1, "off_hook")
    watch.until("Established", stack)
    wait(lambda: stack.get(5, "state") == "connected", "the CO line answered by cardd", stack)
    stack.do(5, "talk")
    wait(lambda: stack.get(1, "hearing") == "voice", "the caller's voice", stack)
    old_epoch = watcher.stream.epoch

    stack.restart_ctid()
    ready(stack, watcher)

    def snapshot():
        watch.pump()
        return [i for i in watch.items if isinstance(i, SnapshotTaken)]
    (snap,) = wait(snapshot, "a snapshot after the restart", stack)
    assert snap.reason == "epoch" and snap.epoch != old_epoch
    assert any(i.name == "SystemStatus" and i.reason == "epochChanged"
               for i in watch.items if isinstance(i, cti_pb2.Event))
    (call,) = snap.calls
    assert {(c.device, c.state) for c in call.connections} == {
        ("trunk:node1/5", cti_pb2.CS_CONNECTED), ("ext:8001", cti_pb2.CS_CONNECTED)}
    assert call.data["ani"] == ANI and call.data["resynced"] == "cardd"
    assert stack.get(1, "hearing") == "voice"          # cardd's bridge never went away
    # the operator's view of the same, through ctictl
    out = ctictl(stack, "calls")
    assert f"1 calls at seq {snap.seq} (epoch {snap.epoch})" in out
    assert "trunk:node1/5(connected), ext:8001(connected)" in out and f"ani={ANI}" in out
    status = json.loads(ctictl(stack, "status", "--json"))
    assert status["calls"] == "1" and status["cardd.node1"] == "up" and status["security"] == "curve"
    assert status["epoch"] == snap.epoch and status["role"] == "observer"

    before = len(watch.events())
    stack.do(5, "hang_up")
    watch.until("CallCleared", stack)
    wait(lambda: stack.get(1, "hearing") == "busy", "ext 8001 released (clear tone)", stack)
    stack.do(1, "on_hook")
    after = watch.events()[before:]
    assert [(e.name, e.device) for e in after] == [
        ("ConnectionCleared", "trunk:node1/5"), ("ConnectionCleared", "ext:8001"),
        ("CallCleared", "")]
    assert all(e.call_id == call.call_id and e.epoch == snap.epoch for e in after)
    assert after[0].seq == snap.seq + 1
    assert watcher.stats.gaps_unrecovered == 0 and watcher.stats.epoch_changes == 1
