"""Agents' phones as the ACD sees them: use outside the ACD, and the reconciler, for AcdService.

One job: keep the ACD's agent states in step with the phones. A phone on a call the ACD
did not route (a colleague's consultation, a direct extension call, dialling out, a
supervisor's own call) is told to the ACD as it happens (agent_seized / agent_released):
the agent is busy while it lasts and ready after, which the reconciler does not take for
drift; a consulted agent handed the ACD call by TransferCall is busy on it from then.

The reconciler runs every reconcile_every_s against the call model's view of each logged
in agent's phone (idle, ringing, connected), which the cardd link keeps in step with
cardd's channel states.
"""
from __future__ import annotations

import logging

from ctid.acd import AcdError
from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import ConnState

log = logging.getLogger("ctid.acd")


class Phones:
    def __init__(self, svc):
        self.svc = svc               # the AcdService: its ACD, its calls, _apply
        self.seized: set[str] = set()   # agents whose phone is on a call outside the ACD

    def outside_call(self, model: CallModel, ext: str) -> str:
        """The call on `ext` that the ACD did not route (a consultation, a direct extension
        call, dialling out, a supervisor's own call), or "". After such a call the phone
        stays in use until its handset is down (it cannot ring before)."""
        svc = self.svc
        party = model.parties.get(ext)
        if party is None:
            return ""
        cids = [c for c in (party.call_id, party.held_call_id) if c and c in model.calls]
        for cid in cids:
            if cid not in svc.calls and cid not in svc.placing:
                return cid
        if not cids and party.off_hook:
            aid = svc.acd.by_extension.get(ext)
            return svc.acd.agents[aid].seized if aid is not None else ""
        return ""

    def sync(self, model: CallModel, out: Out, events, now: float) -> None:
        """Tell the ACD which agents' phones are in use outside it: busy while they are,
        ready after, never drift for the reconciler. A transfer moves a phone from one call
        to another without an event naming it, hence the agents already seized too."""
        svc = self.svc
        by_ext = svc.acd.by_extension
        agents = {by_ext[e.device] for e in events if e.device in by_ext} | self.seized
        for aid in sorted(agents):
            a = svc.acd.agents[aid]
            cid = self.outside_call(model, a.extension) if a.extension else ""
            try:
                if cid and a.seized != cid:
                    svc._apply(model, out, svc.acd.agent_seized(aid, cid, now), now)
                elif not cid and a.seized:
                    svc._apply(model, out, svc.acd.agent_released(aid, now), now)
            except AcdError as err:
                log.warning("ACD: agent %s phone use (%s) not applied: %s", aid, cid or "idle", err)
            if a.seized:
                self.seized.add(aid)
            else:
                self.seized.discard(aid)

    def channel_states(self, model: CallModel) -> dict[str, str]:
        """Each logged-in agent's phone as the reconciler wants it: idle, ringing, connected."""
        out = {}
        for ext in self.svc.acd.by_extension:
            party = model.parties.get(ext)
            state = "idle"
            if party is not None:
                call = model.calls.get(party.call_id) if party.call_id else None
                conn = call.connection(ext) if call is not None else None
                if party.held_call_id:
                    state = "connected"
                elif conn is not None and conn.state == ConnState.ALERTING:
                    state = "ringing"
                elif conn is not None and conn.state != ConnState.NULL or party.off_hook:
                    state = "connected"
            out[ext] = state
        return out

    def reconcile(self, model: CallModel, out: Out, now: float) -> None:
        """The reconciler's pass: the ACD compares its agents with their phones."""
        svc = self.svc
        svc._apply(model, out, svc.acd.reconcile(self.channel_states(model), now), now)
