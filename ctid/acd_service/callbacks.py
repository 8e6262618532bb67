"""Placing the ACD's callbacks: the caller's release, then the call back on a trunk.

One job, for AcdService: CallbackRegistered -> the caller hears a confirmation (three
beeps) and the line is cleared; CallbackDue -> a new call rings the agent's extension
showing the customer's number; the agent answers -> the ACD holds the entry in its
dialling phase, the number is dialled on the queue's callback_trunk (Originated); the
customer answers (the trunk's Established: the call model bridges) -> callback_connected,
and from then on it is an ordinary queue call (call_ended when it clears).

Not reached -> callback_failed(reason): no callback_trunk, the dial failed (no free
trunk, Failed), the customer's side cleared before answering (busy, rejected), the agent
hung up first, or no answer within the queue's callback_dial_timeout_s (default
DIAL_TIMEOUT_S). The ACD releases the agent (wrap-up)
and, with attempts left (callback_retries), brings the entry back after callback_retry_s
as a new CallbackDue in its old place; otherwise it is given up (CALLBACK_ABANDONED).

Answer means an answer signal from the trunk: PRI and R2 give one, an analog CO line
only with polarity reversal (cardd's answer_on_polarity). On a CO line without it the
customer's answer cannot be told from ringing, so callbacks there end at the dial timeout.
"""
from __future__ import annotations

import dataclasses
import logging
import os

from ctid.acd import AcdError, CallbackDue, CallbackRegistered
from ctid.acd.queue import CONNECTED, DIALLING, OFFERED
from ctid.model.callmodel import CallModel, Out
from ctid.model.calls import ConnState
from hotline_proto import cardd_pb2

log = logging.getLogger("ctid.acd")

CAUSE_NORMAL = 16
CONFIRM_BEEPS = 3                # the callback confirmation (three short beeps)
GOODBYE_LIMIT_S = 30.0           # a confirmation never reported done: clear anyway
DIAL_TIMEOUT_S = 45.0            # default callback_dial_timeout_s: no answer by then, failed


@dataclasses.dataclass
class Placing:
    """A callback being placed: the agent's phone rings, then the customer is dialled."""
    call_id: str                 # the call model's call (agent's extension + trunk)
    entry: str                   # the ACD's callback entry (the original caller's call id)
    agent: str
    device: str                  # the agent's extension
    number: str                  # the customer's number
    trunk_group: str
    attempt: int = 1
    phase: str = "ringing"       # ringing -> dialling -> connected (or failed, done)
    trunk: str = ""              # the trunk channel device dialling the customer
    dial_deadline: float | None = None
    dial_timeout_s: float = DIAL_TIMEOUT_S   # the queue's callback_dial_timeout_s


