"""Flow loading and validation: the shipped flows pass; every problem names the file,
the line and the node."""
import textwrap
from pathlib import Path

import pytest

from ivr.flow import FlowError, FlowSet, load_flow
from ivr.validate import check_paths, load_checked, validate

ETC = Path(__file__).resolve().parents[2] / "etc" / "ivr"

HEAD = """\
flow: t
start: a
prompts:
  hi: {zh: 你好}
nodes:
"""


def write(tmp_path, body, name="t.yaml", head=HEAD):
    p = tmp_path / name
    p.write_text(head + textwrap.indent(textwrap.dedent(body), "  "), encoding="utf-8")
    return p


def load_errors(path):
    with pytest.raises(FlowError) as e:
        load_flow(path)
    return [str(i) for i in e.value.issues]


def check(path):
    return [str(i) for i in validate(load_flow(path))]


def test_shipped_flows_load_and_validate():
    assert check_paths([ETC]) == []
    flows = load_checked([ETC])
    assert set(flows.flows) == {"gov12345", "bill170", "fault112"}
    gov = flows["gov12345"]
    assert gov.languages == ["zh", "en"] and gov.language == "zh"
    assert "13900000000" in gov.lists["blacklist"]
    assert gov.nodes["main"].exits == {"on_fail": "to_operator", "1": "consult", "2": "complaint",
                                       "3": "ask_case", "0": "operator"}


def test_minimal_flow(tmp_path):
    p = write(tmp_path, """\
      a: {type: play, prompt: hi, next: b}
      b: {type: hangup}
    """)
    assert check(p) == []


def test_unknown_node_type_and_key(tmp_path):
    p = write(tmp_path, """\
      a: {type: play, prompt: hi, next: b}
      b:
        type: hangupp
      c:
        type: menu
        prompt: hi
        optons: {"1": a}
        on_fail: a
    """)
    errs = load_errors(p)
    assert f"{p}:8: node 'b': unknown node type 'hangupp'" in errs[0]
    assert any(e.startswith(f"{p}:12: node 'c': unknown key 'optons' for a menu node") for e in errs)
    assert any(e.startswith(f"{p}:9: node 'c': missing key 'options'") for e in errs)


def test_unknown_target_node(tmp_path):
    p = write(tmp_path, """\
      a:
        type: play
        prompt: hi
        next: nowhere
    """)
    assert check(p) == [f"{p}:9: node 'a': next goes to unknown node 'nowhere'",
                        f"{p}:6: node 'a': dead end: no path from here reaches a queue, "
                        f"transfer, hangup or return"]


def test_unreachable_node(tmp_path):
    p = write(tmp_path, """\
      a: {type: hangup}
      orphan: {type: play, prompt: hi, next: a}
    """)
    assert check(p) == [f"{p}:7: node 'orphan': unreachable: no path from the start leads here"]


def test_missing_prompt_and_language_and_file(tmp_path):
    p = write(tmp_path, """\
      a: {type: play, prompt: [hi, bye], next: b}
      b: {type: play, prompt: {file: missing.wav}, next: c}
      c: {type: hangup, prompt: hi}
    """, head=HEAD.replace("start: a", "start: a\nlanguages: [zh, en]"))
    assert check(p) == [
        f"{p}:7: node 'a': prompt 'hi' has no en version",
        f"{p}:7: node 'a': missing prompt 'bye'",
        f"{p}:8: node 'b': missing prompt file {tmp_path / 'missing.wav'}",
        f"{p}:9: node 'c': prompt 'hi' has no en version",
    ]


def test_loop_with_no_exit(tmp_path):
    p = write(tmp_path, """\
      a: {type: play, prompt: hi, next: m}
      m:
        type: menu
        prompt: hi
        options: {"1": a, "2": x}
        on_fail: m
      x: {type: play, prompt: hi, next: a}
    """)
    assert check(p) == [f"{p}:6: node 'a': loop with no exit: a -> m -> x never reaches "
                        f"a queue, transfer, hangup or return"]


def test_loop_of_branches_spins(tmp_path):
    p = write(tmp_path, """\
      a:
        type: branch
        cases: [{if: {var: ani, eq: "1"}, goto: b}]
        else: c
      b: {type: goto, to: a}
      c: {type: hangup}
    """)
    assert check(p) == [f"{p}:6: node 'a': loop of branch/goto nodes (a -> b) would spin "
                        f"with the caller hearing nothing"]


