"""cardd.toml: good configs load; bad ones are refused with file, line and key."""
import textwrap

import pytest

from drivers.config import ConfigError, load_cardd_config, parse_range

GOOD = """\
[node]
name = "n1"

[[span]]
span = 1
kind = "analog"

[[channels]]
channels = "1-4"
span = 1
port = "fxs"

[[channels]]
channels = "5,6"
span = 1
port = "fxo"
busy_detect = false

[[span]]
span = 2
kind = "e1"
signaling = "pri_cpe"
"""


def write(tmp_path, text):
    p = tmp_path / "cardd.toml"
    p.write_text(textwrap.dedent(text))
    return str(p)


def test_shipped_config_loads():
    cfg = load_cardd_config("etc/cardd.toml")
    assert [c.port for c in cfg.channels] == ["fxs"] * 4 + ["fxo"] * 4
    assert cfg.law == "alaw" and cfg.tone_plan == "cn"


def test_channels_and_e1_numbering(tmp_path):
    cfg = load_cardd_config(write(tmp_path, GOOD))
    assert [c.channel for c in cfg.channels if c.port == "fxs"] == [1, 2, 3, 4]
    fxo = [c for c in cfg.channels if c.port == "fxo"]
    assert [c.channel for c in fxo] == [5, 6] and fxo[0].options == {"busy_detect": False}
    e1 = [c for c in cfg.channels if c.port == "e1"]
    assert len(e1) == 30 and e1[0].channel == 7 and e1[-1].channel == 36
    assert 16 not in [c.timeslot for c in e1] and e1[15].timeslot == 17
    assert cfg.spans[1].framing == "ccs" and cfg.spans[1].switchtype == "euroisdn_e1"


@pytest.mark.parametrize("old,new,line,key,words", [
    ('port = "fxs"', 'port = "fxz"', 11, "channels[0].port", "not one of"),
    ('channels = "5,6"', 'channels = "4-6"', 14, "channels[1].channels", "already used"),
    ('busy_detect = false', 'busy_detect = "no"', 17, "channels[1].busy_detect", "expected bool"),
    ('busy_detect = false', 'busy_detct = false', 17, "channels[1].busy_detct", "unknown key"),
    ('signaling = "pri_cpe"', 'signaling = "isdn"', 22, "span[1].signaling", "not one of"),
    ('name = "n1"', 'name = "n1"\ncolour = 3', 3, "node.colour", "unknown key"),
    ('channels = "1-4"', 'channels = "4-1"', 9, "channels[0].channels", "backwards"),
])
def test_bad_values_name_line_and_key(tmp_path, old, new, line, key, words):
    path = write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_cardd_config(path)
    err = info.value
    assert (err.path, err.line, err.key) == (path, line, key), str(err)
    assert words in str(err)
    assert str(err).startswith(f"{path}:{line}: {key}:")


def test_syntax_error_names_line(tmp_path):
    path = write(tmp_path, GOOD.replace('kind = "analog"', 'kind = "analog'))
    with pytest.raises(ConfigError) as info:
        load_cardd_config(path)
    assert info.value.line == 6 and info.value.key == "(syntax)"


def test_missing_file_and_missing_span(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_cardd_config(str(tmp_path / "nope.toml"))
    path = write(tmp_path, GOOD.replace("span = 1\nport = \"fxs\"", "span = 9\nport = \"fxs\""))
    with pytest.raises(ConfigError, match="span 9 is not defined") as info:
        load_cardd_config(path)
    assert info.value.line == 10


def test_parse_range():
    assert parse_range("1-3,7, 9-10") == [1, 2, 3, 7, 9, 10]
    for bad in ("", "1-", "a", "3-1"):
        with pytest.raises(ValueError):
            parse_range(bad)
