"""The request socket: malformed, oversized and empty requests are rejected with an error
reply and counted; a fault while handling one is contained; the server keeps answering."""
import threading

import pytest
import zmq

from ctid.cti.auth import ANONYMOUS, KeyStore, ZapHandler
from ctid.cti.server import CtiServer, CtiSettings, serve
from ctid.metrics import CtidMetrics
from ctid.model.callmodel import RequestError
from hotline_proto import cti_pb2


class Faulty:
    """SnapshotCall of call "boom" meets a bug; anything else is refused politely."""

    def handle(self, req, now):
        if req.WhichOneof("kind") == "snapshot_call" and req.snapshot_call.call_id == "boom":
            raise KeyError("a bug")
        raise RequestError("no such thing here")

    def snapshot(self):
        return [], []

    def call_devices(self, call_id):
        return None

    def status(self):
        return {"source": "test"}


@pytest.fixture
def server(tmp_path):
    ctx = zmq.Context()
    metrics = CtidMetrics()
    settings = CtiSettings(events=f"ipc://{tmp_path}/ev.sock", requests=f"ipc://{tmp_path}/rq.sock")
    srv = CtiServer(ctx, settings, Faulty(), metrics=metrics).open()
    stop = threading.Event()
    t = threading.Thread(target=serve, args=(srv, stop), daemon=True)
    t.start()
    socks = []

    def dealer(kind=zmq.DEALER):
        s = ctx.socket(kind)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVTIMEO, 5000)
        s.connect(settings.requests)
        socks.append(s)
        return s
    yield dealer, metrics, srv
    for s in socks:
        s.close(linger=0)
    stop.set()
    t.join(5)
    srv.close()
    ctx.term()


def ask(sock, payload: bytes | list) -> cti_pb2.Reply:
    if isinstance(payload, list):
        sock.send_multipart(payload)
    else:
        sock.send(payload)
    reply = cti_pb2.Reply()
    reply.ParseFromString(sock.recv())
    return reply


def rejected(metrics, reason):
    return metrics.registry.get_sample_value("hotline_ctid_cti_rejected_messages_total",
                                             {"reason": reason}) or 0


def status(sock):
    return ask(sock, cti_pb2.Request(id=99, system_status=cti_pb2.SystemStatus()).SerializeToString())


def test_bad_messages_get_an_error_reply_are_counted_and_the_server_goes_on(server):
    dealer, metrics, srv = server
    s = dealer()
    r = ask(s, b"\xff\xff\xff\xff not protobuf")
    assert not r.ok and r.error.startswith("malformed request")
    big = cti_pb2.Request(id=7, set_user_data=cti_pb2.SetUserData(call_id="C1", data={"x": "y" * 70_000}))
    r = ask(s, big.SerializeToString())
    assert not r.ok and "exceeds 65536" in r.error
    r = ask(s, cti_pb2.Request(id=5).SerializeToString())
    assert not r.ok and r.id == 5 and r.error == "unknown or empty request"
    r = ask(s, [b"one", b"two"])
    assert not r.ok and "expected one payload frame, got 2" in r.error
    for reason in ("malformed", "oversized", "empty", "framing"):
        assert rejected(metrics, reason) == 1
    r = status(s)
    assert r.ok and r.id == 99 and r.status["rejected_messages"] == "4" and r.status["source"] == "test"


def test_a_fault_while_handling_is_an_error_reply_not_a_crash(server):
    dealer, metrics, srv = server
    s = dealer()
    r = ask(s, cti_pb2.Request(id=3, snapshot_call=cti_pb2.CallRef(call_id="boom")).SerializeToString())
    assert not r.ok and r.id == 3 and r.error == "internal error handling snapshot_call: KeyError"
    r = ask(s, cti_pb2.Request(id=4, hold_call=cti_pb2.CallRef(call_id="C1", device="ext:1")).SerializeToString())
    assert not r.ok and r.error == "refused: hold_call: an observer may not change anything"
    assert metrics.registry.get_sample_value("hotline_ctid_cti_requests_total",
                                             {"request": "snapshot_call", "result": "fault"}) == 1
    assert status(s).ok


def test_a_huge_message_costs_only_its_sender_the_connection(server):
    dealer, metrics, srv = server
    flood = dealer()
    flood.setsockopt(zmq.RCVTIMEO, 500)
    flood.send(b"\x00" * (2 << 20))            # over the socket's 1 MiB limit: disconnected
    with pytest.raises(zmq.Again):
        flood.recv()
    assert status(dealer()).ok                # everyone else is still served


def test_req_sockets_are_answered_too(server):
    dealer, metrics, srv = server
    s = dealer(zmq.REQ)
    assert status(s).ok


def test_zap_answers_by_mechanism_and_key():
    keys = KeyStore([])
    zap = ZapHandler(zmq.Context.instance(), keys)
    pub = zmq.curve_keypair()[0]
    raw = zmq.utils.z85.decode(pub)
    base = [b"1.0", b"7", b"hotline-cti", b"127.0.0.1", b""]
    assert zap.answer(base + [b"NULL"])[2] == b"400"
    assert zap.answer(base + [b"PLAIN", b"user", b"password"])[2] == b"400"
    assert zap.answer(base + [b"CURVE", raw])[2:4] == [b"400", b"unknown client key"]
    from ctid.cti.auth import Client, Scope
    zap.reload(KeyStore([Client("desk", "agent", Scope(("ext:8001",)), pub.decode())]))
    assert zap.answer(base + [b"CURVE", raw]) == [b"1.0", b"7", b"200", b"OK", b"desk", b""]
    assert zap.answer([b"2.0", b"8", b"", b"", b"", b"CURVE", raw])[2] == b"500"
    assert zap.refused == 3 and zap.accepted == 1
    assert ANONYMOUS.role == "observer"
