"""The ACD's part of ctid.toml: [acd], [[queue]] and [[agent]], checked like the rest of the
file (every problem names the file, the line and the key; unknown keys are errors).

    [acd]
    music = ""                  # music-on-hold file; empty: generated into the run directory
    announce = "tts"            # position/wait announcements: "tts" (Mandarin speech) or "tones"
    figures_every_s = 10        # QueueStatistics events and the figures' gauges

    [[queue]]
    name = "hotline"
    strategy = "longest_idle"
    members = ["1001", "1002"]  # or skills = {mandarin = 3}
    wrapup_s = 10
    rona_s = 15
    sticky_wait_s = 20          # a returning caller waits this long for their last agent
    overflow = [{when = "wait", threshold = 120, target = "queue:backup"}]
    callback_key = "1"          # a waiting caller keys this to be called back (and released)
    callback_trunk = "co"       # the trunk group callbacks are dialled on (needed by callback_key
                                # and by callback overflow targets)
    callback_retries = 2        # further attempts when the customer was not reached
    callback_retry_s = 300      # the pause before such an attempt waits for an agent again
    callback_dial_timeout_s = 45  # a callback the customer has not answered by then failed

    [[agent]]
    id = "1001"
    name = "Li Na"
    extension = "8001"          # where a login names no device, and where `login` puts them
    login = true                # logged in (ready) when ctid starts
    supervisor = false          # may listen, whisper and barge (CTI scope permitting)

ctid.config calls `build(builder)` after the extensions are read and before the routes, so
that a route or an overflow naming an unknown queue is reported at its own line.
"""
from __future__ import annotations

import dataclasses
import os

from ctid.acd import AcdError, QueueConfig, STRATEGIES, Target


@dataclasses.dataclass
class AcdSettings:
    music: str = ""
    announce: str = "tts"
    language: str = "zh"
    figures_every_s: float = 10.0
    reconcile_every_s: float = 5.0
    reconcile_grace_s: float = 5.0
    # queue name -> (callback key or "", trunk group callbacks are dialled on)
    callbacks: dict = dataclasses.field(default_factory=dict)
    # queue name -> seconds a dialled callback may ring unanswered (callback_dial_timeout_s)
    callback_dial_timeout_s: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class AgentSettings:
    id: str
    name: str = ""
    skills: dict = dataclasses.field(default_factory=dict)
    extension: str = ""
    login: bool = False
    supervisor: bool = False


ANNOUNCE = ("tts", "tones")
LANGUAGES = ("zh", "en", "yue")
TABLES = ("acd",)
ARRAYS = ("queue", "agent")
# Overflow kinds this ctid carries out (a callback needs the queue's callback_trunk).
TARGET_KINDS = ("queue", "voicemail", "callback", "hangup")
DTMF_KEYS = "0123456789*#ABCD"


def _fields():
    from ctid.config import Field, _name, _not_negative, _positive
    num = (int, float)

    def strategy(v):
        return None if v in STRATEGIES or v in ("ringall", "rrmemory", "leastrecent") else \
            f"unknown strategy {v!r}; choose one of {', '.join(STRATEGIES)}"

    def dtmf_key(v):
        return None if v == "" or (len(v) == 1 and v in DTMF_KEYS) else \
            f"must be one DTMF key ({DTMF_KEYS}) or empty, got {v!r}"

    def agent_id(v):
        return _name(v) if v else "empty agent id"

    acd = {"music": Field(str, ""), "announce": Field(str, "tts", ANNOUNCE),
           "language": Field(str, "zh", LANGUAGES),
           "figures_every_s": Field(num, 10.0, check=_positive),
           "reconcile_every_s": Field(num, 5.0, check=_positive),
           "reconcile_grace_s": Field(num, 5.0, check=_not_negative)}
    queue = {"name": Field(str, required=True, check=_name),
             "strategy": Field(str, "longest_idle", check=strategy),
             "skills": Field(dict, {}), "skill_weights": Field(dict, {}),
             "members": Field(list, []),
             "wrapup_s": Field(num, 10.0, check=_not_negative),
             "rona_s": Field(num, 20.0, check=_positive),
             "max_wait_s": Field(num, None, check=_positive),
             "max_wait_target": Field(str, "voicemail"),
             "overflow": Field(list, []),
             "callback_key": Field(str, "", check=dtmf_key),
             "callback_trunk": Field(str, ""),
             "callback_retries": Field(int, 2, check=_not_negative),
             "callback_retry_s": Field(num, 300.0, check=_not_negative),
             "callback_dial_timeout_s": Field(num, 45.0, check=_positive),
             "sl_threshold_s": Field(num, 20.0, check=_not_negative),
             "announce": Field(bool, True),
             "announce_first_s": Field(num, 30.0, check=_not_negative),
             "announce_every_s": Field(num, 60.0, check=_positive),
             "moh": Field(str, "default"),
             "sticky_wait_s": Field(num, 0.0, check=_not_negative),
             "priority_step_s": Field(num, 60.0, check=_positive),
             "boost_s": Field(num, 0.0, check=_not_negative),
             "care_line": Field(bool, False),
             "default_aht_s": Field(num, 180.0, check=_positive)}
    agent = {"id": Field(str, required=True, check=agent_id), "name": Field(str, ""),
             "skills": Field(dict, {}), "extension": Field(str, ""),
             "login": Field(bool, False), "supervisor": Field(bool, False)}
    return acd, queue, agent