class Callbacks:
    def __init__(self, svc, dial_timeout_s: float = DIAL_TIMEOUT_S):
        self.svc = svc               # the AcdService: its ACD, settings, audio, offers
        self.dial_timeout_s = dial_timeout_s
        self.placing: dict[str, Placing] = {}      # model call -> callback being placed
        self.entries: set[str] = set()             # released callers' calls (entries live on)

    # ---- the caller's side: confirmation and release ------------------------------------
    def _confirmation(self) -> list[str]:
        audio = self.svc.audio
        if audio is None:
            return []
        from .audio import beeps_pcm, write_wav
        path = os.path.join(audio.directory, "callback-confirm.wav")
        if not os.path.isfile(path):
            os.makedirs(audio.directory, exist_ok=True)
            write_wav(path, beeps_pcm(CONFIRM_BEEPS, 0))
        return [path]

    def registered(self, model: CallModel, out: Out, a: CallbackRegistered, now: float) -> None:
        """The caller's place is kept as a callback: confirm, then release their line."""
        svc = self.svc
        self.entries.add(a.call)
        st = svc.calls.get(a.call)
        call = model.calls.get(a.call)
        if st is None or call is None:
            return
        svc._leave_queue(model, call, a.queue, now)
        model.event(out, "CallbackRegistered", call, now, device=f"queue:{a.queue}",
                    reason=f"callback to {a.number}, position {a.position}",
                    data={"callback_number": a.number, "queue_position": str(a.position),
                          "queue_ewt_s": str(a.ewt_s)})
        call.outcome = "callback"
        st.leaving, st.callback, st.music = True, True, False
        caller = model.devices.get(st.caller)
        if caller is not None and call.connection(caller.id) is not None \
                and call.connection(caller.id).state != ConnState.NULL:
            model.command(out, caller, stop_media=cardd_pb2.StopMedia())
            files = self._confirmation()
            st.prompt = 0
            if files:
                # the confirmation's PromptDone (its id) ends the call; the music's, stopped,
                # is stale
                svc._play(model, out, st, files)
                st.hangup_at = now + GOODBYE_LIMIT_S
                return
        st.hangup_at = now

    # ---- the call back --------------------------------------------------------------------
    def due(self, model: CallModel, out: Out, a: CallbackDue, now: float) -> list:
        """The entry reached an agent: ring their extension (the ACD reserved them)."""
        svc = self.svc
        trunk = svc.settings.callbacks.get(a.queue, ("", ""))[1]
        dev = model.devices.get(a.extension)
        if not trunk:
            log.error("queue %s: callback to %s is due but the queue has no callback_trunk",
                      a.queue, a.number)
            return svc.acd.callback_failed(a.call, now, "no callback_trunk")
        call = model.new_call(now, calling=dev.number if dev else "", called=a.number)
        call.data.update({"callback": a.call, "callback_number": a.number, "queue": a.queue,
                          "agent": a.agent, "callback_attempt": str(a.attempt)})
        ev = model.ring(out, call, dev, now, caller_id=a.number) if dev is not None else None
        if ev is None:
            del model.calls[call.id]
            log.info("agent %s: %s cannot ring for a callback: ring no answer",
                     a.agent, a.extension)
            return svc.acd.agent_no_answer(a.agent, a.call, now)
        ev.agent = a.agent
        timeout = svc.settings.callback_dial_timeout_s.get(a.queue, self.dial_timeout_s)
        self.placing[call.id] = Placing(call.id, a.call, a.agent, dev.id, a.number, trunk,
                                        a.attempt, dial_timeout_s=timeout)
        from .service import Offer
        svc.offers[a.agent] = Offer(a.agent, call.id, dev.id)     # RONA stops the ringing
        return svc.acd.agent_ringing(a.agent, a.call, now)

    def _entry_in(self, pl: Placing, *states: str) -> bool:
        """Is the ACD's entry still in this attempt, in one of `states`? (A late event of
        an earlier attempt must not touch a retry.)"""
        entry = self.svc.acd.calls.get(pl.entry)
        return entry is not None and entry.state in states and \
            (entry.state == CONNECTED or entry.cb_attempts + 1 == pl.attempt)

    def event(self, model: CallModel, out: Out, e, now: float) -> None:
        """A CSTA event on a callback call (the agent's extension, then the trunk)."""
        svc = self.svc
        pl = self.placing[e.call_id]
        call = model.calls.get(pl.call_id)
        if e.name == "Established" and e.device == pl.device and pl.phase == "ringing":
            self._stop_offer(pl)
            pl.phase = "dialling"
            svc._apply(model, out, svc.acd.agent_answered(pl.agent, pl.entry, now), now)
            if call is None:
                return
            agent_dev = model.devices[pl.device]
            pl.dial_deadline = now + pl.dial_timeout_s
            model.event(out, "Originated", call, now, device=pl.device, agent=pl.agent)
            model.deliver(out, call, agent_dev, f"trunk:{pl.trunk_group}", pl.number, now,
                          caller_id=agent_dev.number)
            pl.trunk = call.data.get("trunk", "")
        elif e.name == "Established" and pl.phase == "dialling" and e.device \
                and e.device == pl.trunk:
            pl.phase = "connected"      # the customer answered: the model bridged
            pl.dial_deadline = None
            if self._entry_in(pl, DIALLING):
                svc._apply(model, out, svc.acd.callback_connected(pl.entry, now), now)
        elif e.name == "Failed" and pl.phase == "dialling":
            self._failed(model, out, pl, now, f"dial failed: {e.cause or e.reason}")
        elif e.name == "ConnectionCleared":
            if e.device == pl.device and pl.phase == "ringing":
                self._stop_offer(pl)
                a = svc.acd.agents.get(pl.agent)
                if a is not None and a.offered_call == pl.entry:
                    svc._apply(model, out, svc.acd.agent_no_answer(pl.agent, pl.entry, now), now)
                pl.phase = "done"
            elif e.device == pl.trunk and pl.phase == "dialling":
                self._failed(model, out, pl, now,
                             f"the customer's line cleared ({e.cause or 'before answer'})")
            elif e.device == pl.device and pl.phase == "dialling":
                self._failed(model, out, pl, now, "the agent hung up before the customer answered")
            if call is not None and pl.phase != "connected":
                model.clear_call(out, call, CAUSE_NORMAL, now)
        elif e.name == "CallCleared":
            del self.placing[pl.call_id]
            self._stop_offer(pl)
            a = svc.acd.agents.get(pl.agent)
            if pl.phase == "ringing":
                if a is not None and a.offered_call == pl.entry and self._entry_in(pl, OFFERED):
                    svc._apply(model, out, svc.acd.agent_no_answer(pl.agent, pl.entry, now), now)
            elif pl.phase == "connected":
                if self._entry_in(pl, CONNECTED):
                    svc._apply(model, out, svc.acd.call_ended(pl.entry, now), now)
            elif pl.phase == "dialling":
                self._failed(model, out, pl, now, "cleared before the customer answered")

    def tick(self, model: CallModel, out: Out, now: float) -> None:
        """The dial timeout: the customer did not answer in time."""
        for pl in [p for p in self.placing.values() if p.phase == "dialling"
                   and p.dial_deadline is not None and now >= p.dial_deadline]:
            self._failed(model, out, pl, now, f"no answer in {pl.dial_timeout_s:g} s")
            call = model.calls.get(pl.call_id)
            if call is not None:
                model.clear_call(out, call, CAUSE_NORMAL, now)

    def _stop_offer(self, pl: Placing) -> None:
        offers = self.svc.offers
        offer = offers.get(pl.agent)
        if offer is not None and offer.call_id == pl.call_id:
            del offers[pl.agent]

    def _failed(self, model, out, pl: Placing, now: float, why: str) -> None:
        log.info("callback %s to %s (attempt %d) by agent %s failed: %s", pl.entry, pl.number,
                 pl.attempt, pl.agent, why)
        pl.phase = "failed"
        pl.dial_deadline = None
        if self._entry_in(pl, DIALLING, OFFERED):
            try:
                acts = self.svc.acd.callback_failed(pl.entry, now, why)
            except AcdError as e:
                log.warning("callback %s: %s", pl.entry, e)
                return
            self.svc._apply(model, out, acts, now)
