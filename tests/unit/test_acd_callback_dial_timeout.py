"""[[queue]] callback_dial_timeout_s: read and checked from ctid.toml, and the service ends
a dialled callback the customer has not answered after that queue's own timeout."""
import pytest

from ctid.acd import QueueConfig
from ctid.acd_service import callbacks as cb_module
from ctid.config import ConfigError, parse_ctid_config
from hotline_proto import cardd_pb2

from test_acd_callbacks import CONFIG
from test_acd_service import Bench, cmds, names


def test_ctid_toml_reads_the_dial_timeout_per_queue_with_a_default(tmp_path):
    cfg = parse_ctid_config(CONFIG.format(run=tmp_path), "ctid.toml")
    assert cfg.acd.callback_dial_timeout_s == {"hotline": 45.0} == {"hotline": cb_module.DIAL_TIMEOUT_S}
    cfg = parse_ctid_config(CONFIG.format(run=tmp_path) + "callback_dial_timeout_s = 20\n",
                            "ctid.toml")
    assert cfg.acd.callback_dial_timeout_s == {"hotline": 20.0}


@pytest.mark.parametrize("value", ["0", "-5", '"long"'])
def test_a_bad_dial_timeout_is_named_at_its_line(tmp_path, value):
    text = CONFIG.format(run=tmp_path) + f"callback_dial_timeout_s = {value}\n"
    with pytest.raises(ConfigError) as e:
        parse_ctid_config(text, "ctid.toml")
    line = text.splitlines().index(f"callback_dial_timeout_s = {value}") + 1
    (where,) = [p.where() for p in e.value.problems]
    assert where.startswith(f"ctid.toml:{line}: queue[0].callback_dial_timeout_s:")


def test_service_fails_the_attempt_after_the_queues_own_dial_timeout(tmp_path):
    q = QueueConfig("hotline", members=("1001",), announce_first_s=None, callback_retries=0)
    b = Bench(tmp_path, queues=[q], callbacks={"hotline": ("1", "co")},
              callback_dial_timeout_s={"hotline": 12.0})
    b.agent(1, "1001", "not_ready")
    b.records = []
    b.svc.writer = b.records.append
    b.incoming(2, "13800138000")
    b.ev(6, 5, digit=cardd_pb2.Digit(digit="1"))
    b.ev(7, 5, prompt_done=cardd_pb2.PromptDone(interrupted=True))
    b.ev(8, 5, prompt_done=cardd_pb2.PromptDone())     # confirmed, released
    b.agent(30, "1001", "ready")
    out = b.answer(33, 1)                              # the agent answers: the customer is dialled
    assert (5, "dial") in cmds(out)
    assert "CallCleared" not in names(b.tick(44.9))    # still ringing the customer
    out = b.tick(45)                                   # 33 + 12
    assert "CallCleared" in names(out) and (5, "hangup") in cmds(out)
    (failed,) = [r for r in b.records if r.event == "CALLBACK_FAILED"]
    assert failed.data["reason"] == "no answer in 12 s"
