"""The shared harness of the ACD end-to-end tests, on top of tests/e2e/stack.py (the generic
process stack): the cardd configuration of the analog card (FXS phones 1-4, CO lines 5-6)
with an optional PRI span, the ctid.toml pieces every ACD test repeats (trunk groups,
routes, the agents), the CTI clients' entries, AcdStack (agent requests and the seq mark),
the watcher's event log (Watch, until, story) and readers of what a user can check
afterwards (what a port heard, the queue log and CDRs in SQLite, /metrics).

A test module keeps only what is its own: its queues, its scenario and its assertions."""
import contextlib
import json
import os
import time
import urllib.request

from tests.e2e.stack import Stack, ready, wait

PRI_SPAN = 2

_CARDD_HEAD = """
[node]
name = "node1"
run_dir = "run"

[backend]
type = "sim"
endpoint = "ipc://run/ctisim-cards.sock"

[bus]
events = "ipc://run/cardd-events.sock"
commands = "ipc://run/cardd-commands.sock"

[media]
law = "alaw"
tone_plan = "cn"

[[span]]
span = 1
name = "analog-card-1"
kind = "analog"

[[channels]]
channels = "1-4"
span = 1
port = "fxs"
callerid = "fsk"

[[channels]]
channels = "5-6"
span = 1
port = "fxo"
callerid = "fsk"
busy_detect = true
"""

_PRI_SPAN = f"""
[[span]]
span = {PRI_SPAN}
name = "pri-1"
kind = "e1"
signaling = "pri_cpe"
switchtype = "euroisdn_e1"
framing = "ccs"
coding = "hdb3"
crc4 = true
channels = "32-46,48-62"
"""


def cardd_toml(pri=False, answer_on_polarity=False):
    """The cardd configuration: one analog card (FXS phones on 1-4, CO lines on 5-6), with
    `answer_on_polarity` on the CO lines (a callback counts as answered only at the far
    side's polarity reversal) and, with `pri`, an E1 PRI span (channels 32-46, 48-62)."""
    text = _CARDD_HEAD
    if answer_on_polarity:
        text += "answer_on_polarity = true\n"
    if pri:
        text += _PRI_SPAN
    return text


# ---- ctid.toml pieces (they go after stack.CTID_SECURE_HEAD) -----------------------------------
# The agents of the ACD tests: id -> (name, extension); 8001-8004 are node1/1-4.
AGENTS = {"1001": ("Li Na", "8001"), "1002": ("Wang Wei", "8002"),
          "1003": ("Zhao Lei", "8004"), "9001": ("Chen Jing", "8003")}
SUPERVISORS = ("9001",)


def agents_toml(*ids, login=()):
    """[[agent]] tables for `ids` (of AGENTS); those in `login` are logged in at start."""
    out = []
    for agent_id in ids:
        name, extension = AGENTS[agent_id]
        out.append(f'\n[[agent]]\nid = "{agent_id}"\nname = "{name}"\nextension = "{extension}"\n'
                   + ('login = true\n' if agent_id in login else '')
                   + ('supervisor = true\n' if agent_id in SUPERVISORS else ''))
    return "".join(out)


def trunk_group(name, channels, number=None):
    listed = json.dumps(channels) if isinstance(channels, list) else f'"{channels}"'
    return (f'\n[[trunk_group]]\nname = "{name}"\nchannels = {listed}\n'
            + (f'number = "{number}"\n' if number else ''))


def route(match, to, source=None):
    return f'\n[[route]]\nmatch = "{match}"\nto = "{to}"\n' + (f'source = "{source}"\n' if source else '')


EXT_ROUTE = route("8XXX", "ext:")           # dialling an extension from a phone


# The CTI clients' entries in clients.toml (a test picks the ones it uses).
ADMIN = 'role = "admin"\n'
WATCHER = 'role = "observer"\n'
AGENT1 = 'role = "agent"\ndevices = ["ext:8001"]\nagents = ["1001"]\n'


# ---- the stack ----------------------------------------------------------------------------------
class AcdStack(Stack):
    """The process stack with the cardd configuration `cardd` and CTI helpers; `watch` (a
    Watch, set by running()) sees the events; last_seq follows the replies' seq so that
    mark() can wait for the events a request caused."""
    ctid_args = ("--log-level", "DEBUG") if os.environ.get("ACD_E2E_DEBUG") else ()

    def __init__(self, d, ctid_toml, clients, cardd=None):
        with open(f"{d}/cardd-source.toml", "w") as f:
            f.write(cardd if cardd is not None else cardd_toml())
        super().__init__(d, f"{d}/cardd-source.toml", ctid_toml, clients)
        self.last_seq = 0

    def request(self, client, **kind):
        """Any CTI request from `client` (Request's fields as keywords); the reply."""
        from hotline_proto import cti_pb2
        r = self.client(client).request(cti_pb2.Request(**kind), timeout_s=10)
        self.last_seq = max(self.last_seq, r.seq)
        return r

    def agent(self, client, agent, action, device="", reason="", ok=True):
        """An AgentRequest from `client`; with `ok` the reply must be a success."""
        from hotline_proto import cti_pb2
        r = self.request(client, agent=cti_pb2.AgentRequest(
            agent=agent, action=action, device=device, reason=reason))
        if ok:
            assert r.ok, f"{client}: {action} {agent}: {r.error}"
        return r

    def pri_call(self, channel, number, ani):
        """The PRI exchange calls `number` from `ani` on `channel` (the far side listens)."""
        self.sim("pri", span=PRI_SPAN, action="listen", args={"channel": channel, "quiet": True})
        self.sim("pri", span=PRI_SPAN, action="call",
                 args={"number": number, "ani": ani, "channel": channel})

    def mark(self):
        """The seq of the last event published so far (as the last reply reported it)."""
        wait(lambda: self.watch.mark() >= self.last_seq, "the events of the last request", self)
        return max(self.watch.mark(), self.last_seq)

    def kill_ctid(self):
        """SIGKILL: ctid leaves without a goodbye (start_ctid() brings a new one)."""
        import signal
        child = self.procs.children["ctid"]
        child.popen.send_signal(signal.SIGKILL)
        child.popen.wait(15)


