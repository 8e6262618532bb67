"""CTI security: CURVE keys, the ZAP handler, roles and scopes, and the audit log.

- Every client has a CURVE key pair; its public key is listed in the keys file (TOML, one
  table per client) with a role and a scope. The ZAP handler (RFC 27, on
  inproc://zeromq.zap.01 of ctid's ZeroMQ context) accepts a CURVE handshake only from a
  listed key and names the client in the User-Id of every message it then sends.
- Roles decide which requests a client may make, scopes which devices, agents and queues
  they may name. Scope applies to requests and snapshots; the PUB socket authenticates
  subscribers (an unknown key cannot subscribe) but cannot filter per subscriber.
- Refusals (and every request that changes something) go to the audit log: a JSON-lines
  file and, through storage, the audit table.

No keys ship with Hotline: `ctictl keygen NAME` makes a pair (see generate_keypair).
"""
from __future__ import annotations

import dataclasses
import fnmatch
import json
import logging
import os
import re
import threading
import time
import tomllib
from typing import Callable

import zmq
from zmq.utils import z85

from hotline_proto import cti_pb2

log = logging.getLogger("ctid.cti.auth")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
ROLES = ("agent", "supervisor", "admin", "observer", "integration")
SCOPE_KEYS = ("devices", "agents", "queues")
CLIENT_KEYS = {"key", "role", *SCOPE_KEYS, "comment"}

# Requests: does it change anything, and what does it name for the scope check.
#   "device": the request's `device` field; "calling": MakeCall's calling device;
#   "call": the devices of the call named by call_id; "agent": AgentRequest.agent (+device).
REQUESTS: dict[str, tuple[bool, str | None]] = {
    "make_call": (True, "calling"),
    "answer_call": (True, "device"),
    "clear_connection": (True, "device"),
    "clear_call": (True, "call"),
    "hold_call": (True, "device"),
    "retrieve_call": (True, "device"),
    "consultation_call": (True, "device"),
    "transfer_call": (True, "device"),
    "conference_call": (True, "device"),
    "single_step_transfer": (True, "device"),
    "deflect_call": (True, "device"),
    "generate_digits": (True, "device"),
    "set_user_data": (True, "call"),
    "agent": (True, "agent"),
    "snapshot_device": (False, "device"),
    "snapshot_call": (False, "call"),
    "snapshot": (False, None),
    "system_status": (False, None),
    "replay": (False, None),
}

# What each role may do beyond reading. Scope limits all of it except for admin.
ROLE_CHANGES: dict[str, frozenset[str]] = {
    "admin": frozenset(k for k, (changes, _) in REQUESTS.items() if changes),
    "supervisor": frozenset(k for k, (changes, _) in REQUESTS.items() if changes),
    "agent": frozenset(k for k, (changes, _) in REQUESTS.items() if changes) - {"clear_call"},
    "integration": frozenset(k for k, (changes, _) in REQUESTS.items() if changes),
    "observer": frozenset(),
}

# AgentRequest actions (ctid.acd_service) and the roles that may ask for them; admin may do
# anything. An agent acts on itself only (its `agents` and `devices`); supervise and
# force_state act on someone else, so they are a supervisor's; integration only reads
# (wallboards, CRM). An action not listed here is refused, so a new one is closed by default.
AGENT_ACTION_ROLES: dict[str, frozenset[str]] = {
    "login": frozenset({"agent", "supervisor"}),
    "logout": frozenset({"agent", "supervisor"}),
    "ready": frozenset({"agent", "supervisor"}),
    "not_ready": frozenset({"agent", "supervisor"}),
    "status": frozenset({"agent", "supervisor", "integration"}),
    "force_state": frozenset({"supervisor"}),
    "supervise": frozenset({"supervisor"}),
}


class KeysError(Exception):
    """A bad keys file entry, with where it is."""

    def __init__(self, path: str, line: int | None, key: str, message: str):
        self.path, self.line, self.key, self.message = path, line, key, message
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {key}: {message}")


class Refused(Exception):
    """A request the client's role or scope does not allow; the text goes to the client."""


