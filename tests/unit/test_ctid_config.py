"""ctid.toml: the shipped file loads and routes as documented; bad files are refused with
the file, the line and the key of every problem."""
import datetime as dt
import zoneinfo

import pytest

from ctid.config import ConfigError, load_ctid_config, parse_ctid_config
from ctid.model.calls import ChannelRef, DeviceType

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")

GOOD = """\
[ctid]
timezone = "Asia/Shanghai"

[database]
url = "sqlite:///run/test.db"
queue_max = 50

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

[[route]]
match = "8XXX"
to = "ext:"

[[route]]
match = "12345"
to = "ext:8001"
calendar = "office"
closed_to = "ext:8002"

[[calendar]]
name = "office"
open = ["mon-fri 08:30-17:30"]
holidays = [
    "2026-10-01..2026-10-07",
]
workdays = ["2026-10-10"]
"""


def write(tmp_path, text, name="ctid.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def at(y, m, d, hh, mm=0):
    return dt.datetime(y, m, d, hh, mm, tzinfo=SHANGHAI)


# ---- the shipped example -----------------------------------------------------------------
def test_shipped_config_matches_cardd_channels():
    cfg = load_ctid_config("etc/ctid.toml")
    devices = {d.id: d for d in cfg.devices()}
    exts = [d for d in devices.values() if d.type == DeviceType.EXTENSION]
    trunks = [d for d in devices.values() if d.type == DeviceType.TRUNK]
    assert [(d.number, d.channel) for d in exts] == [
        (str(8000 + n), ChannelRef("node1", n)) for n in range(1, 5)]
    assert [d.channel for d in trunks] == [ChannelRef("node1", n) for n in range(5, 9)]
    assert {d.group for d in trunks} == {"co"} and {d.number for d in trunks} == {"12345"}
    assert cfg.tz.key == "Asia/Shanghai"
    assert [n.node for n in cfg.cardd] == ["node1"]
    assert cfg.database.url.startswith("sqlite:///") and cfg.cti.curve is False


@pytest.mark.parametrize("digits,when,source,target,number", [
    ("8001", at(2026, 11, 23, 10), "extension", "ext:8001", "8001"),
    ("8004", at(2026, 11, 21, 3), "extension", "ext:8004", "8004"),          # any time
    ("913812345678", at(2026, 11, 23, 10), "extension", "trunk:co", "13812345678"),
    ("12345", at(2026, 11, 23, 10), "trunk", "ivr:gov12345", "12345"),           # Monday, open
    ("12345", at(2026, 11, 23, 8, 29), "trunk", "ext:8002", "12345"),        # before opening
    ("12345", at(2026, 11, 23, 17, 30), "trunk", "ext:8002", "12345"),       # at closing
    ("12345", at(2026, 11, 21, 10), "trunk", "ext:8002", "12345"),           # a plain Saturday
    ("12345", at(2026, 10, 5, 10), "trunk", "ext:8002", "12345"),            # National Day (Monday)
    ("12345", at(2026, 2, 16, 10), "trunk", "ext:8002", "12345"),            # Spring Festival
    ("12345", at(2026, 10, 10, 10), "trunk", "ivr:gov12345", "12345"),           # Saturday worked
    ("12345", at(2026, 2, 14, 9), "trunk", "ivr:gov12345", "12345"),             # Saturday worked
    ("12345", at(2026, 9, 20, 18), "trunk", "ext:8002", "12345"),            # Sunday worked, evening
])
def test_shipped_dialplan_routes(digits, when, source, target, number):
    plan = load_ctid_config("etc/ctid.toml").dialplan()
    d = plan.decide(digits, when, source=source, complete=True)
    assert (d.kind, d.target, d.number) == ("route", target, number)


def test_shipped_dialplan_keeps_collecting_outside_numbers():
    plan = load_ctid_config("etc/ctid.toml").dialplan()
    assert plan.decide("9138", at(2026, 11, 23, 10), source="extension").kind == "wait"
    # "9." is for extensions: a trunk caller cannot dial out again through it.
    assert plan.decide("9138", at(2026, 11, 23, 10), source="trunk", complete=True).kind == "invalid"


def test_defaults_and_model_objects(tmp_path):
    cfg = load_ctid_config(write(tmp_path, GOOD))
    assert cfg.cti.events == "ipc://run/ctid-events.sock"
    assert cfg.cti.requests == "ipc://run/ctid-requests.sock"
    assert cfg.cti.retain == 100000 and cfg.metrics.listen == "127.0.0.1:9631"
    assert cfg.database.queue_max == 50
    assert cfg.database.spool_path(cfg.ctid.run_dir) == "run/db-spool"
    assert cfg.cardd[0].events == "ipc://run/cardd-events.sock"
    assert [d.id for d in cfg.devices()] == ["ext:8001", "ext:8002", "trunk:node1/5", "trunk:node1/6"]
    assert cfg.calendars["office"].is_open(at(2026, 10, 10, 9))


def test_trunk_group_over_two_nodes(tmp_path):
    text = GOOD.replace('[[extension]]\nnumber = "8001"',
                        '[[cardd]]\nnode = "node2"\nevents = "tcp://10.0.0.2:7000"\n'
                        'commands = "tcp://10.0.0.2:7001"\n\n[[extension]]\nnumber = "8001"', 1)
    text = text.replace('channels = "node1/5-6"', 'channels = ["node1/5-6", "node2/1,3"]')
    cfg = load_ctid_config(write(tmp_path, text))
    assert cfg.trunk_groups[0].channels == [ChannelRef("node1", 5), ChannelRef("node1", 6),
                                            ChannelRef("node2", 1), ChannelRef("node2", 3)]


# ---- problems, each at its line ----------------------------------------------------------
@pytest.mark.parametrize("old,new,line,key,words", [
    ('timezone = "Asia/Shanghai"', 'timezone = "Asia/Beijing"', 2, "ctid.timezone",
     "unknown time zone"),
    ('queue_max = 50', 'queue_maxx = 50', 6, "database.queue_maxx", "did you mean 'queue_max'"),
    ('queue_max = 50', 'queue_max = "50"', 6, "database.queue_max", "expected integer"),
    ('url = "sqlite:///run/test.db"', 'url = "mysql://h/db"', 5, "database.url",
     "'mysql' is not supported"),
    ('number = "8001"', 'number = 8001', 12, "extension[0].number", 'in quotes: "8001"'),
    ('channel = "node1/2"', 'channel = "node1/1"', 17, "extension[1].channel",
     "channel node1/1 is already used by extension 8001"),
    ('channel = "node1/2"', 'channel = "node9/2"', 17, "extension[1].channel",
     "node 'node9' is not a [[cardd]] node"),
    ('channel = "node1/2"', 'channel = "node1-2"', 17, "extension[1].channel",
     "expected NODE/CHANNEL"),
    ('number = "8002"', 'number = "8001"', 16, "extension[1].number", "already defined"),
    ('channels = "node1/5-6"', 'channels = "node1/2-6"', 21, "trunk_group[0].channels",
     "channel node1/2 is already used by extension 8002"),
    ('to = "ext:8001"', 'to = "ext:8009"', 30, "route[1].to", "no extension 8009"),
    ('to = "ext:"', 'to = "trunk:pstn"', 26, "route[0].to", "no trunk group 'pstn'"),
    ('to = "ext:"', 'to = "extension:8001"', 26, "route[0].to", "bad target"),
    ('calendar = "office"', 'calendar = "ofice"', 31, "route[1].calendar",
     "unknown calendar 'ofice'"),
    ('closed_to = "ext:8002"', 'closed_to = "ext:7002"', 32, "route[1].closed_to",
     "no extension 7002"),
    ('match = "8XXX"', 'match = "8XY"', 25, "route[0].match", "unexpected character 'Y'"),
    ('"2026-10-01..2026-10-07",', '"2026-10-01..2026-10-32",', 38, "calendar[0].holidays",
     "bad date"),
    ('open = ["mon-fri 08:30-17:30"]', 'open = ["mon-fri 8:30-17:30"]', 36, "calendar[0].open",
     "bad opening hours"),
    ('workdays = ["2026-10-10"]', 'workdays = ["2026-10-03"]', 40, "calendar[0].workdays",
     "2026-10-03 is listed both as a holiday and as a workday"),
    ('[[calendar]]', '[[calender]]', 34, "calender", "did you mean 'calendar'"),
])
def test_problem_names_file_line_and_key(tmp_path, old, new, line, key, words):
    assert old in GOOD
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as e:
        load_ctid_config(path)
    err = next((p for p in e.value.problems if p.key == key), None)
    assert err is not None, str(e.value)
    assert (err.path, err.line) == (path, line), str(e.value)
    assert words in err.message
    assert f"{path}:{line}: {key}: " in str(e.value)


def test_every_independent_problem_is_listed(tmp_path):
    text = (GOOD.replace('number = "8002"', 'number = "80x2"')
                .replace('to = "ext:8001"', 'to = "ext:8009"')
                .replace('queue_max = 50', 'queue_max = -1'))
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_ctid_config(path)
    found = [(p.line, p.key) for p in e.value.problems]
    assert found == [(6, "database.queue_max"), (16, "extension[1].number"), (30, "route[1].to")]
    assert str(e.value).count(path) == 3


def test_duplicate_route_is_dead_code(tmp_path):
    text = GOOD + '\n[[route]]\nmatch = "12345"\nto = "ext:8002"\nsource = "trunk"\n'
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "x.toml")
    assert (e.value.line, e.value.key) == (43, "route[2].match")
    assert "route[1] already takes '12345'" in e.value.message


