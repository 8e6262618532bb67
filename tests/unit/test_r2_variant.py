"""R2 variant files: the shipped China and ITU variants, and clear errors for bad files."""
import pytest

from drivers.signaling.r2.variant import VariantError, load_variant, parse_variant


def test_china_variant_encodes_china_no1():
    v = load_variant("china")
    assert v.line.abcd("idle") == 0b1011           # C and D are 1 1 in China
    assert v.line.abcd("seize") == 0b0011
    assert v.line.abcd("answer") == 0b0111
    assert set(v.line.names(0b1111)) == {"seize_ack", "clear_back", "blocked"}
    assert v.request_next_dnis == 1 and v.request_next_ani == 1
    assert v.request_category == 6 and v.address_complete == 3
    assert v.group_b[1] == "free_charge" and v.group_b[2] == "busy"
    assert v.end_of_dnis == 0 and v.end_of_ani == 15          # DNIS ends by timeout
    assert v.refusal_signal(17) == 2 and v.refusal_signal(1) == 5
    assert v.category_signal("ordinary") == 1 and v.category_signal("4") == 4


def test_itu_variant_baseline():
    v = load_variant("itu")
    assert v.line.abcd("idle") == 0b1001
    assert v.request_next_dnis == 1 and v.request_category == 5 and v.request_next_ani == 5
    assert v.b_signal("free_charge") == 6 and v.b_signal("free_no_charge") == 7
    assert v.b_signal("busy") == 3 and v.end_of_dnis == 15
    with pytest.raises(ValueError, match="no calling party category 'vip'"):
        v.category_signal("vip")


GOOD = """\
[variant]
name = "test"

[line]
cd = "01"
idle = "10"
seize = "00"
seize_ack = "11"
answer = "01"
clear_back = "11"
clear_forward = "10"
blocked = "11"

[register]
end_of_dnis = 15

[group_a]
1 = "next_dnis"
3 = "address_complete"
4 = "congestion"
5 = "category_then_ani"

[group_b]
3 = "busy"
4 = "congestion"
6 = "free_charge"

[timers]
seize_ack_ms = 1000
"""


def test_minimal_file_parses():
    v = parse_variant(GOOD, "test.toml")
    assert v.name == "test" and v.timers.seize_ack_ms == 1000 and v.timers.mf_pulse_ms == 150


@pytest.mark.parametrize("old, new, line, key, words", [
    ('answer = "01"', 'answer = "012"', 9, "line.answer", "expected 2 bits"),
    ('answer = "01"', 'answer = "10"', 9, "line.answer", "same A and B bits as idle"),
    ('4 = "congestion"\n5', '4 = "jam"\n5', 20, "group_a.4", "unknown meaning 'jam'"),
    ('6 = "free_charge"', '16 = "free_charge"', 26, "group_b.16", "signal numbers 1..15"),
    ("seize_ack_ms = 1000", "seize_ack_ms = -1", 29, "timers.seize_ack_ms", "milliseconds"),
    ("seize_ack_ms = 1000", "seize_ack = 1000", 29, "timers.seize_ack", "unknown timer"),
    ("end_of_dnis = 15", "end_of_dnis = 5", 15, "register.end_of_dnis", "is a digit"),
    ("end_of_dnis = 15", "ani_request = 'first'", 15, "register.ani_request", "after_dnis"),
    ('3 = "busy"\n', '', 23, "group_b", "no busy signal"),
])
def test_bad_files_name_file_line_and_key(old, new, line, key, words):
    text = GOOD.replace(old, new, 1)
    with pytest.raises(VariantError) as err:
        parse_variant(text, "etc/r2/bad.toml")
    e = err.value
    assert (e.path, e.line, e.key) == ("etc/r2/bad.toml", line, key), str(e)
    assert words in e.message
    assert str(e).startswith(f"etc/r2/bad.toml:{line}: {key}:")


def test_missing_pieces_and_syntax():
    with pytest.raises(VariantError, match=r"bad.toml:\d+: \(syntax\)"):
        parse_variant("[line\n", "bad.toml")
    with pytest.raises(VariantError, match="unknown section"):
        parse_variant(GOOD.replace("[group_a]", "[group_x]"), "bad.toml")
    with pytest.raises(VariantError, match="missing section \\[timers\\]"):
        parse_variant(GOOD.split("[timers]")[0], "bad.toml")
    with pytest.raises(VariantError, match="no signal asks for the category"):
        parse_variant(GOOD.replace('5 = "category_then_ani"', '5 = "next_ani"'), "bad.toml")
    with pytest.raises(VariantError, match="no R2 variant file nowhere.toml"):
        load_variant("nowhere")