@dataclasses.dataclass(frozen=True)
class Scope:
    """fnmatch patterns per kind: ("ext:8001",), ("ext:80*",), ("*",) for everything."""
    devices: tuple[str, ...] = ()
    agents: tuple[str, ...] = ()
    queues: tuple[str, ...] = ()

    @classmethod
    def everything(cls) -> "Scope":
        return cls(("*",), ("*",), ("*",))

    @staticmethod
    def _match(patterns: tuple[str, ...], name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in patterns)

    def device(self, name: str) -> bool:
        return self._match(self.devices, name)

    def agent(self, name: str) -> bool:
        return self._match(self.agents, name)

    def queue(self, name: str) -> bool:
        return self._match(self.queues, name)

    def agent_or_member(self, name: str, member_of) -> bool:
        """The agent is named in `agents`, or is a member of a queue in `queues` (how a
        call centre scopes a team leader); `member_of`: the agent's queue names."""
        return self.agent(name) or any(self.queue(q) for q in member_of)


@dataclasses.dataclass(frozen=True)
class Client:
    name: str
    role: str
    scope: Scope
    public_key: str = ""         # Z85, 40 characters
    line: int = 0                # where the keys file lists it

    @property
    def unrestricted(self) -> bool:
        return self.role == "admin"


ANONYMOUS = Client(name="anonymous", role="observer", scope=Scope.everything())


# ---- keys file --------------------------------------------------------------------------
def _z85_key(text: str) -> bytes | None:
    try:
        raw = z85.decode(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError, KeyError, TypeError):
        return None
    return raw if len(raw) == 32 else None


class _Lines:
    """Where tables and keys sit in a TOML text (tomllib keeps no positions)."""

    _HEADER = re.compile(r'^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$')
    _KEY = re.compile(r'^\s*("?)([A-Za-z0-9_.\-]+)\1\s*=')

    def __init__(self, text: str):
        self.tables: dict[str, int] = {}
        self.keys: dict[tuple[str, str], int] = {}
        table = ""
        for n, line in enumerate(text.splitlines(), 1):
            m = self._HEADER.match(line)
            if m:
                table = ".".join(p.strip().strip('"').strip("'") for p in m.group(1).split("."))
                self.tables.setdefault(table, n)
                continue
            m = self._KEY.match(line)
            if m:
                self.keys.setdefault((table, m.group(2)), n)

    def of(self, table: str, key: str | None = None) -> int | None:
        if key is not None and (table, key) in self.keys:
            return self.keys[(table, key)]
        return self.tables.get(table)


class KeyStore:
    """Client public keys -> Client (role, scope). Replaced whole on reload, so the ZAP
    thread always reads a consistent table."""

    def __init__(self, clients: list[Client], path: str = ""):
        self.path = path
        self.by_key = {c.public_key: c for c in clients}
        self.by_name = {c.name: c for c in clients}

    def __len__(self) -> int:
        return len(self.by_key)

    def lookup(self, public_key: bytes) -> Client | None:
        """A 32-byte binary public key (as ZAP gives it)."""
        return self.by_key.get(z85.encode(public_key).decode("ascii"))

    @classmethod
    def load(cls, path: str) -> "KeyStore":
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            raise KeysError(path, None, "file", f"cannot read the keys file: {e.strerror}") from None
        text = raw.decode("utf-8", "replace")
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            m = re.search(r"line (\d+)", str(e))
            raise KeysError(path, int(m.group(1)) if m else None, "syntax", str(e)) from None
        lines = _Lines(text)
        for top in data:
            if top != "clients":
                raise KeysError(path, lines.of(top) or lines.of("", top), top,
                                "unknown table; client keys go in [clients.NAME] tables")
        clients_tbl = data.get("clients", {})
        if not isinstance(clients_tbl, dict):
            raise KeysError(path, lines.of("", "clients"), "clients", "must be a table of clients")
        clients: list[Client] = []
        seen: dict[str, str] = {}
        for name, entry in clients_tbl.items():
            table = f"clients.{name}"
            if not isinstance(entry, dict):
                raise KeysError(path, lines.of("clients", name), table, "must be a table")
            for k in entry:
                if k not in CLIENT_KEYS:
                    raise KeysError(path, lines.of(table, k), f"{table}.{k}",
                                    f"unknown key (expected {', '.join(sorted(CLIENT_KEYS))})")
            key = entry.get("key")
            if not isinstance(key, str) or _z85_key(key) is None:
                raise KeysError(path, lines.of(table, "key"), f"{table}.key",
                                "must be a CURVE public key: 40 Z85 characters "
                                "(ctictl keygen NAME prints one)")
            if key in seen:
                raise KeysError(path, lines.of(table, "key"), f"{table}.key",
                                f"the same key is already listed for client {seen[key]!r}")
            seen[key] = name
            role = entry.get("role")
            if role not in ROLES:
                raise KeysError(path, lines.of(table, "role"), f"{table}.role",
                                f"must be one of {', '.join(ROLES)}, got {role!r}")
            scope = {}
            for k in SCOPE_KEYS:
                value = entry.get(k, [])
                if isinstance(value, str):
                    value = [value]
                if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                    raise KeysError(path, lines.of(table, k), f"{table}.{k}",
                                    "must be a list of names or patterns, e.g. [\"ext:8001\"]")
                scope[k] = tuple(value)
            if role == "agent" and not scope["devices"]:
                raise KeysError(path, lines.of(table), table,
                                "an agent needs `devices`: the device(s) it controls")
            if role == "supervisor" and not any(scope.values()):
                raise KeysError(path, lines.of(table), table, "a supervisor needs a scope: "
                                "`devices`, `agents` and/or `queues` it oversees")
            if role in ("observer", "integration") and not any(scope.values()):
                scope = {k: ("*",) for k in SCOPE_KEYS}     # unscoped: sees everything
            clients.append(Client(name=name, role=role, scope=Scope(**scope), public_key=key,
                                  line=lines.of(table) or 0))
        return cls(clients, path)