def build(b) -> None:
    """Read [acd], [[agent]] and [[queue]] into b.cfg (acd, agents, queues); sets
    b.queue_names for the routes' checks."""
    from ctid.config import _Skip
    c, data, cfg = b.c, b.data, b.cfg
    acd_spec, queue_spec, agent_spec = _fields()
    cfg.acd = AcdSettings()
    raw = data.get("acd", {})
    if "acd" in data and not isinstance(raw, dict):
        c.problem("", None, "acd", "must be a table [acd]")
    else:
        try:
            v = c.section(raw, "acd", None, acd_spec)
            if v["music"] and not os.path.isfile(v["music"]):
                raise c.problem("acd", None, "music", f"no such file {v['music']!r} (leave it "
                                "empty for music generated at start)")
            cfg.acd = AcdSettings(**{k: (float(x) if isinstance(x, int) and k.endswith("_s") else x)
                                     for k, x in v.items()})
        except _Skip:
            pass

    agents = c.entries(data, "agent")
    agent_ids = c.declared(agents, "id")
    seen: dict[str, int] = {}
    seats: dict[str, str] = {}
    for i, entry in agents:
        try:
            v = c.section(entry, "agent", i, agent_spec)
            if v["id"] in seen:
                raise c.problem("agent", i, "id", f"agent {v['id']!r} is already defined by "
                                f"agent[{seen[v['id']]}]")
            seen[v["id"]] = i
            if v["extension"] and v["extension"] not in b.extension_numbers:
                raise c.problem("agent", i, "extension", f"no extension {v['extension']} "
                                "(see [[extension]])")
            if v["login"]:
                if not v["extension"]:
                    raise c.problem("agent", i, "login", "login = true needs the extension "
                                    "to log in at")
                if v["extension"] in seats:
                    raise c.problem("agent", i, "extension", f"agent {seats[v['extension']]!r} "
                                    f"already logs in at extension {v['extension']}")
                seats[v["extension"]] = v["id"]
            _check(c, "agent", i, entry, lambda: _skills(v["skills"], f"agent {v['id']!r}"))
        except _Skip:
            continue
        cfg.agents.append(AgentSettings(**v))

    queues = c.entries(data, "queue")
    b.queue_names = c.declared(queues, "name")
    names: dict[str, int] = {}
    for i, entry in queues:
        try:
            v = c.section(entry, "queue", i, queue_spec)
            if v["name"] in names:
                raise c.problem("queue", i, "name", f"queue {v['name']!r} is already defined "
                                f"by queue[{names[v['name']]}]")
            names[v["name"]] = i
            for m in v["members"]:
                if not isinstance(m, str) or m not in agent_ids:
                    line = c.map.value_line("queue", i, "members", f'"{m}"')
                    raise c.problem("queue", i, "members", f"{m!r} is not an [[agent]] id", line)
            key, trunk = v.pop("callback_key"), v.pop("callback_trunk")
            dial_timeout = float(v.pop("callback_dial_timeout_s"))
            if key and not trunk:
                raise c.problem("queue", i, "callback_key", "a callback key needs "
                                "callback_trunk, the trunk group to dial callbacks on")
            groups = {g.name for g in cfg.trunk_groups}
            if trunk and trunk not in groups:
                known = ", ".join(sorted(groups)) or "none"
                raise c.problem("queue", i, "callback_trunk", f"no trunk group {trunk!r} "
                                f"(known: {known})")
            _target(b, i, "max_wait_target", v["max_wait_target"], trunk=trunk)
            for rule in v["overflow"]:
                text = rule.get("target") if isinstance(rule, dict) else rule
                if isinstance(text, str):
                    if not isinstance(rule, dict):          # 'wait>=120:queue:sales'
                        text = text.partition(":")[2]
                    line = c.map.value_line("queue", i, "overflow", text)
                    _target(b, i, "overflow", text, line, trunk=trunk)
            announce = v.pop("announce")
            if not announce:
                v["announce_first_s"] = None
            v["moh"] = v["moh"] or None
            q = _check(c, "queue", i, entry, lambda: QueueConfig(**v))
        except _Skip:
            continue
        cfg.queues.append(q)
        if key or trunk:
            cfg.acd.callbacks[q.name] = (key, trunk)
        cfg.acd.callback_dial_timeout_s[q.name] = dial_timeout


def _skills(skills, what):
    from ctid.acd.skills import validate_skills
    return validate_skills(skills, f"{what} skills")


def _check(c, table, index, entry, make):
    """Run the ACD's own checks; a refusal goes to the line of the key it names."""
    try:
        return make()
    except AcdError as e:
        text = str(e)
        key = next((k for k in entry if k in text), None)
        raise c.problem(table, index, key, text) from None


def _target(b, index, key, text, line=None, trunk=""):
    try:
        t = Target.parse(text)
    except AcdError as e:
        raise b.c.problem("queue", index, key, str(e), line) from None
    if t.kind not in TARGET_KINDS:
        raise b.c.problem("queue", index, key, f"{text!r}: {t.kind} targets are not carried out "
                          f"by this ctid (use {', '.join(k + ':' for k in TARGET_KINDS)})", line)
    if t.kind == "callback" and not trunk:
        raise b.c.problem("queue", index, key, f"{text!r}: a callback target needs the queue's "
                          "callback_trunk (the trunk group to dial it on)", line)
    if t.kind == "queue" and t.name not in b.queue_names:
        known = ", ".join(sorted(b.queue_names)) or "none"
        raise b.c.problem("queue", index, key, f"{text!r}: no queue {t.name!r} (known: {known})",
                          line)
