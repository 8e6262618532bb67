"""Transfers of ACD calls, and agents' consultations of a queue, for AcdService.

One job: carry the call model's transfers out in the ACD.
- An agent's transfer to another extension (Transferred on the agent's phone) ->
  call_transferred: the receiving agent, found by extension, is busy on the call (the
  ACD keeps the wrap-up rules); to anyone else the call leaves the ACD.
- An agent's blind transfer to a queue (SingleStepTransfer to queue:NAME, or to a number
  routed to one) -> call_transferred(to_queue): the agent wraps up, the caller (same
  caller, priority and data) waits there with music as a routed call does; a call the
  ACD does not see connected simply arrives in the queue anew.
- An agent consulting a queue (ConsultationCall to queue:NAME or a number routed to
  one): the caller is held, the consultation leg waits in the queue as a caller does.
  TransferCall (the leg answered, or still waiting: a "blind after consult") -> the
  model keeps the consultation's call with the caller in it (the queue entry and its
  position, the answering agent busy on it), the consulting agent's ACD call ends in
  TRANSFER (wrap-up) and the entry logs TRANSFER_IN (from_call, from_queue, from_agent).
  ClearConnection of the leg before an answer -> WITHDRAWN (not an abandon).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ctid.acd import AcdError
from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import Call, ConnState

if TYPE_CHECKING:
    from .service import QueuedCall

log = logging.getLogger("ctid.acd")


class Transfers:
    def __init__(self, svc):
        self.svc = svc               # the AcdService: its ACD, its calls, _apply

    def transferred(self, model: CallModel, out: Out, st: QueuedCall, e, now: float) -> None:
        """The agent on `st` transferred it (Transferred on their phone)."""
        svc = self.svc
        call = model.calls.get(st.call_id)
        if call is None:
            return
        parties = [d for d, c in call.connections.items()
                   if c.state != ConnState.NULL and d not in (st.caller, e.device)
                   and model.devices[d].channel is not None]
        to_dev = next((d for d in parties if d in svc.acd.by_extension), None)
        to_agent = svc.acd.by_extension.get(to_dev) if to_dev else None
        try:
            acts = svc.acd.call_transferred(st.call_id, now, to_agent=to_agent)
        except AcdError as err:             # e.g. the receiving agent's state forbids it
            log.warning("call %s: transfer to agent %s not tracked by the ACD: %s",
                        st.call_id, to_agent, err)
            to_agent = None
            acts = svc.acd.call_transferred(st.call_id, now)
        if to_agent is not None:
            st.agent, st.agent_device = to_agent, to_dev
        else:
            svc.calls.pop(st.call_id, None)     # the call left the ACD
        svc._apply(model, out, acts, now)

    def transfer_in(self, model: CallModel, out: Out, call: Call, st: QueuedCall, queue: str,
                    now: float) -> None:
        """The agent on an ACD call transferred it to queue:NAME (SingleStepTransfer): the
        ACD keeps the call (caller, priority, data), the agent wraps up, the caller waits
        in the new queue with its music as a routed call does."""
        svc = self.svc
        now = svc._now(now)
        try:
            acts = svc.acd.call_transferred(call.id, now, to_queue=queue)
        except AcdError as e:   # the ACD does not see it connected: end it there, queue anew
            log.warning("call %s: transfer to queue %s taken as a new arrival: %s", call.id, queue, e)
            svc.calls.pop(call.id, None)
            if call.id in svc.acd.calls:
                svc._apply(model, out, svc.acd.call_ended(call.id, now), now)
            svc.enqueue(model, out, call, model.devices[st.caller], queue, now,
                        svc._priority(call))
            return
        st.queue, st.agent, st.agent_device = queue, "", ""
        # The music stopped on answer may report done after a quick transfer: its id is not
        # the new queue's music's, so that late PromptDone is stale (taken for the new
        # music's end, it would restart it, and each restart's replacement again: the caller
        # would hear the first blocks, on a loop).
        st.music = False
        call.data["queue"] = queue
        svc._queue_up(model, out, call, st, acts, now)

    def consult_transferred(self, model: CallModel, out: Out, st: QueuedCall, e,
                            now: float) -> None:
        """TransferCall of an agent's consultation of a queue: the held caller took the
        consultation's place (the model kept its call: the queue's entry, its position,
        an agent ringing or talking). The transferring agent's ACD call ends in a
        TRANSFER (their wrap-up); TRANSFER_IN on the entry names where the caller came
        from."""
        svc = self.svc
        old = e.secondary_call_id
        call = model.calls.get(st.call_id)
        prev = svc.calls.pop(old, None)
        data = {"from_call": old, "consultation_by": e.device}
        entry = svc.acd.calls.get(old)
        if entry is not None:
            data.update(from_queue=entry.queue.name, from_agent=entry.agent or "")
            try:
                acts = svc.acd.call_transferred(old, now)
            except AcdError as err:     # not connected there: it simply leaves the ACD
                log.warning("call %s: transfer into %s: %s", old, st.call_id, err)
                acts = svc.acd.call_ended(old, now)
            svc._apply(model, out, acts, now)
        caller = next((d for d, c in call.connections.items() if c.state != ConnState.NULL
                       and d != st.agent_device and model.devices[d].channel is not None),
                      None) if call is not None else None
        st.caller = caller or (prev.caller if prev is not None else st.caller)
        st.answering = False
        mine = svc.acd.calls.get(st.call_id)
        if mine is not None and call is not None:
            mine.caller = call.calling          # sticky agents and callbacks: the caller's
        data["caller"] = call.calling if call is not None else ""
        svc.acd.log.append(now, st.queue, st.call_id, st.agent, "TRANSFER_IN", data)
        # The music so far played on the consulting agent's phone, and the caller's own
        # (stopped on answer) has ended: whatever they report is stale; music starts anew.
        st.prompt = 0
        if not st.agent and st.music:
            svc._play_music(model, out, st)

    def withdraw(self, model: CallModel, out: Out, cid: str, now: float, reason: str) -> None:
        """A consultation leg taken back from its queue before an agent answered: out of
        the queue like an abandon (offers cancelled), logged WITHDRAWN, no abandon counted."""
        svc = self.svc
        try:
            acts = svc.acd.call_withdrawn(cid, now, reason)
        except AcdError as err:     # the ACD has it connected after all: it ends there
            log.warning("call %s: not withdrawn: %s", cid, err)
            acts = svc.acd.call_abandoned(cid, now)
        svc._apply(model, out, acts, now)
