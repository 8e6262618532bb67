"""ACD agents' phones as they really are: calls outside the ACD and the reconciler.

``agent_seized``/``agent_released`` follow a phone busy on a call the ACD did not route
(a consultation, a direct extension call); ``reconcile`` corrects agents whose state
contradicts their channel (a missed answer, hang-up or release). A mixin of ``Acd``
(router), sharing its state and helpers.
"""
from __future__ import annotations

from . import agent as ag
from .actions import AcdError, AgentStateCorrected, CancelOffer, ident
from .agent import (AFTER_CALL_WORK, BUSY, LOGGED_OFF, OFFERED as AG_OFFERED, ON_CALL,
                    READY, Agent)

CHANNEL_STATES = ("idle", "ringing", "connected")


class ReconcilerMixin:
    # ------------------------------------------------ phone use outside the ACD
    def agent_seized(self, agent_id, call_id, now) -> list:
        """The agent's phone is on a call the ACD did not route (a consultation from a
        colleague, a direct extension call, dialling out). A ready agent becomes busy
        until agent_released; in any other state it is remembered, so that becoming
        ready meanwhile means busy rather than an offer the phone cannot take. The
        reconciler does not count this busy as drift."""
        a = self._agent(agent_id)
        ident(call_id, "call id")
        if call_id in self.calls:
            raise AcdError(f"call {call_id!r} is an ACD call, not a call outside the ACD")
        now = self._clock(now)
        acts: list = []
        if a.state == LOGGED_OFF:
            return acts
        a.seized = call_id
        if a.state == READY:
            self._set_state(a, "seize", now, "phone in use", acts)
            a.talk_mark = a.talk_s
        return acts

    def agent_released(self, agent_id, now) -> list:
        """The call outside the ACD left the agent's phone: busy on it -> ready (or the
        not ready asked meanwhile); no wrap-up, it was not a queue's call."""
        a = self._agent(agent_id)
        now = self._clock(now)
        acts: list = []
        if not a.seized:
            return acts
        a.seized = ""
        if a.state == BUSY and a.call is None:
            self._free_again(a, "release", "release_not_ready", now, acts)
        return acts

    # ------------------------------------------------------------- reconciler
    def reconcile(self, channel_states: dict, now) -> list:
        """Correct agents whose state contradicts their real channel.

        ``channel_states``: {extension: "idle" | "ringing" | "connected"}. Only states
        older than ``reconcile_grace_s`` are corrected (a fresh offer may not ring yet).
          reserved/ringing + idle       -> offer withdrawn, agent ready, call to the head
          reserved/ringing + connected  -> the answer was missed: busy
          busy/on_hold + idle           -> the hang-up was missed: wrap-up as usual
          ready + ringing/connected     -> the phone is in use outside the ACD: busy
        A phone the shell reported seized (agent_seized) is not drift while it is in
        use; seen idle, the release was missed and the agent is corrected as above.
        """
        if not isinstance(channel_states, dict):
            raise AcdError("channel_states must be a dict {extension: state}")
        bad = {e: s for e, s in channel_states.items() if s not in CHANNEL_STATES}
        if bad:
            raise AcdError(f"unknown channel states {bad}; expected one of {CHANNEL_STATES}")
        now = self._clock(now)
        acts: list = []
        grace = self.cfg.reconcile_grace_s
        for ext in sorted(channel_states):
            ch = channel_states[ext]
            aid = self.by_extension.get(ext)
            if aid is None:
                continue
            a = self.agents[aid]
            if now - a.since < grace:
                continue
            if ch == "idle" and a.seized:
                a.seized = ""            # its release was missed; corrected below if busy
            old = a.state
            if old in AG_OFFERED and ch == "idle":
                call = self.calls.get(a.offered_call)
                self._correct(a, ext, ch, "cancel", now, acts)
                a.offered_call = None
                if call is not None:
                    call.agents = tuple(i for i in call.agents if i != a.id)
                    acts.append(CancelOffer(a.id, call.id, "reconciled"))
                    if not call.agents:
                        self._requeue_front(call, now, acts)
                        self._dispatch(call.queue, now, acts)
                if a.state == READY:
                    self._after_cancel(a, now, acts)
            elif old in AG_OFFERED and ch == "connected":
                call = self.calls.get(a.offered_call)
                if call is not None:
                    self._noted(a, ext, ch, BUSY, call.queue.name, call.id, now, acts)
                    acts.extend(self.agent_answered(a.id, call.id, now))
            elif old in ON_CALL and ch == "idle":
                call = self.calls.get(a.call)
                if call is not None:
                    self._noted(a, ext, ch, AFTER_CALL_WORK, call.queue.name, call.id, now, acts)
                    acts.extend(self.call_ended(call.id, now))
                else:                        # an untracked call: no queue, no wrap-up
                    self._correct(a, ext, ch, "end", now, acts)
                    self._finish_wrapup(a, now, acts)
            elif old == READY and ch in ("ringing", "connected"):
                self._correct(a, ext, ch, "seize", now, acts)
                a.talk_mark = a.talk_s
        return acts

    def _correct(self, a: Agent, ext, ch, event, now, acts) -> None:
        new = ag.check(a.id, a.state, event)
        self._noted(a, ext, ch, new, "", a.offered_call or a.call or "", now, acts)
        self._set_state(a, event, now, "reconciled", acts)

    def _noted(self, a: Agent, ext, ch, new, queue, call_id, now, acts) -> None:
        """A correction of ``a`` to ``new`` (``ch``: what their channel showed), told and logged."""
        acts.append(AgentStateCorrected(a.id, ext, ch, a.state, new))
        self._log(now, queue, call_id, a.id, "CORRECTION",
                  {"channel": ch, "from": a.state, "to": new})
