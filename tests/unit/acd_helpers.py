"""Helpers the ACD and CTI unit tests share: the head of a ctid.toml the [[queue]] tests
append to, an AgentRequest builder, and a real CURVE CtiServer serving a call model."""
import contextlib
import queue
import threading

import zmq

from ctid.cti.auth import AuditLog, generate_keypair, load_keypair, load_public_key
from ctid.cti.client import CtiClient
from ctid.cti.server import CtiServer, CtiSettings, serve
from ctid.daemon import ModelService
from hotline_proto import cti_pb2

# A ctid.toml without queues (placeholder: run): node1 with extensions 8001 and 8002 on
# ports 1 and 2, and the CO trunk group "co" (node1/5-6, 12345). A test appends its tables.
CTID_BASE = """
[ctid]
run_dir = "{run}"

[[cardd]]
node = "node1"

[[extension]]
number = "8001"
channel = "node1/1"

[[extension]]
number = "8002"
channel = "node1/2"

[[trunk_group]]
name = "co"
channels = "node1/5-6"
number = "12345"
"""


def agent_req(agent="1001", action="ready", device="", reason=""):
    return cti_pb2.Request(agent=cti_pb2.AgentRequest(agent=agent, action=action,
                                                      device=device, reason=reason))


@contextlib.contextmanager
def curve_cti_server(tmp_path, model, keys):
    """A CtiServer over CURVE in a thread of its own, serving `model` (ModelService) to the
    clients `keys` ({name: role lines of clients.toml}), auditing to tmp_path/audit.log.
    Yields (client, in_server): client(name) opens that client's CtiClient (closed at the
    end); in_server(fn) runs fn in the server's thread, which owns the model, and waits."""
    d = str(tmp_path)
    _, server_pub, server_sec = generate_keypair(d, "ctid")
    entries = []
    for name, rest in keys.items():
        public, _, _ = generate_keypair(d, name)
        entries.append(f'[clients.{name}]\nkey = "{public}"\n{rest}')
    (tmp_path / "keys.toml").write_text("\n".join(entries))
    ctx = zmq.Context()
    settings = CtiSettings(events=f"ipc://{d}/ev.sock", requests=f"ipc://{d}/rq.sock",
                           server_key=server_sec, keys=f"{d}/keys.toml", heartbeat_s=0.2)
    server = CtiServer(ctx, settings, ModelService(model), audit=AuditLog(f"{d}/audit.log")).open()
    stop, tasks = threading.Event(), queue.Queue()
    t = threading.Thread(target=serve, args=(server, stop), kwargs={"tasks": tasks}, daemon=True)
    t.start()
    clients = []

    def client(name):
        c = CtiClient(settings.events, settings.requests, ctx=ctx, request_timeout_s=3.0,
                      server_key=load_public_key(server_pub),
                      keypair=load_keypair(f"{d}/{name}.key_secret"))
        clients.append(c)
        return c

    def in_server(fn):
        """Run fn in the server's thread (the model and the ACD belong to it); wait for it."""
        done = threading.Event()
        tasks.put(lambda _server: (fn(), done.set()))
        assert done.wait(5)

    try:
        yield client, in_server
    finally:
        for c in clients:
            c.close()
        stop.set()
        t.join(5)
        server.close()
        ctx.term()