def test_bad_option_keys(tmp_path):
    p = write(tmp_path, """\
      a:
        type: menu
        prompt: hi
        options:
          "12": b
          x: b
          "1": b
          "#": b
        repeat_key: "#"
        on_fail: b
      b: {type: hangup}
    """)
    errs = load_errors(p)
    assert errs == [f"{p}:10: node 'a': bad option key '12': a key is one of 0-9, * or # (quote * and #)",
                    f"{p}:11: node 'a': bad option key 'x': a key is one of 0-9, * or # (quote * and #)"]


def test_repeat_key_clash_and_too_many_options(tmp_path):
    opts = "\n".join(f'          "{k}": b' for k in "0123456789*")
    p = write(tmp_path, f"""\
      a:
        type: menu
        prompt: hi
        options:
{opts}
        on_fail: b
      b: {{type: hangup}}
    """)
    assert load_errors(p) == [f"{p}:9: node 'a': a menu has at most 10 options, this one has 11"]
    p = write(tmp_path, """\
      a:
        type: menu
        prompt: hi
        options: {"1": b, "*": b}
        repeat_key: "*"
        on_fail: b
      b: {type: hangup}
    """)
    assert check(p) == [f"{p}:10: node 'a': repeat_key '*' is also an option key"]


def test_duplicate_key_and_yaml_syntax(tmp_path):
    p = write(tmp_path, """\
      a: {type: hangup}
      a: {type: hangup}
    """)
    assert load_errors(p) == [f"{p}:7: duplicate key 'a'"]
    p = write(tmp_path, """\
      a:
        type: menu
        prompt: hi
        options: {1: b, *: b}
        on_fail: b
      b: {type: hangup}
    """)
    (err,) = load_errors(p)
    assert err.startswith(f"{p}:9: YAML syntax") and "quote the keys * and #" in err


def test_references_to_undefined_things(tmp_path):
    p = write(tmp_path, """\
      a:
        type: branch
        cases:
          - if: {open: office}
            goto: b
          - if: {in_list: vip}
            goto: b
          - if: {var: colour, eq: red}
            goto: b
        else: l
      l:
        type: lookup
        source: crm
        sql: "SELECT 1"
        next: b
        fallback: b
      b: {type: play, prompt: {say: "${nme}"}, next: c}
      c: {type: subflow, flow: helper, next: d}
      d: {type: hangup}
    """)
    flows = FlowSet([load_flow(p)])
    assert [str(i) for i in validate(flows["t"], flows)] == [
        f"{p}:9: node 'a': unknown calendar 'office'",
        f"{p}:11: node 'a': unknown list 'vip'",
        f"{p}:13: node 'a': variable 'colour' is never set",
        f"{p}:18: node 'l': unknown source 'crm' (define it under sources:)",
        f"{p}:22: node 'b': variable 'nme' is never set (declare it under vars:)",
        f"{p}:23: node 'c': unknown flow 'helper'",
    ]


def test_wrong_types_and_sql_substitution(tmp_path):
    p = write(tmp_path, """\
      a:
        type: collect
        prompt: hi
        var: x
        min: 5
        max: 2
        timeout: fast
        next: b
        on_fail: b
      b:
        type: lookup
        source: db
        sql: "SELECT * FROM t WHERE a = '${x}'"
        next: c
        fallback: c
      c: {type: hangup, cause: 999}
    """)
    assert load_errors(p) == [
        f"{p}:12: node 'a': timeout: must be a number, got 'fast'",
        f"{p}:10: node 'a': min (5) is more than max (2)",
        f"{p}:18: node 'b': sql: SQL takes :name parameters (from params:), never ${{...}} "
        f"text substitution",
        f"{p}:21: node 'c': cause: 999 is out of range 1..127",
    ]


def test_check_paths_reports_every_file(tmp_path):
    good = write(tmp_path, "  a: {type: hangup}\n", name="good.yaml")
    bad = write(tmp_path, "  a: {type: play, prompt: nope, next: a}\n", name="bad.yaml",
                head=HEAD.replace("flow: t", "flow: t2"))
    errors = check_paths([tmp_path])
    assert errors == [f"{bad}:6: node 'a': loop with no exit: a never reaches a queue, "
                      f"transfer, hangup or return",
                      f"{bad}:6: node 'a': missing prompt 'nope'"]
    assert check_paths([good]) == []
    dup = write(tmp_path, "  a: {type: hangup}\n", name="dup.yaml")
    assert any("flow name 't' is already used by" in e for e in check_paths([good, dup]))
