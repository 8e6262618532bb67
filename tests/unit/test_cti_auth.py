"""CTI security: the keys file, the ZAP handler (unknown keys refused), roles and scopes (an
agent controls only its own device, an observer changes nothing), refusals audited."""
import datetime as dt
import json
import queue
import threading
import time

import pytest
import zmq

from ctid.cti.auth import KeysError, KeyStore, generate_keypair, load_keypair, load_public_key
from ctid.cti.client import CtiClient, RequestTimeout
from ctid.cti.server import CtiServer, CtiSettings, serve
from ctid.daemon import ModelService
from ctid.model.callmodel import CallModel
from ctid.model.calls import ChannelRef, Device, DeviceType
from ctid.model.routing import DialPlan, Route
from hotline_proto import cardd_pb2, cti_pb2


def model():
    devices = [Device(f"ext:{n}", DeviceType.EXTENSION, number=str(n),
                      channel=ChannelRef("node1", ch)) for n, ch in ((8001, 1), (8002, 2))]
    devices += [Device("trunk:node1/5", DeviceType.TRUNK, number="12345", group="co",
                       channel=ChannelRef("node1", 5))]
    plan = DialPlan([Route("8XXX", "ext:"), Route("12345", "ext:8001")], {})
    return CallModel(devices, plan, tz=dt.timezone.utc)


# ---- the keys file ----------------------------------------------------------------------------
def write(tmp_path, text):
    p = tmp_path / "keys.toml"
    p.write_text(text)
    return str(p)


def a_key():
    return zmq.curve_keypair()[0].decode()


def test_keys_file_loads_roles_and_scopes(tmp_path):
    k1, k2 = a_key(), a_key()
    keys = KeyStore.load(write(tmp_path, f"""
[clients.agent-1001]
key = "{k1}"
role = "agent"
devices = ["ext:8001"]
agents = ["1001"]

[clients.wallboard]
key = "{k2}"
role = "observer"
"""))
    c = keys.by_name["agent-1001"]
    assert c.role == "agent" and c.scope.device("ext:8001") and not c.scope.device("ext:8002")
    assert c.line == 2
    w = keys.lookup(zmq.utils.z85.decode(k2.encode()))
    assert w.name == "wallboard" and w.scope.device("ext:9999")      # unscoped observer: all


@pytest.mark.parametrize("body,line,key,words", [
    ('[clients.a]\nkey = "{k}"\nrole = "boss"\n', 3, "clients.a.role", "must be one of"),
    ('[clients.a]\nkey = "not-a-key"\nrole = "admin"\n', 2, "clients.a.key", "40 Z85"),
    ('[clients.a]\nkey = "{k}"\nrole = "admin"\ncolour = "red"\n', 4, "clients.a.colour", "unknown key"),
    ('[clients.a]\nkey = "{k}"\nrole = "agent"\n', 1, "clients.a", "needs `devices`"),
    ('[clients.a]\nkey = "{k}"\nrole = "admin"\n\n[clients.b]\nkey = "{k}"\nrole = "observer"\n',
     6, "clients.b.key", "already listed"),
    ('[clients.a]\nkey = "{k}"\nrole = "agent"\ndevices = "ext:8001"\nagents = [1]\n', 5,
     "clients.a.agents", "list of names"),
    ('[clients.a]\nkey = "{k}\nrole = "admin"\n', 2, "syntax", ""),
    ('[server]\nx = 1\n', 1, "server", "unknown table"),
])
def test_keys_file_errors_name_file_line_and_key(tmp_path, body, line, key, words):
    path = write(tmp_path, body.replace("{k}", a_key()))
    with pytest.raises(KeysError) as e:
        KeyStore.load(path)
    assert (e.value.path, e.value.line, e.value.key) == (path, line, key)
    assert words in e.value.message
    assert str(e.value).startswith(f"{path}:{line}: {key}: ")


def test_keygen_writes_a_private_secret_and_refuses_to_overwrite(tmp_path):
    public, pub, sec = generate_keypair(str(tmp_path), "agent-1001")
    assert load_public_key(pub).decode() == public
    assert load_keypair(sec)[0].decode() == public
    assert (tmp_path / "agent-1001.key_secret").stat().st_mode & 0o777 == 0o600
    with pytest.raises(ValueError, match="exists"):
        generate_keypair(str(tmp_path), "agent-1001")
    with pytest.raises(ValueError, match="no secret key"):
        load_keypair(pub)


