"""The ACD's sections of ctid.toml: [acd], [[queue]], [[agent]], with file, line and key."""
import os

import pytest

from ctid.acd_service.service import AcdService
from ctid.config import ConfigError, load_ctid_config, parse_ctid_config

from acd_helpers import CTID_BASE as BASE  # node1, 8001, 8002, trunk group co

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def problems(text, tmp_path):
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(BASE.format(run=tmp_path) + text, "ctid.toml")
    return [p.where() for p in e.value.problems]


def line_of(text, needle, tmp_path):
    full = BASE.format(run=tmp_path) + text
    return next(i for i, l in enumerate(full.splitlines(), 1) if needle in l)


def test_a_good_acd_configuration_builds_the_service(tmp_path):
    text = """
[acd]
announce = "tones"
figures_every_s = 5

[[queue]]
name = "hotline"
members = ["1001", "1002"]
wrapup_s = 8
sticky_wait_s = 20
overflow = [{when = "wait", threshold = 60, target = "queue:backup"}, "length>=5:hangup"]

[[queue]]
name = "backup"
strategy = "ring_all"
announce = false
moh = ""

[[agent]]
id = "1001"
extension = "8001"
login = true
skills = {mandarin = 5}

[[agent]]
id = "1002"
extension = "8002"

[[route]]
match = "12345"
to = "queue:hotline"
"""
    cfg = parse_ctid_config(BASE.format(run=tmp_path) + text, "ctid.toml")
    assert cfg.acd.announce == "tones" and cfg.acd.figures_every_s == 5.0
    hot, backup = cfg.queues
    assert hot.members == ("1001", "1002") and hot.wrapup_s == 8 and len(hot.overflow) == 2
    assert backup.strategy == "ring_all" and backup.announce_first_s is None and backup.moh is None
    assert [a.id for a in cfg.agents] == ["1001", "1002"] and cfg.agents[0].skills == {"mandarin": 5}
    svc = AcdService.from_config(cfg)
    assert set(svc.acd.queues) == {"hotline", "backup"} and set(svc.acd.agents) == {"1001", "1002"}
    assert svc.audio.announce == "tones"


def test_acd_problems_name_file_line_and_key(tmp_path):
    text = """
[acd]
announce = "loud"

[[queue]]
name = "hotline"
members = ["1001",
           "1007"]

[[queue]]
name = "backup"
wrapup_s = -3

[[queue]]
name = "sales"
overflow = [{when = "wait", threshold = 60, target = "queue:nowhere"}]

[[queue]]
name = "care"
max_wait_s = 60
max_wait_target = "callback"

[[queue]]
name = "vip"
skills = {mandarin = 12}

[[agent]]
id = "1001"
extension = "8009"

[[agent]]
id = "1002"
extension = "8001"
login = true

[[agent]]
id = "1003"
extension = "8001"
login = true

[[route]]
match = "12345"
to = "queue:hotlin"
"""
    expected = [
        ('announce = "loud"', 0, "acd.announce: 'loud' is not one of tts, tones"),
        ('"1007"', 0, "queue[0].members: '1007' is not an [[agent]] id"),
        ("wrapup_s = -3", 0, "queue[1].wrapup_s: must be 0 or more, got -3"),
        ("queue:nowhere", 0, "queue[2].overflow: 'queue:nowhere': no queue 'nowhere' "
                             "(known: backup, care, hotline, sales, vip)"),
        ("max_wait_target", 0, "queue[3].max_wait_target: 'callback': a callback target needs "
                               "the queue's callback_trunk (the trunk group to dial it on)"),
        ("skills = {mandarin = 12}", 0, "queue[4].skills: queue 'vip' skills: level of skill "
                                        "'mandarin' must be an integer 1..10, got 12"),
        ('extension = "8009"', 0, "agent[0].extension: no extension 8009 (see [[extension]])"),
        ('id = "1003"', 1, "agent[2].extension: agent '1002' already logs in at extension 8001"),
        ("queue:hotlin", 0, "route[0].to: 'queue:hotlin': no queue 'hotlin' "
                            "(see [[queue]]; known: backup, care, hotline, sales, vip)"),
    ]
    assert problems(text, tmp_path) == [
        f"ctid.toml:{line_of(text, needle, tmp_path) + below}: {message}"
        for needle, below, message in expected]


def test_callback_key_and_targets_need_a_trunk_group(tmp_path):
    good = """
[[queue]]
name = "hotline"
callback_key = "1"
callback_trunk = "co"
max_wait_s = 300
max_wait_target = "callback"
overflow = ["length>=3:callback"]
"""
    cfg = parse_ctid_config(BASE.format(run=tmp_path) + good, "ctid.toml")
    assert cfg.acd.callbacks == {"hotline": ("1", "co")}
    (q,) = cfg.queues
    assert str(q.max_wait_target) == "callback" and str(q.overflow[0].target) == "callback"
    bad = """
[[queue]]
name = "a"
callback_key = "12"
callback_trunk = "co"

[[queue]]
name = "b"
callback_key = "1"

[[queue]]
name = "c"
callback_trunk = "pbx"

[[queue]]
name = "d"
overflow = ["wait>=60:callback"]
"""
    expected = [
        ('callback_key = "12"', "queue[0].callback_key: must be one DTMF key (0123456789*#ABCD) "
                                "or empty, got '12'"),
        ('name = "b"', "queue[1].callback_key: a callback key needs callback_trunk, the trunk "
                       "group to dial callbacks on"),
        ('callback_trunk = "pbx"', "queue[2].callback_trunk: no trunk group 'pbx' (known: co)"),
        ("wait>=60:callback", "queue[3].overflow: 'callback': a callback target needs the "
                              "queue's callback_trunk (the trunk group to dial it on)"),
    ]
    found = problems(bad, tmp_path)
    assert [f.split(": ", 1)[1] for f in found] == [m for _, m in expected]
    assert found[0] == f"ctid.toml:{line_of(bad, expected[0][0], tmp_path)}: {expected[0][1]}"
    assert found[2] == f"ctid.toml:{line_of(bad, expected[2][0], tmp_path)}: {expected[2][1]}"
    assert found[3] == f"ctid.toml:{line_of(bad, expected[3][0], tmp_path)}: {expected[3][1]}"


def test_the_example_configuration_has_the_hotline_queue(tmp_path):
    cfg = load_ctid_config(os.path.join(ROOT, "etc", "ctid.toml"))
    (hot,) = [q for q in cfg.queues if q.name == "hotline"]
    assert set(hot.members) == {"1001", "1002"}
    seats = {a.id: a.extension for a in cfg.agents}
    assert seats["1001"] == "8001" and seats["1002"] == "8002"
    assert any(a.supervisor for a in cfg.agents)
    # 12345 reaches the agents through the IVR (etc/ivr/gov12345.yaml queues the caller)
    assert any(r.match == "12345" and r.to == "ivr:gov12345" for r in cfg.routes)
