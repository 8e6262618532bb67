"""cardd.toml settings of E1 spans (PRI and MFC/R2): typed, refused with file, line and key
when wrong or on a span of the other signaling, and they change what the span does."""
import dataclasses
import textwrap

import pytest

from drivers import config as config_mod
from drivers.config import ConfigError, load_cardd_config
from drivers.signaling.pri.config import PriConfig
from simulators.actors.pri_co import attach_pri
from simulators.actors.r2_co import attach_r2
from test_span_counters import Node

PRI = """\
[[span]]
span = 1
kind = "e1"
signaling = "pri_cpe"
channels = "1-15,17-31"
{extra}
"""
R2 = """\
[[span]]
span = 1
kind = "e1"
signaling = "r2"
channels = "1-15,17-31"
{extra}
"""
ANALOG = """\
[[span]]
span = 1
kind = "analog"
{extra}
[[channels]]
channels = "1-2"
span = 1
port = "fxs"
"""


def write(tmp_path, template, extra):
    p = tmp_path / "cardd.toml"
    p.write_text(textwrap.dedent(template.format(extra=extra)))
    return str(p)


def test_pri_settings_reach_the_span_options_and_pri_config(tmp_path):
    cfg = load_cardd_config(write(tmp_path, PRI, """overlap_receiving = false
interdigit_ms = 5000
hunt = "ascending"
recovery_jitter = 0.5
restart_attempts = 2"""))
    span = cfg.spans[0]
    assert span.options == {"overlap_receiving": False, "interdigit_ms": 5000,
                            "hunt": "ascending", "recovery_jitter": 0.5, "restart_attempts": 2}
    pri = PriConfig.from_span(span)
    assert (pri.overlap_receiving, pri.interdigit_ms, pri.hunt, pri.recovery_jitter,
            pri.restart_attempts) == (False, 5000, "ascending", 0.5, 2)


def test_every_pri_key_is_a_pri_config_field():
    fields = {f.name for f in dataclasses.fields(PriConfig)}
    assert set(config_mod._PRI_OPTIONS) <= fields


def test_r2_settings_reach_the_span_options(tmp_path):
    cfg = load_cardd_config(write(tmp_path, R2, """r2_max_dnis = 4
r2_max_ani = 11
r2_ringback = ""
r2_trace = "run/r2-trace\""""))
    assert cfg.spans[0].options == {"r2_max_dnis": 4, "r2_max_ani": 11, "r2_ringback": "",
                                    "r2_trace": "run/r2-trace"}


def test_no_settings_no_options(tmp_path):
    assert load_cardd_config(write(tmp_path, PRI, "")).spans[0].options == {}
    assert load_cardd_config(write(tmp_path, R2, "")).spans[0].options == {}


@pytest.mark.parametrize("template,extra,key,words", [
    (PRI, 'overlap_receiving = "no"', "span[0].overlap_receiving", "expected bool"),
    (PRI, "interdigit_ms = 0", "span[0].interdigit_ms", "must be >= 1"),
    (PRI, "stuck_clearing_ms = -5", "span[0].stuck_clearing_ms", "must be >= 0"),
    (PRI, "restart_attempts = 0", "span[0].restart_attempts", "must be >= 1"),
    (PRI, "recovery_jitter = 1.5", "span[0].recovery_jitter", "0..1"),
    (PRI, 'hunt = "random"', "span[0].hunt", "not one of ascending, descending"),
    (PRI, "dnis_digits = 4.5", "span[0].dnis_digits", "expected int"),
    (PRI, "r2_max_dnis = 4", "span[0].r2_max_dnis", "an R2 setting, but span 1 has signaling 'pri_cpe'"),
    (R2, "overlap_receiving = false", "span[0].overlap_receiving",
     "a PRI setting, but span 1 has signaling 'r2'"),
    (R2, "r2_max_dnis = 0", "span[0].r2_max_dnis", "must be 1..64"),
    (R2, "r2_max_ani = 100", "span[0].r2_max_ani", "must be 0..64"),
    (R2, "r2_ringback = 1", "span[0].r2_ringback", "expected str"),
    (ANALOG, "interdigit_ms = 3000", "span[0].interdigit_ms",
     "a PRI setting, but span 1 has signaling 'analog'"),
    (PRI, "overlap_recieving = false", "span[0].overlap_recieving", "unknown key"),
])
def test_bad_e1_settings_are_refused_with_file_line_key(tmp_path, template, extra, key, words):
    path = write(tmp_path, template, extra)
    with pytest.raises(ConfigError) as e:
        load_cardd_config(path)
    line = 6 if template is not ANALOG else 4
    assert (e.value.path, e.value.line, e.value.key) == (path, line, key)
    assert words in e.value.message


# ---- settings that change behaviour (real cardd, ctisim's exchange) ---------------------------
def full_config(tmp_path, base: str, extra: str) -> str:
    text = open(f"etc/{base}").read()
    p = tmp_path / "cardd-e1.toml"
    p.write_text(text + "\n" + extra + "\n")
    return str(p)


def incoming_dnis(node) -> list[str]:
    return [e.incoming.dnis for e in node.events if e.WhichOneof("kind") == "incoming"]


@pytest.mark.parametrize("setting,dnis", [("", "80012345"),
                                          ("overlap_receiving = false", "800")])
def test_pri_overlap_receiving_off_takes_the_setup_as_complete(tmp_path, setting, dnis):
    n = Node(tmp_path, "sim", full_config(tmp_path, "cardd-pri.toml", setting), attach_pri)
    try:
        n.do(lambda: n.office.call("80012345", "13800138000", channel=3, overlap_digits=3))
        n.run(250)                             # the interdigit timer is 3 s
        assert incoming_dnis(n) == [dnis]
    finally:
        n.close()


def test_r2_max_dnis_stops_the_register_after_that_many_digits(tmp_path):
    n = Node(tmp_path, "sim", full_config(tmp_path, "cardd-r2.toml", "r2_max_dnis = 4"),
             attach_r2)
    try:
        n.do(lambda: n.office.call("80012345", ani="13800138000"))
        n.run(400)
        assert incoming_dnis(n) == ["8001"]
    finally:
        n.close()
