"""ctid in `ctisim demo`: a private ctid.toml, run-time CURVE keys, the daemon as a child
process, and a gate that holds the scenario until ctid drives cardd.

The configuration is etc/ctid.toml (so the shipped dial plan, IVR and ACD apply) with
everything that would collide with another run or the source tree moved into the demo's
own directory: run_dir, CTI sockets, database, spool, TTS cache, IVR look-up databases,
the metrics port, and cardd's endpoints set to the demo's cardd. No keys ship: a server
key pair and one observer client key (the live view's) are generated for each run and
removed with the run directory.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import time
import tomllib

from hotline_proto import cti_pb2

from .procs import source_root

CTID_TOML = os.path.join(source_root(), "etc", "ctid.toml")
VIEW_CLIENT = "liveview"
READY_POLL_S = 0.5
READY_TIMEOUT_S = 60.0
ASK_AGAIN_S = 2.0


def ctid_available() -> bool:
    """ctid's sources and its example configuration are both in this tree."""
    return importlib.util.find_spec("ctid.daemon") is not None and os.path.exists(CTID_TOML)


@dataclasses.dataclass
class CtidSetup:
    config_path: str
    run_dir: str
    events: str                 # CTI PUB endpoint
    requests: str               # CTI ROUTER endpoint
    server_public: str          # ctid's public key file
    client_secret: str          # the live view's key pair (observer)
    node: str                   # ctid's name for the demo's cardd