# ---- a CURVE server with a call model -----------------------------------------------------------
@pytest.fixture
def secured(tmp_path):
    d = str(tmp_path)
    names = {"agent1": ('role = "agent"\ndevices = ["ext:8001"]\nagents = ["1001"]\n'),
             "watcher": 'role = "observer"\n',
             "boss": 'role = "supervisor"\ndevices = ["ext:*", "trunk:*"]\n'}
    _, server_pub, server_sec = generate_keypair(d, "ctid")
    entries = []
    for name, rest in names.items():
        public, _, _ = generate_keypair(d, name)
        entries.append(f'[clients.{name}]\nkey = "{public}"\n{rest}')
    generate_keypair(d, "stranger")                     # a valid key pair nobody listed
    (tmp_path / "keys.toml").write_text("\n".join(entries))
    from ctid.storage import Store
    store = Store(f"sqlite:///{d}/hotline.db", spool_dir=f"{d}/spool").start()
    ctx = zmq.Context()
    m = model()
    from ctid.cti.auth import AuditLog
    audit = AuditLog(f"{d}/audit.log", store=store)
    settings = CtiSettings(events=f"ipc://{d}/ev.sock", requests=f"ipc://{d}/rq.sock",
                           server_key=server_sec, keys=f"{d}/keys.toml", heartbeat_s=0.2)
    server = CtiServer(ctx, settings, ModelService(m), audit=audit).open()
    stop, tasks = threading.Event(), queue.Queue()
    t = threading.Thread(target=serve, args=(server, stop), kwargs={"tasks": tasks}, daemon=True)
    t.start()
    clients = []

    def client(name, **kw):
        c = CtiClient(settings.events, settings.requests, ctx=ctx, request_timeout_s=1.0,
                      server_key=load_public_key(server_pub),
                      keypair=load_keypair(f"{d}/{name}.key_secret"), **kw)
        clients.append(c)
        return c

    def run(fn):
        done = queue.Queue()
        tasks.put(lambda srv: done.put(fn(srv)))
        return done.get(timeout=30)

    yield {"client": client, "run": run, "model": m, "server": server, "dir": d, "store": store,
           "settings": settings}
    for c in clients:
        c.close()
    stop.set()
    t.join(5)
    server.close()
    store.close()
    ctx.term()


def ring_8001_from_trunk(srv):
    """A call from the CO line to ext:8001, answered; events published as ctid would."""
    m = srv.service.model
    ev = cardd_pb2.ChannelEvent(channel=5, incoming=cardd_pb2.Incoming(ani="13812345678"))
    out = m.channel_event("node1", ev, time.time())
    srv.publish(out.events)
    out = m.channel_event("node1", cardd_pb2.ChannelEvent(channel=1, answered=cardd_pb2.Answered()),
                          time.time())
    srv.publish(out.events)
    return out.events[0].call_id


def req(**kind):
    return cti_pb2.Request(**kind)


def test_an_unlisted_key_can_neither_request_nor_subscribe(secured):
    stranger = secured["client"]("stranger")
    with pytest.raises(RequestTimeout):
        stranger.request(req(system_status=cti_pb2.SystemStatus()), timeout_s=1.0)
    secured["run"](lambda srv: srv.publish([cti_pb2.Event(name="Delivered")]))
    assert stranger.poll(300) == [] and not stranger.last_heartbeat
    # a plain (no CURVE) client gets nowhere either (libzmq drops it at the greeting)
    s = secured["settings"]
    plain = CtiClient(s.events, s.requests, ctx=zmq.Context.instance())
    try:
        with pytest.raises(RequestTimeout):
            plain.request(req(system_status=cti_pb2.SystemStatus()), timeout_s=0.5)
    finally:
        plain.close()
    assert secured["server"].zap.refused >= 2          # the stranger's SUB and DEALER
    lines = [json.loads(x) for x in open(f"{secured['dir']}/audit.log")]
    refused = [x for x in lines if x["request"] == "connect"]
    assert refused and all(x["reason"] == "unknown client key" and x["allowed"] is False
                           for x in refused)
    assert refused[0]["client"] == "key " + load_keypair(f"{secured['dir']}/stranger.key_secret")[0].decode()