def test_inbound_only_trunk_group_cannot_carry_outgoing_routes(tmp_path):
    text = GOOD.replace('number = "12345"', 'number = "12345"\ndirection = "in"').replace(
        'to = "ext:"', 'to = "trunk:co"')
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "x.toml")
    assert e.value.key == "route[0].to" and "inbound calls only" in e.value.message


def test_closed_to_without_calendar(tmp_path):
    text = GOOD.replace('calendar = "office"\n', "")
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "x.toml")
    assert (e.value.line, e.value.key) == (31, "route[1].closed_to")


def test_syntax_error_line(tmp_path):
    path = write(tmp_path, GOOD.replace('name = "co"', 'name = co'))
    with pytest.raises(ConfigError) as e:
        load_ctid_config(path)
    assert (e.value.line, e.value.key) == (20, "(syntax)")


def test_unreadable_file(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_ctid_config(tmp_path / "missing.toml")
    assert e.value.key == "(file)" and "cannot read" in e.value.message


def test_a_broken_entry_causes_no_knock_on_problems(tmp_path):
    # The calendar is wrong, but it is declared: the route naming it is not reported too.
    text = GOOD.replace('open = ["mon-fri 08:30-17:30"]', 'open = "mon-fri 08:30-17:30"')
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "x.toml")
    assert [(p.line, p.key) for p in e.value.problems] == [(36, "calendar[0].open")]
    assert "expected list, got str" in e.value.message


def test_ctid_needs_a_cardd_node():
    with pytest.raises(ConfigError) as e:
        parse_ctid_config('[ctid]\nname = "ctid"\n', "x.toml")
    assert e.value.key == "cardd" and "at least one" in e.value.message