# ---- key pairs ------------------------------------------------------------------------
_CERT = """#   ****  Generated on {when} by ctictl keygen  ****
#   ZeroMQ CURVE {kind} Certificate
#   Exchange securely, or use a secure mechanism to verify the contents
#   of this file after exchange. Store public certificates in your home
#   directory, in the .curve subdirectory.

metadata
    name = "{name}"
curve
    public-key = "{public}"
{secret_line}"""


def _write_private(path: str, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)


def generate_keypair(directory: str, name: str) -> tuple[str, str, str]:
    """Write NAME.key (public) and NAME.key_secret (secret, mode 0600) in directory, in the
    ZeroMQ certificate format. Refuses to overwrite. Returns (public_z85, public_path, secret_path)."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"key name {name!r}: use letters, digits, '.', '_' and '-'")
    os.makedirs(directory, exist_ok=True)
    public, secret = zmq.curve_keypair()
    pub_path = os.path.join(directory, f"{name}.key")
    sec_path = os.path.join(directory, f"{name}.key_secret")
    for p in (pub_path, sec_path):
        if os.path.exists(p):
            raise ValueError(f"{p} exists; remove it first or choose another name")
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    pub_text = _CERT.format(when=when, kind="Public", name=name, public=public.decode(), secret_line="")
    sec_text = _CERT.format(when=when, kind="Secret", name=name, public=public.decode(),
                            secret_line=f'    secret-key = "{secret.decode()}"\n')
    _write_private(sec_path, sec_text, 0o600)
    _write_private(pub_path, pub_text, 0o644)
    return public.decode(), pub_path, sec_path


def load_keypair(path: str) -> tuple[bytes, bytes]:
    """(public, secret) Z85 from a NAME.key_secret file; a clear error if it is not one."""
    import zmq.auth
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a CURVE key pair: {e}") from None
    if not secret:
        raise ValueError(f"{path}: holds no secret key (use the NAME.key_secret file)")
    return public, secret


def load_public_key(path: str) -> bytes:
    import zmq.auth
    try:
        public, _ = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read a CURVE public key: {e}") from None
    return public


# ---- audit ------------------------------------------------------------------------------
class AuditLog:
    """Who asked for what, and whether it was allowed: a JSON-lines file and the store."""

    def __init__(self, path: str | None = None, store=None):
        self.path = path
        self.store = store
        self._file = None
        self._lock = threading.Lock()
        if path:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(path, "a", encoding="utf-8", buffering=1)
        self.records = 0

    def record(self, client: str, role: str, request: str, allowed: bool, reason: str = "",
               when: float | None = None) -> None:
        row = {"time": time.time() if when is None else when, "client": client, "role": role,
               "request": request, "allowed": allowed, "reason": reason}
        with self._lock:
            self.records += 1
            if self._file is not None:
                try:
                    self._file.write(json.dumps(row, ensure_ascii=False) + "\n")
                except OSError as e:
                    log.error("audit log %s: %s", self.path, e)
        if self.store is not None:
            try:
                self.store.submit_audit(row)
            except Exception:      # the store's queue never blocks; a fault there is logged only
                log.exception("audit record not handed to storage")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# ---- ZAP handler --------------------------------------------------------------------------
class ZapHandler:
    """Answers ZAP requests for ctid's sockets: CURVE from a listed key only.

    Runs in its own thread with a REP socket bound to inproc://zeromq.zap.01 in the given
    context (one per context). The User-Id of an accepted client is its name in the keys
    file; the server looks the role up by that name.
    """

    def __init__(self, ctx: zmq.Context, keys: KeyStore, audit: AuditLog | None = None,
                 on_refused: Callable[[str], None] | None = None):
        self.ctx = ctx
        self.keys = keys
        self.audit = audit
        self.on_refused = on_refused
        self.accepted = 0
        self.refused = 0
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_audit: dict[str, float] = {}
        self._error: BaseException | None = None

    def start(self) -> "ZapHandler":
        self._thread = threading.Thread(target=self._run, name="ctid-zap", daemon=True)
        self._thread.start()
        self._ready.wait(5)
        if self._error is not None:
            raise self._error
        return self

    def reload(self, keys: KeyStore) -> None:
        self.keys = keys           # one reference swap: the thread sees old or new, whole

    def _run(self) -> None:
        try:
            sock = self.ctx.socket(zmq.REP)
            sock.setsockopt(zmq.LINGER, 0)
            sock.bind(ZAP_ENDPOINT)
        except zmq.ZMQError as e:
            self._error = RuntimeError(f"cannot bind the ZAP handler: {e}")
            self._ready.set()
            return
        self._ready.set()
        try:
            while not self._stop.is_set():
                if not sock.poll(100):
                    continue
                try:
                    frames = sock.recv_multipart()
                except zmq.ZMQError:
                    break
                sock.send_multipart(self.answer(frames))
        finally:
            sock.close(linger=0)

    def answer(self, frames: list[bytes]) -> list[bytes]:
        """One ZAP request -> its reply frames (version, id, code, text, user id, metadata)."""
        if len(frames) < 6:
            return [b"1.0", b"", b"500", b"malformed ZAP request", b"", b""]
        version, request_id, domain, address, _identity, mechanism = frames[:6]
        credentials = frames[6:]
        if version != b"1.0":
            return [b"1.0", request_id, b"500", b"unsupported ZAP version", b"", b""]
        if mechanism != b"CURVE" or len(credentials) != 1 or len(credentials[0]) != 32:
            self._refuse(f"mechanism {mechanism.decode(errors='replace')}", address)
            return [b"1.0", request_id, b"400", b"CURVE keys required", b"", b""]
        client = self.keys.lookup(credentials[0])
        if client is None:
            key = z85.encode(credentials[0]).decode()
            self._refuse(f"key {key}", address)
            return [b"1.0", request_id, b"400", b"unknown client key", b"", b""]
        self.accepted += 1
        return [b"1.0", request_id, b"200", b"OK", client.name.encode(), b""]

    def _refuse(self, what: str, address: bytes) -> None:
        self.refused += 1
        if self.on_refused is not None:
            self.on_refused(what)
        now = time.monotonic()
        if now - self._last_audit.get(what, -1e9) < 60:   # a retrying client: once a minute
            return
        self._last_audit[what] = now
        log.warning("CTI connection refused: %s from %s", what, address.decode(errors="replace"))
        if self.audit is not None:
            self.audit.record(client=what, role="", request="connect", allowed=False,
                              reason="unknown client key" if what.startswith("key") else
                              "CURVE keys required")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)


# ---- authorization ------------------------------------------------------------------------
class Authorizer:
    """Role and scope rules: check(client, request) raises Refused with a clear reason.

    `agent_queues(agent_id)` names the queues an agent is a member of (the ACD's
    configuration and skills; () without an ACD): a supervisor or integration key scoped
    by `queues` covers their members. An agent key's queues never widen what it controls.
    """

    def __init__(self, call_devices: Callable[[str], list[str] | None],
                 agent_queues: Callable[[str], tuple[str, ...]] | None = None,
                 agent_phones: Callable[[], dict[str, tuple[str, ...]]] | None = None):
        self.call_devices = call_devices
        self.agent_queues = agent_queues
        self.agent_phones = agent_phones     # agent id -> its phones (seat, configured)

    def check(self, client: Client, req: cti_pb2.Request) -> None:
        kind = req.WhichOneof("kind")
        changes, names = REQUESTS.get(kind, (True, None))
        if client.unrestricted:
            return
        if changes and kind not in ROLE_CHANGES.get(client.role, ()):
            if client.role == "observer":
                raise Refused(f"{kind}: an observer may not change anything")
            raise Refused(f"{kind}: not allowed for the {client.role} role")
        body = getattr(req, kind) if kind else None
        if names == "device":
            self._device(client, kind, body.device)
        elif names == "calling":
            self._device(client, kind, body.calling)
        elif names == "call":
            devices = self.call_devices(body.call_id)
            if devices is not None and not any(client.scope.device(d) for d in devices):
                raise Refused(f"{kind}: call {body.call_id} involves none of "
                              f"{client.name}'s devices")
        elif names == "agent":
            self._agent_request(client, kind, body)
        # transfers and conferences name two calls: the device must be in both (the model
        # checks that), so the device check covers them.

    def _member_of(self, agent_id: str) -> tuple[str, ...]:
        if self.agent_queues is None:
            return ()
        try:
            return tuple(self.agent_queues(agent_id))
        except Exception:       # a fault there only narrows the scope to `agents`
            log.exception("agent_queues(%r) failed", agent_id)
            return ()

    def agent_in_scope(self, client: Client, agent_id: str) -> bool:
        if client.unrestricted or client.scope.agent(agent_id):
            return True
        return client.role != "agent" and bool(client.scope.queues) and \
            client.scope.agent_or_member(agent_id, self._member_of(agent_id))

    def _agent_request(self, client: Client, kind: str, body: cti_pb2.AgentRequest) -> None:
        # The service reads the action as body.action.strip().lower(): so must this check,
        # or "Supervise " would slip past it.
        action = body.action.strip().lower()
        roles = AGENT_ACTION_ROLES.get(action)
        if roles is None:
            raise Refused(f"{kind}: unknown action {body.action!r} "
                          f"(one of {', '.join(AGENT_ACTION_ROLES)})")
        if client.role not in roles:
            need = ", ".join(sorted(roles)) + " or admin"
            raise Refused(f"{kind}: {action} needs the {need} role; {client.name} is "
                          f"{client.role}")
        if action == "status" and body.device.startswith("queue:"):
            queue = body.device[len("queue:"):]
            if not client.scope.queue(queue):
                raise Refused(f"{kind}: queue {queue!r} is not in {client.name}'s scope")
            return
        if not body.agent:
            raise Refused(f"{kind}: {action}: name the agent")
        if not self.agent_in_scope(client, body.agent):
            queues = ""
            if client.role != "agent" and client.scope.queues and self.agent_queues is not None:
                member = ", ".join(self._member_of(body.agent)) or "no queue"
                queues = (f" (not in its agents, and a member of {member}, not of "
                          f"{', '.join(client.scope.queues)})")
            raise Refused(f"{kind}: agent {body.agent!r} is not {client.name}'s to control"
                          f"{queues}")
        if body.device:
            self._device(client, kind, body.device)

    @staticmethod
    def _device(client: Client, kind: str, device: str) -> None:
        if not device:
            raise Refused(f"{kind}: name the device to act on")
        if not client.scope.device(device):
            raise Refused(f"{kind}: device {device} is not {client.name}'s to control")

    @staticmethod
    def changes(req: cti_pb2.Request) -> bool:
        return REQUESTS.get(req.WhichOneof("kind"), (True, None))[0]

    def _overseen(self, client: Client) -> set[str]:
        """Devices a client sees beyond its `devices`: the phones of the agents in its scope
        (named, or members of its queues) and, for a queue-scoped key, queue:NAME devices."""
        extra: set[str] = set()
        if self.agent_phones is not None and (client.scope.agents or client.scope.queues):
            try:
                phones = self.agent_phones()
            except Exception:       # a fault there only narrows the view to `devices`
                log.exception("agent_phones() failed")
                phones = {}
            for agent_id, devs in phones.items():
                if self.agent_in_scope(client, agent_id):
                    extra.update(devs)
        return extra

    def filter_snapshot(self, client: Client, devices: list, calls: list) -> tuple[list, list]:
        """Only what the client's scope covers (admin: everything): its devices, the phones
        of the agents it oversees, its queues' devices, and the calls on any of them."""
        if client.unrestricted:
            return devices, calls
        scope = client.scope
        extra = self._overseen(client)
        queues = client.role != "agent" and bool(scope.queues)

        def seen(dev_id: str) -> bool:
            return scope.device(dev_id) or dev_id in extra or \
                (queues and dev_id.startswith("queue:") and scope.queue(dev_id[len("queue:"):]))

        devices = [d for d in devices if seen(d.id)]
        calls = [c for c in calls if any(seen(x.device) for x in c.connections)]
        return devices, calls