def test_an_agent_controls_its_own_device_only_and_refusals_are_audited(secured):
    agent = secured["client"]("agent1")
    status = agent.request(req(system_status=cti_pb2.SystemStatus()))
    assert status.ok and status.status["client"] == "agent1" and status.status["role"] == "agent"
    call_id = secured["run"](ring_8001_from_trunk)

    r = agent.request(req(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8002")))
    assert not r.ok and r.error == "refused: hold_call: device ext:8002 is not agent1's to control"
    r = agent.request(req(make_call=cti_pb2.MakeCall(calling="ext:8002", called="8001")))
    assert not r.ok and "ext:8002 is not agent1's" in r.error
    r = agent.request(req(clear_call=cti_pb2.CallRef(call_id=call_id)))
    assert not r.ok and "not allowed for the agent role" in r.error
    r = agent.request(req(agent=cti_pb2.AgentRequest(agent="1002", action="login")))
    assert not r.ok and "agent '1002' is not agent1's" in r.error
    # its own device: allowed, carried out, and published
    r = agent.request(req(hold_call=cti_pb2.CallRef(call_id=call_id, device="ext:8001")))
    assert r.ok, r.error
    assert secured["model"].calls[call_id].connections["ext:8001"].state.value == "held"

    lines = [json.loads(x) for x in open(f"{secured['dir']}/audit.log")]
    mine = [(x["client"], x["request"], x["allowed"]) for x in lines if x["client"] == "agent1"]
    assert mine == [("agent1", "hold_call", False), ("agent1", "make_call", False),
                    ("agent1", "clear_call", False), ("agent1", "agent", False),
                    ("agent1", "hold_call", True)]
    store = secured["store"]
    assert store.flush(10)
    rows = [(r["client"], r["role"], r["request"], r["allowed"]) for r in store.rows("audit")]
    assert ("agent1", "agent", "hold_call", False) in rows and ("agent1", "agent", "hold_call", True) in rows
    assert int(agent.request(req(system_status=cti_pb2.SystemStatus())).status["refused"]) == 4


def test_an_observer_sees_everything_and_changes_nothing(secured):
    watcher = secured["client"]("watcher")
    call_id = secured["run"](ring_8001_from_trunk)
    for kind in (dict(make_call=cti_pb2.MakeCall(calling="ext:8002", called="8001")),
                 dict(set_user_data=cti_pb2.SetUserData(call_id=call_id, data={"crm": "1"})),
                 dict(clear_connection=cti_pb2.CallRef(call_id=call_id, device="ext:8001")),
                 dict(agent=cti_pb2.AgentRequest(agent="1001", action="logout"))):
        r = watcher.request(req(**kind))
        assert not r.ok and "an observer may not change anything" in r.error
    snap = watcher.request(req(snapshot=cti_pb2.Snapshot()))
    assert snap.ok and {d.id for d in snap.devices} == {"ext:8001", "ext:8002", "trunk:node1/5"}
    assert [c.call_id for c in snap.calls] == [call_id] and snap.seq == 2
    assert call_id in secured["model"].calls and "crm" not in secured["model"].calls[call_id].data


def test_snapshots_follow_the_scope_and_subscribers_get_events(secured):
    agent = secured["client"]("agent1")
    boss = secured["client"]("boss")
    for c in (agent, boss):
        end = time.monotonic() + 10
        while not c.last_heartbeat and time.monotonic() < end:
            c.poll(50)
    call_id = secured["run"](ring_8001_from_trunk)
    snap = agent.request(req(snapshot=cti_pb2.Snapshot()))
    assert [d.id for d in snap.devices] == ["ext:8001"] and [c.call_id for c in snap.calls] == [call_id]
    r = agent.request(req(snapshot_device=cti_pb2.DeviceRef(device="ext:8002")))
    assert not r.ok and "ext:8002 is not agent1's" in r.error
    # the supervisor may clear the call its team is in
    r = boss.request(req(clear_call=cti_pb2.CallRef(call_id=call_id)))
    assert r.ok, r.error
    names = []
    end = time.monotonic() + 5
    while "CallCleared" not in names and time.monotonic() < end:
        names += [e.name for e in agent.poll(50) if isinstance(e, cti_pb2.Event)]
    assert names == ["Delivered", "Established", "ConnectionCleared", "ConnectionCleared",
                     "CallCleared"]


def test_keys_are_reloaded_without_a_restart(secured):
    d = secured["dir"]
    newcomer = secured["client"]("stranger")
    with pytest.raises(RequestTimeout):
        newcomer.request(req(system_status=cti_pb2.SystemStatus()), timeout_s=0.5)
    public = load_keypair(f"{d}/stranger.key_secret")[0].decode()
    with open(f"{d}/keys.toml", "a") as f:
        f.write(f'\n[clients.stranger]\nkey = "{public}"\nrole = "observer"\n')
    secured["run"](lambda srv: srv.reload_keys())
    fresh = secured["client"]("stranger")           # a new handshake meets the new table
    r = fresh.request(req(system_status=cti_pb2.SystemStatus()), timeout_s=3.0)
    assert r.ok and r.status["client"] == "stranger"