@contextlib.contextmanager
def running(s, watcher="watcher", answering=(), pri=False, limit=40):
    """Starts `s` and stops it at the end: ctid up with cardd in step (asked by `watcher`,
    whose events s.watch keeps; with watcher None by 'admin', and no watch), with `pri` the
    PRI D-channel up, and the phones on `answering` going off hook 0.5 s into the first ring."""
    s.start()
    try:
        if watcher:
            client = s.client(watcher)
            ready(s, client, limit=limit)
            s.watch = Watch(client)
            wait(lambda: client.last_heartbeat, "the subscription", s)
        else:
            ready(s, s.client("admin"), limit=limit)
        if pri:
            wait(lambda: s.sim("pri", span=PRI_SPAN, action="_check_dchannel_up"),
                 "the PRI D-channel up", s)
        for ch in answering:
            s.sim("set", channel=ch, attr="answer_after_rings", value=1)
        yield s
    finally:
        s.stop()


# ---- the watcher's events -----------------------------------------------------------------------
class Watch:
    """Every event the watcher (an observer) sees, in seq order."""

    def __init__(self, client):
        self.client = client
        self.items = []

    def pump(self):
        self.items += self.client.poll(10)

    @property
    def events(self):
        from hotline_proto import cti_pb2
        return [i for i in self.items if isinstance(i, cti_pb2.Event)
                and i.name not in ("SystemStatus", "QueueStatistics")]

    def since(self, mark):
        return [e for e in self.events if e.seq > mark]

    def mark(self):
        from hotline_proto import cti_pb2
        return max((i.seq for i in self.items if isinstance(i, cti_pb2.Event)
                    and i.name != "SystemStatus"), default=0)

    def find(self, mark, name, **fields):
        for e in self.since(mark):
            if e.name == name and all(getattr(e, k) == v for k, v in fields.items()):
                return e
        return None


def until(stack, mark, name, what="", limit=20.0, **fields):
    return wait(lambda: stack.watch.find(mark, name, **fields),
                what or f"{name} {fields}", stack, limit=limit, step=0.02)


def story(stack, mark, call_id, agents=()):
    """(name, device or agent state) of the events about `call_id` or `agents`, in order."""
    out = []
    for e in stack.watch.since(mark):
        if e.agent_state and e.agent in agents:
            out.append((e.name, f"{e.agent}:{e.agent_state}"))
        elif e.call_id == call_id and not e.agent_state:
            out.append((e.name, e.device))
    return out


# ---- what the far side heard --------------------------------------------------------------------
def tts_file(stack, text):
    """The WAV file ctid's TTS cache renders `text` to (Mandarin)."""
    from ivr.tts import Tts
    return str(Tts(f"{stack.d}/run/acd/tts-cache").path_for(text, "zh"))


def moh_file(stack):
    return f"{stack.d}/run/acd/moh-default.wav"


def heard(stack, channel, file, **args):
    """Whether `channel` heard the prompt `file` since its recording began (what it heard is
    saved next to the run for a failure report)."""
    stack.sim("save", channel=channel, path=f"{stack.d}/heard-{channel}.npy")
    return stack.sim("measure", channel=channel, args={"file": file, **args})["prompt_at"] >= 0


def speak(stack, channel, hz, ears):
    """`channel` speaks (a 1.2 s tone of `hz`); the level of that tone each of `ears` heard."""
    stack.sim("record", channels=list(ears))
    stack.sim("talk", channel=channel, hz=hz, seconds=1.2, level_dbm0=-10.0)
    time.sleep(1.4)
    return {ch: stack.sim("measure", channel=ch, args={"hz": hz})["tone_dbm0"] for ch in ears}


# ---- what ctid wrote ----------------------------------------------------------------------------
def queue_log(stack, event=None):
    """The queue log's rows in SQLite (only `event`'s, if given), `data` decoded."""
    from ctid.storage import Store
    store = Store(f"sqlite:///{stack.d}/run/hotline.db")
    try:
        rows = [r for r in store.rows("queue_log") if event is None or r["event"] == event]
    finally:
        store.close()
    for r in rows:
        if isinstance(r["data"], str):
            r["data"] = json.loads(r["data"])
    return rows


def cdrs(stack):
    from ctid.storage import Store
    store = Store(f"sqlite:///{stack.d}/run/hotline.db")
    try:
        return store.cdrs()
    finally:
        store.close()


def metrics(stack):
    """ctid's /metrics page."""
    return urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics",
                                  timeout=5).read().decode()
