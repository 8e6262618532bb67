"""The ACD's durable state: who is logged in where, and the callbacks promised to customers.

ctid rebuilds calls in progress from cardd after a restart; this keeps what only the ACD
knew. The state is a JSON document in ctid's run directory (run_dir/acd/state.json),
written atomically (temp file, fsync, rename) at the end of a service tick when it changed,
and read at the first tick after start:

    {"format": 2, "saved_at": T,
     "agents": [{"id", "extension", "softphone", "state": "ready"|"not_ready", "reason",
                 "login_at"}],
     "callbacks": [{"call", "queue", "number", "caller", "level", "class", "arrived",
                    "entered", "front", "attempts", "data", "retry_due" (optional)}],
     "waiting": [{"call", "line", "queue", "caller", "level", "class", "arrived", "entered",
                  "front", "sticky_agent", "data"}],
     "stats": {QUEUE: {"period_start", "answered", ... (QueueStats.COUNTERS)}}}

Format 1 (no waiting, no stats) is still read. A waiting caller is found again after the
restart by its line ("line": the caller's device, e.g. the trunk channel): the call model
rebuilds that line's call from cardd, the service files it back in its queue (a new call
id, the original entered time, so its place and wait timers are kept) and restarts its
music. A caller that was ringing an agent is saved at the head of its queue (front); the
agent's phone is stopped by the resync (cardd_link.reconcile hangs up an extension ringing
for a call ctid does not know). A caller whose line is gone is counted as an abandon
(ABANDON, reason lost_in_restart). A sticky caller comes back as a plain waiting caller.
The queues' statistics of the period are saved too, so that the figures (service level,
ASA, abandon rate, callbacks requested = completed + abandoned + pending) go on across a
restart: the live ACD's period runs from its first start, a restart does not begin one.

Times are seconds on ctid's clock (Unix time). An agent busy, ringing or in wrap-up is
saved as ready (not ready when they asked for it meanwhile): the call itself is cardd's to
keep, and the reconciler sees the phone. Callback entries waiting, ringing an agent or
waiting for a retry are saved in queue order; one being dialled or connected is not (its
call lives on in cardd). One waiting for a retry keeps its pause: "retry_due" is when it
is filed again, and it comes back waiting for that time (at once if it has passed), so
the customer is not called back early. A missing file is a fresh start; an unreadable or malformed one is
logged, renamed aside (state.json.bad-TIME) and ctid starts fresh.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time

from ctid.acd import AcdError
from ctid.acd.agent import LOGGED_OFF, NOT_READY, READY
from ctid.acd.queue import OFFERED, STICKY, WAITING

log = logging.getLogger("ctid.acd")

FORMAT = 2
READABLE = (1, 2)
STATE_FILE = os.path.join("acd", "state.json")
# Callback entries the customer is still owed a call for (see ctid.acd.queue).
PENDING_CALLBACK = ("callback", "offered", "callback_retry")
WRITE_ERROR_EVERY_S = 60.0


class StateError(ValueError):
    """The state file is not a state document this version can read."""


# ---- the document ------------------------------------------------------------------------
def snapshot(acd, login_at: dict[str, float], lines: dict[str, str] | None = None) -> dict:
    """The durable part of `acd`, without the time it was taken. `lines`: the waiting
    callers' lines (call id -> the caller's device); a caller without one is not kept."""
    agents = []
    for a in sorted(acd.agents.values(), key=lambda a: a.seq):
        if a.state == LOGGED_OFF:
            continue
        if a.state == NOT_READY:
            state, reason = NOT_READY, a.reason
        elif a.pending_not_ready is not None:      # asked on a call: applies after it
            state, reason = NOT_READY, a.pending_not_ready
        else:
            state, reason = READY, ""
        agents.append({"id": a.id, "extension": a.extension, "softphone": a.softphone,
                       "state": state, "reason": reason, "login_at": login_at.get(a.id)})
    callbacks = []
    entries = [c for c in acd.calls.values()
               if c.callback is not None and c.state in PENDING_CALLBACK]
    for c in sorted(entries, key=lambda c: (c.queue.name, _key(c))):
        key = _key(c)
        callbacks.append({
            "call": c.id, "queue": c.queue.name, "number": c.callback, "caller": c.caller,
            "level": c.level, "class": c.pclass or "", "arrived": c.arrived,
            "entered": c.entered,
            # back at the head: it was ringing an agent, or came back after ring no answer
            "front": c.state == "offered" or (key is not None and key[0] == 0),
            "attempts": getattr(c, "cb_attempts", 0),
            "data": {str(k): str(v) for k, v in (c.data or {}).items()}})
        due = acd.callback_retry_due(c.id) if c.state == "callback_retry" else None
        if due is not None:
            callbacks[-1]["retry_due"] = due
    waiting = []
    lines = lines or {}
    entries = [c for c in acd.calls.values() if c.callback is None and c.id in lines
               and c.state in (WAITING, OFFERED, STICKY)]
    for c in sorted(entries, key=lambda c: (c.queue.name, c.key)):
        waiting.append({
            "call": c.id, "line": lines[c.id], "queue": c.queue.name, "caller": c.caller,
            "level": c.level, "class": c.pclass or "", "arrived": c.arrived,
            "entered": c.entered, "front": c.state == OFFERED or c.key[0] == 0,
            "sticky_agent": c.sticky_agent or "",
            "data": {str(k): str(v) for k, v in (c.data or {}).items()}})
    stats = {name: q.stats.to_dict() for name, q in sorted(acd.queues.items())}
    return {"format": FORMAT, "agents": agents, "callbacks": callbacks, "waiting": waiting,
            "stats": stats}


def _key(call):
    return getattr(call, "cb_key", None) or call.key


def _num(v, what):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise StateError(f"{what} must be a number, got {v!r}")
    return float(v)


def _str(v, what, empty=False):
    if not isinstance(v, str) or (not v and not empty):
        raise StateError(f"{what} must be a {'' if empty else 'non-empty '}string, got {v!r}")
    return v


def check(doc) -> dict:
    """`doc` as read from the file, checked; StateError names the first thing wrong."""
    if not isinstance(doc, dict):
        raise StateError(f"the document must be a JSON object, got {type(doc).__name__}")
    if doc.get("format") not in READABLE:
        raise StateError(f"format {doc.get('format')!r} is not one this ctid reads "
                         f"({', '.join(map(str, READABLE))})")
    agents, callbacks = doc.get("agents", []), doc.get("callbacks", [])
    waiting, stats = doc.get("waiting", []), doc.get("stats", {})
    if not isinstance(agents, list) or not isinstance(callbacks, list) \
            or not isinstance(waiting, list):
        raise StateError("agents, callbacks and waiting must be lists")
    if not isinstance(stats, dict) or not all(isinstance(v, dict) for v in stats.values()):
        raise StateError("stats must be an object of objects (one per queue)")
    for i, a in enumerate(agents):
        w = f"agents[{i}]"
        if not isinstance(a, dict):
            raise StateError(f"{w} must be an object")
        _str(a.get("id"), f"{w}.id")
        _str(a.get("extension"), f"{w}.extension")
        if a.get("state") not in (READY, NOT_READY):
            raise StateError(f"{w}.state must be ready or not_ready, got {a.get('state')!r}")
        _str(a.get("reason", ""), f"{w}.reason", empty=True)
        if a.get("login_at") is not None:
            _num(a["login_at"], f"{w}.login_at")
    for i, c in enumerate(callbacks):
        _check_call(c, f"callbacks[{i}]", ("call", "queue", "number"))
        if c.get("retry_due") is not None:
            _num(c["retry_due"], f"callbacks[{i}].retry_due")
        attempts = c.get("attempts") or 0
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise StateError(f"callbacks[{i}].attempts must be a whole number >= 0, "
                             f"got {attempts!r}")
    for i, c in enumerate(waiting):
        _check_call(c, f"waiting[{i}]", ("call", "line", "queue"))
    return doc


def _check_call(c, w: str, names) -> None:
    """A saved call (a callback entry or a waiting caller): ``names`` are its required
    strings; then caller, level, times and data, as both kinds have them."""
    if not isinstance(c, dict):
        raise StateError(f"{w} must be an object")
    for k in names:
        _str(c.get(k), f"{w}.{k}")
    _str(c.get("caller", ""), f"{w}.caller", empty=True)
    level = c.get("level", 0)
    if isinstance(level, bool) or not isinstance(level, int) or level < 0:
        raise StateError(f"{w}.level must be a whole number >= 0, got {level!r}")
    _num(c.get("entered"), f"{w}.entered")
    _num(c.get("arrived", c.get("entered")), f"{w}.arrived")
    if not isinstance(c.get("data", {}), dict):
        raise StateError(f"{w}.data must be an object")


# ---- the file ------------------------------------------------------------------------------
class StateFile:
    """One state file: read once at start, written when what it would say changes."""

    def __init__(self, path: str):
        self.path = path
        self.login_at: dict[str, float] = {}     # agent -> when they logged in (ctid clock)
        self._written = None                     # the body last written (or read)
        self._error_at = -math.inf
        self.writes = 0

    def load(self, now: float) -> dict | None:
        """The saved document, or None (no file: fresh start; a bad one is put aside)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            return self._bad(f"cannot be read: {e.strerror or e}", now)
        try:
            doc = check(json.loads(raw.decode("utf-8")))
        except (UnicodeDecodeError, json.JSONDecodeError, StateError) as e:
            return self._bad(str(e), now)
        return doc

    def _bad(self, what: str, now: float) -> None:
        aside = f"{self.path}.bad-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}"
        n = 1
        while os.path.exists(aside):
            n += 1
            aside = f"{aside.rsplit('~', 1)[0]}~{n}"
        try:
            os.replace(self.path, aside)
            moved = f"renamed to {os.path.basename(aside)}"
        except OSError as e:
            moved = f"and could not be renamed aside ({e.strerror or e})"
        log.error("ACD state file %s %s; %s: the ACD starts with no agent logged in and no "
                  "callback pending", self.path, what, moved)
        return None

    def save(self, acd, now: float, lines: dict[str, str] | None = None) -> bool:
        """Write the state if it changed since the last write; True when written.
        `lines`: the waiting callers' lines (call id -> device), as snapshot() takes."""
        live = {a.id for a in acd.agents.values() if a.state != LOGGED_OFF}
        for aid in list(self.login_at):
            if aid not in live:
                del self.login_at[aid]
        for aid in live:
            self.login_at.setdefault(aid, now)
        body = snapshot(acd, self.login_at, lines)
        if body == self._written:
            return False
        try:
            write_atomic(self.path, json.dumps({**body, "saved_at": now}, indent=1,
                                               ensure_ascii=False) + "\n")
        except OSError as e:        # disk full, permissions: said once a minute, retried
            if now - self._error_at >= WRITE_ERROR_EVERY_S:
                self._error_at = now
                log.error("ACD state file %s not written: %s", self.path, e.strerror or e)
            return False
        self._written = body
        self.writes += 1
        return True

    def restore(self, acd, now: float, extension_ok=lambda ext: True, line=None,
                doc=None) -> list:
        """Put the saved statistics, callbacks, waiting callers and agents back into `acd`
        (freshly built); the actions. `line(entry)` gives the call id of a saved waiting
        caller's line as rebuilt after the restart (entry["line"] is the device), or None
        when the line is gone; without `line` no waiting caller is restored. `doc`: the
        document if load() was already called."""
        doc = self.load(now) if doc is None else doc
        if doc is None:
            return []
        acts: list = []
        for name, d in doc.get("stats", {}).items():
            q = acd.queues.get(name)
            if q is None:
                continue
            try:
                q.stats.from_dict(d)
            except ValueError as e:
                log.warning("ACD state: statistics of queue %s not restored: %s", name, e)
        counted = "stats" in doc       # format 1: a restored entry starts this period's count
        # Callbacks first, with nobody ready yet, so that every entry is filed at its place
        # before an agent picks the best head.
        for c in doc["callbacks"]:
            if c["queue"] not in acd.queues:
                log.warning("ACD state: callback %s to %s skipped: queue %r is no longer "
                            "configured", c["call"], c["number"], c["queue"])
                continue
            try:
                acts += acd.restore_callback(
                    c["call"], c["queue"], c["number"], c.get("caller", ""), c.get("level", 0),
                    min(c["entered"], now), now, arrived=min(c.get("arrived", c["entered"]), now),
                    pclass=c.get("class", ""), data=c.get("data") or {},
                    front=bool(c.get("front")), attempts=int(c.get("attempts") or 0),
                    retry_due=c.get("retry_due"))
            except AcdError as e:
                log.warning("ACD state: callback %s not restored: %s", c["call"], e)
                continue
            if not counted:
                acd.queues[c["queue"]].stats.callbacks_requested += 1
        restored_waiting = 0
        for c in doc.get("waiting", []) if line is not None else ():
            if c["queue"] not in acd.queues:
                log.warning("ACD state: caller %s on %s skipped: queue %r is no longer "
                            "configured", c["call"], c["line"], c["queue"])
                continue
            entered = min(c["entered"], now)
            call_id = line(c)
            if call_id is None:
                log.info("ACD state: caller %s waiting in %s was lost in the restart (%s gone)",
                         c["call"], c["queue"], c["line"])
                acd.restore_lost(c["call"], c["queue"], entered, now)
                continue
            try:
                acts += acd.restore_waiting(
                    call_id, c["queue"], c.get("caller", ""), c.get("level", 0), entered, now,
                    arrived=min(c.get("arrived", c["entered"]), now),
                    pclass=c.get("class", ""), data=c.get("data") or {},
                    front=bool(c.get("front")))
                restored_waiting += 1
            except AcdError as e:
                log.warning("ACD state: caller %s not restored: %s", c["call"], e)
        for a in doc["agents"]:
            if a["id"] not in acd.agents:
                log.warning("ACD state: agent %s skipped: no longer configured", a["id"])
                continue
            if not extension_ok(a["extension"]):
                log.warning("ACD state: agent %s skipped: %s is no longer an extension",
                            a["id"], a["extension"])
                continue
            try:
                acts += acd.restore_agent(a["id"], a["extension"], now, a["state"],
                                          a.get("reason", ""), bool(a.get("softphone")))
            except AcdError as e:
                log.warning("ACD state: agent %s not restored: %s", a["id"], e)
                continue
            if a.get("login_at") is not None:
                self.login_at[a["id"]] = min(float(a["login_at"]), now)
        n_agents = sum(a.state != LOGGED_OFF for a in acd.agents.values())
        n_cb = sum(c.callback is not None for c in acd.calls.values())
        log.info("ACD state restored from %s: %d agents logged in, %d callbacks pending, "
                 "%d callers waiting", self.path, n_agents, n_cb, restored_waiting)
        return acts


def write_atomic(path: str, text: str) -> None:
    """`path` holds either the old text or all of `text`, whenever the machine stops."""
    d = os.path.dirname(path) or "."
    os.makedirs(d, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:                        # the rename itself durable
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
