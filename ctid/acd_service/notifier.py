"""ACD actions as CTI events.

CSTA names (ECMA-269 agent state events and the Queued event), with the ACD's precise
state in `agent_state`:

  logged_off -> anything       AgentLoggedOn          anything -> logged_off  AgentLoggedOff
  -> ready                     AgentReady             -> not_ready            AgentNotReady
  -> reserved, ringing, busy,  AgentBusy              -> after_call_work      AgentWorkingAfterCall
     on_hold

A waiting call: Queued (device "queue:NAME", the call's connections, its attached data
plus queue_position and expected_wait_s). A call moved to another queue or out of the ACD
by an overflow: Diverted (device the queue it left, reason). Live figures of a queue:
QueueStatistics (device "queue:NAME", the figures in `data` as text; empty text where a
figure is not defined yet, such as the service level before any call left the queue).
"""
from __future__ import annotations

from ctid.acd import AgentStateChanged, QueueFigures
from ctid.acd.agent import AFTER_CALL_WORK, LOGGED_OFF, NOT_READY, READY
from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import Call
from hotline_proto import cti_pb2


def agent_event_name(old: str, new: str) -> str:
    if old == LOGGED_OFF:
        return "AgentLoggedOn"
    if new == LOGGED_OFF:
        return "AgentLoggedOff"
    if new == READY:
        return "AgentReady"
    if new == NOT_READY:
        return "AgentNotReady"
    if new == AFTER_CALL_WORK:
        return "AgentWorkingAfterCall"
    return "AgentBusy"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"
    return str(value)


def figures_data(f: QueueFigures) -> dict[str, str]:
    data = {"waiting": f.waiting, "callbacks_waiting": f.callbacks_waiting,
            "longest_wait_s": f.longest_wait_s, "staffed": f.staffed, "offered": f.offered,
            "answered": f.answered, "answered_within_sl": f.answered_within_sl,
            "abandoned": f.abandoned, "overflowed": f.overflowed, "timed_out": f.timed_out,
            "service_level": f.service_level, "sl_threshold_s": f.sl_threshold_s,
            "asa_s": f.asa_s, "abandon_rate": f.abandon_rate, "aht_s": f.aht_s,
            "callbacks_requested": f.callbacks_requested,
            "callbacks_completed": f.callbacks_completed,
            "callbacks_failed": f.callbacks_failed, "callbacks_abandoned": f.callbacks_abandoned,
            "callbacks_pending": f.callbacks_pending}
    data.update({f"agents.{state}": n for state, n in f.agents.items()})
    return {k: _text(v) for k, v in data.items()}


class Notifier:
    def __init__(self, model: CallModel):
        self.model = model

    def agent_state(self, out: Out, act: AgentStateChanged, device: str, call_id: str,
                    now: float) -> cti_pb2.Event:
        e = self.model.event(out, agent_event_name(act.old, act.new), None, now, device=device,
                             agent=act.agent, agent_state=act.new, reason=act.reason)
        if call_id:
            e.call_id = call_id
        return e

    def queued(self, out: Out, call: Call, queue: str, position: int, ewt_s: int,
               now: float) -> cti_pb2.Event:
        e = self.model.event(out, "Queued", call, now, device=f"queue:{queue}")
        e.data["queue_position"] = str(position)
        e.data["expected_wait_s"] = str(ewt_s)
        return e

    def diverted(self, out: Out, call: Call | None, queue: str, reason: str,
                 now: float) -> cti_pb2.Event:
        return self.model.event(out, "Diverted", call, now, device=f"queue:{queue}", reason=reason)

    def queue_statistics(self, out: Out, f: QueueFigures) -> cti_pb2.Event:
        return self.model.event(out, "QueueStatistics", None, f.time, device=f"queue:{f.queue}",
                                data=figures_data(f))
