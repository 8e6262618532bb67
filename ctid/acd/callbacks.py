"""ACD callbacks: a waiting caller's place kept by a virtual entry, and its life after.

A caller (or an overflow rule) asks for a call back; the entry keeps the caller's place
in the queue, is offered to an agent like a call (CallbackDue), and once the agent
answers the customer is dialled: connected completes it, a failure is retried after
``callback_retry_s`` in its own place until ``callback_retries`` run out. A mixin of
``Acd`` (router), sharing its state and helpers.
"""
from __future__ import annotations

from .actions import AcdError, CallbackRegistered, CancelOffer, MusicOnHold
from .queue import (CALLBACK, CALLBACK_RETRY, OFFERED, STICKY, WAITING, Call, Queue,
                    callback_step)
from .timers import CB_RETRY as _CB_RETRY


class CallbackMixin:
    def _make_callback(self, call: Call, q: Queue, number: str, now, acts) -> None:
        if call.state == STICKY:
            q.sticky.discard(call.id)
            q.insert(call.key)
        elif call.state == WAITING:
            q.live_waiting -= 1
        else:                               # overflowed at entry: file it now
            q.insert(call.key)
        call.state = CALLBACK
        call.callback = number
        call.cb_key = call.key              # a retry files the entry under this key again
        call.cb_attempts = 0
        call.epoch += 1
        q.stats.callbacks_requested += 1
        q.callbacks_pending += 1
        pos = q.position(call.key)
        self._log(now, q.name, call.id, "", "CALLBACK_REQUESTED", {"number": number, "position": pos})
        if call.moh:
            call.moh = False
            acts.append(MusicOnHold(call.id, q.name, q.cfg.moh or "", False))
        acts.append(CallbackRegistered(call.id, q.name, number, pos, q.ewt_s(pos)))
        self._dispatch(q, now, acts)          # a sticky wait may have idle members about

    def request_callback(self, call_id, number=None, now=None) -> list:
        """The waiting caller wants a call back: their place is kept by a virtual entry."""
        call = self._call(call_id)
        if call.state not in (WAITING, STICKY):
            raise AcdError(f"call {call_id!r} is {call.state}; a callback can be requested only while waiting")
        if number is not None and (not isinstance(number, str) or not number):
            raise AcdError(f"callback number must be a non-empty string, got {number!r}")
        number = number or call.caller
        if not number:
            raise AcdError(f"call {call_id!r}: no number to call back (caller number unknown)")
        if now is None:
            raise AcdError("request_callback needs now")
        now = self._clock(now)
        acts: list = []
        self._make_callback(call, call.queue, number, now, acts)
        return acts

    def callback_connected(self, call_id, now) -> list:
        """The customer answered the call back: the callback is completed."""
        call = self._call(call_id)
        new = callback_step(call, "connected")
        now = self._clock(now)
        q = call.queue
        call.state = new
        q.stats.callbacks_completed += 1
        q.callbacks_pending -= 1
        self._log(now, q.name, call.id, call.agent or "", "CALLBACK_CONNECT",
                  {"number": call.callback, "attempt": call.cb_attempts + 1})
        call.callback = None                # from now on an ordinary connected call
        return []

    def callback_failed(self, call_id, now, reason: str = "") -> list:
        """The customer was not reached (no trunk, dial failed, busy, no answer...).

        The agent is released (wrap-up if they had answered). With attempts left the entry
        waits ``callback_retry_s`` out of the queue, then is filed again under its own key
        (it keeps its place); otherwise it is given up (CALLBACK_ABANDONED).
        """
        call = self._call(call_id)
        callback_step(call, "failed")
        if not isinstance(reason, str):
            raise AcdError(f"callback failure reason must be a string, got {reason!r}")
        now = self._clock(now)
        acts: list = []
        q = call.queue
        cfg = q.cfg
        was, agent_id, offered = call.state, call.agent, call.agents
        call.cb_attempts += 1
        q.stats.callbacks_failed += 1
        self._log(now, q.name, call.id, agent_id or ",".join(offered), "CALLBACK_FAILED",
                  {"reason": reason, "attempt": call.cb_attempts})
        call.agent, call.agents = None, ()
        if call.cb_attempts <= cfg.callback_retries:
            call.state = CALLBACK_RETRY
            call.epoch += 1
            due = now + cfg.callback_retry_s
            self._log(now, q.name, call.id, "", "CALLBACK_RETRY",
                      {"attempt": call.cb_attempts + 1, "due": due})
            self._timer(due, _CB_RETRY, call.id, call.epoch)
        else:
            self._give_up_callback(call, now, "CALLBACK_ABANDONED", {"attempts": call.cb_attempts})
        if was == OFFERED:
            agents = [self.agents[i] for i in offered]
            for a in agents:
                self._set_state(a, "cancel", now, "callback_failed", acts)
                a.offered_call = None
            for a in agents:
                self._after_cancel(a, now, acts)
        elif agent_id is not None and agent_id in self.agents:
            self._end_talk(self.agents[agent_id], q, now, acts)
        return acts

    def callback_retry_due(self, call_id):
        """When the entry ``call_id``, waiting out its pause after a failed attempt, is
        filed again (its live retry timer's due time); None when it is not waiting for a
        retry. Read from the timer heap so that there is one truth, for the state file."""
        call = self.calls.get(call_id)
        if call is None or call.state != CALLBACK_RETRY:
            return None
        dues = [e[0] for e in self._timers
                if e[2] == _CB_RETRY and e[3] == call_id and e[4] == call.epoch]
        return min(dues) if dues else None

    def _give_up_callback(self, call: Call, now, event: str, data: dict) -> None:
        q = call.queue
        q.stats.callbacks_abandoned += 1
        q.callbacks_pending -= 1
        self._log(now, q.name, call.id, "", event, data)
        self._finish(call)

    def _cancel_callback(self, call: Call, now, acts) -> None:
        """A callback entry is withdrawn (its call left the shell): agents ringing for it
        are released, and it counts as abandoned."""
        offered = [self.agents[i] for i in call.agents] if call.state == OFFERED else []
        if call.state != OFFERED:
            callback_step(call, "cancel")
        self._take_out(call)
        call.agents = ()
        self._give_up_callback(call, now, "CALLBACK_CANCELLED", {})
        for a in offered:
            self._set_state(a, "cancel", now, "callback_cancelled", acts)
            a.offered_call = None
            acts.append(CancelOffer(a.id, call.id, "caller_left"))
        for a in offered:
            self._after_cancel(a, now, acts)