def _sqlite_abs(url: str, base: str) -> str:
    """sqlite:///relative/path -> sqlite:////base/relative/path (other URLs unchanged)."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
        return prefix + os.path.join(base, url[len(prefix):])
    return url


def _abs(path: str, base: str) -> str:
    return path if os.path.isabs(path) else os.path.join(base, path)


def private_ctid_config(workdir: str, cardd_events: str, cardd_commands: str,
                        metrics_port: int, source: str = CTID_TOML) -> CtidSetup:
    """Write ctid.toml and keys for this run under workdir. Raises ValueError naming what
    in `source` cannot be made private (the loader's own errors name file and line)."""
    from ctid.config import load_ctid_config
    from ctid.cti.auth import generate_keypair

    from .ctisim import dump_toml

    load_ctid_config(source)                    # problems in the user's file, with lines
    with open(source, "rb") as f:
        raw = tomllib.load(f)
    run = os.path.join(workdir, "ctid")
    os.makedirs(run, exist_ok=True)
    nodes = raw.get("cardd", [])
    if len(nodes) != 1:
        raise ValueError(f"{source}: the demo runs one cardd; [[cardd]] lists {len(nodes)} nodes")
    nodes[0]["events"], nodes[0]["commands"] = cardd_events, cardd_commands

    keys = os.path.join(workdir, "keys")
    _, server_public, _ = generate_keypair(keys, "ctid")
    client_public, _, client_secret = generate_keypair(keys, VIEW_CLIENT)
    clients = os.path.join(keys, "clients.toml")
    with open(clients, "w", encoding="utf-8") as f:
        f.write(f"[clients.{VIEW_CLIENT}]\nkey = {json.dumps(client_public)}\n"
                f'role = "observer"\ncomment = "ctisim demo live view"\n')

    raw.setdefault("ctid", {})["run_dir"] = run
    cti = raw.setdefault("cti", {})
    cti["events"] = f"ipc://{run}/ctid-events.sock"
    cti["requests"] = f"ipc://{run}/ctid-requests.sock"
    cti["keys"] = clients
    cti["server_key"] = os.path.join(keys, "ctid.key_secret")
    raw["metrics"] = {"listen": f"127.0.0.1:{metrics_port}"}
    db = raw.setdefault("database", {})
    db["url"] = _sqlite_abs(db.get("url", "sqlite:///run/hotline.db").replace("///run/", "///"), run)
    db["spool_dir"] = os.path.join(run, "db-spool")
    ivr = raw.get("ivr")
    if isinstance(ivr, dict):
        ivr["flows"] = [_abs(p, source_root()) for p in ivr.get("flows", ["etc/ivr"])]
        ivr["tts_cache"] = os.path.join(run, "tts-cache")
        for name, url in ivr.get("sources", {}).items():
            if isinstance(url, str):
                ivr["sources"][name] = _sqlite_abs(url.replace("///run/", "///"), run)
    acd = raw.get("acd")
    if isinstance(acd, dict) and acd.get("music"):
        acd["music"] = _abs(acd["music"], source_root())
    path = os.path.join(workdir, "ctid.toml")
    with open(path, "w", encoding="utf-8") as f:
        f.write(dump_toml(raw))
    load_ctid_config(path)                      # what we wrote must load
    return CtidSetup(config_path=path, run_dir=run, events=cti["events"],
                     requests=cti["requests"], server_public=server_public,
                     client_secret=client_secret, node=nodes[0].get("node", "node1"))


def cti_client(setup: CtidSetup, start: str = "snapshot"):
    from ctid.cti.client import CtiClient
    return CtiClient.from_files(setup.events, setup.requests, setup.server_public,
                                setup.client_secret, start=start)


class CtidGate:
    """A director standing in for the scenario run: it steps the run only once ctid says
    its cardd link is up (SystemStatus over CTI), so the first calls reach ctid. Until
    then the world ticks (cardd needs ticks to answer ctid). Gives up waiting after
    READY_TIMEOUT_S and lets the scenario start anyway (the summary will show why)."""

    def __init__(self, run, client, node: str, clock=time.monotonic):
        self.run = run
        self.client = client
        self.node = node
        self.clock = clock
        self.ready = False
        self.gave_up = False
        self.status: dict[str, str] = {}
        self._since = clock()
        self._next_ask = 0.0
        self._asked = 0
        self._asked_at = 0.0

    def step(self, tick: int) -> None:
        if not self.ready:
            self._check()
            if not self.ready:
                return
        self.run.step(tick)

    def _check(self) -> None:
        now = self.clock()
        if self._asked:
            reply = self.client.take_reply(self._asked)
            if reply is not None:
                self._asked = 0
                if reply.ok:
                    self.status = dict(reply.status)
                    self.ready = self.status.get(f"cardd.{self.node}") == "up"
            elif now - self._asked_at > ASK_AGAIN_S:      # not yet connected: ask again
                self._asked = 0
        if not self.ready and now - self._since > READY_TIMEOUT_S:
            self.ready = self.gave_up = True
        if not self.ready and not self._asked and now >= self._next_ask:
            self._next_ask = now + READY_POLL_S
            self._asked_at = now
            self._asked = self.client.send(cti_pb2.Request(system_status=cti_pb2.SystemStatus()))

    # what run_stack and the summary read from the scenario run
    def finished(self) -> bool:
        return self.ready and self.run.finished()


def start_ctid(stack) -> None:
    """A DEMO_DAEMONS entry: ctid as a child process on a private configuration, the live
    view's CTI client (stack.cti) and the gate in the scenario run's place. A scenario
    with client rules is its own application: ctid is not started beside it."""
    if stack.scenario.rules:
        print(f"ctisim: {stack.scenario.name} has client rules (it is the application): "
              "ctid not started")
        return
    from ctid.config import ConfigError

    from .ctisim import free_tcp_port
    try:
        setup = private_ctid_config(stack.workdir, stack.cfg.events_endpoint,
                                    stack.cfg.commands_endpoint, free_tcp_port())
    except ConfigError as e:                  # the user's ctid.toml, with file and line
        raise ValueError(f"ctid's configuration refused:\n{e}") from None
    stack.procs.python_module("ctid", "ctid.daemon", ["--config", setup.config_path],
                              cwd=stack.workdir)
    stack.ctid = setup
    stack.cti = cti_client(setup)
    gate = CtidGate(stack.run, stack.cti, setup.node)
    directors = stack.world.directors
    directors[directors.index(stack.run)] = gate
    stack.gate = gate
