"""ACD state put back after a ctid restart: agents, callback entries, waiting callers.

Each entry rebuilds what the state file saved (agents logged in as they were, entries
and callers keyed by their original times so they keep their places) and logs it as
restored; a caller whose line did not survive is counted as an abandon. A mixin of
``Acd`` (router), sharing its state and helpers.
"""
from __future__ import annotations

from .actions import AcdError, CallbackRegistered, ident
from .agent import NOT_READY, READY
from .priority import queue_key
from .queue import CALLBACK, CALLBACK_RETRY, Call
from .timers import CB_RETRY as _CB_RETRY


class RestoreMixin:
    def restore_agent(self, agent_id, extension, now, state=READY, reason: str = "",
                      softphone: bool = False) -> list:
        """Log an agent back in as saved before a restart: ready, or not ready with the
        saved reason. Noted "restored" (reason of the login, and of ready)."""
        a = self._agent(agent_id)
        ident(extension, "extension")
        if state not in (READY, NOT_READY):
            raise AcdError(f"agent {agent_id!r}: a restored state is ready or not_ready, got {state!r}")
        if state == NOT_READY:
            ident(reason, "not-ready reason")
        self._check_seat(a, extension)
        now = self._clock(now)
        acts: list = []
        self._seat(a, extension, softphone, now, "restored", acts, restored=True)
        if state == READY:
            self._set_state(a, "ready", now, "restored", acts)
            self._agent_available(a, now, acts)
        else:
            self._set_state(a, "not_ready", now, reason, acts)
        return acts

    def restore_callback(self, call_id, queue, number, caller, level, entered, now, *,
                         arrived=None, pclass: str = "", data=None, front: bool = False,
                         attempts: int = 0, retry_due=None) -> list:
        """File a callback entry saved before a restart, keyed by its original times so it
        keeps its place (``front``: it was at the head, e.g. ringing an agent). Logged as
        CALLBACK_RESTORED; CallbackRegistered follows (the caller is gone: no confirmation).
        ``retry_due``: it was waiting out its pause after a failed attempt until then; if
        that is still ahead it waits on (CALLBACK_RETRY, out of the list, its retry timer
        re-armed for the rest), else it is filed at once, as the timer would have done."""
        if retry_due is not None and (isinstance(retry_due, bool) or not isinstance(
                retry_due, (int, float)) or retry_due != retry_due):
            raise AcdError(f"callback {call_id!r}: retry due time must be a number, got {retry_due!r}")
        if isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 0:
            raise AcdError(f"callback {call_id!r}: attempts must be a whole number >= 0, got {attempts!r}")
        q, call, key, now = self._rebuilt(call_id, queue, caller, level, entered, now,
                                          arrived, pclass, data, front, True, number)
        waits = retry_due is not None and retry_due > now
        call.state = CALLBACK_RETRY if waits else CALLBACK
        call.callback = number
        call.epoch += 1
        if hasattr(q, "callbacks_pending"):     # entries with retries (cb_key, cb_attempts)
            call.cb_key = key
            call.cb_attempts = attempts
            q.callbacks_pending += 1
        if retry_due is not None:               # a retry comes back at its own place
            call.key = key
        self.calls[call_id] = call
        pos = q.position(call.key)
        info = {"number": number, "position": pos, "entered": entered, "attempts": attempts}
        if waits:
            info["retry_due"] = retry_due
            self._timer(retry_due, _CB_RETRY, call_id, call.epoch)
        else:
            q.insert(call.key)
        self._log(now, q.name, call_id, "", "CALLBACK_RESTORED", info)
        acts: list = [CallbackRegistered(call_id, q.name, number, pos, q.ewt_s(pos))]
        if not waits:
            self._dispatch(q, now, acts)
        return acts

    def restore_waiting(self, call_id, queue, caller, level, entered, now, *, arrived=None,
                        pclass: str = "", data=None, front: bool = False) -> list:
        """Put back a caller who was waiting (or ringing an agent: ``front``) in ``queue``
        before a restart and whose line cardd still holds, as ``call_id`` (the call the
        model rebuilt). Keyed by the original times, so it keeps its place, and its wait
        timers count from ``entered``. Logged ENTERQUEUE with restored=True."""
        q, call, _, now = self._rebuilt(call_id, queue, caller, level, entered, now,
                                        arrived, pclass, data, front)
        self.calls[call_id] = call
        self._log(now, q.name, call_id, "", "ENTERQUEUE",
                  {"caller": caller, "priority": level, "class": pclass, "restored": True,
                   "entered": entered})
        acts: list = []
        self._wait(call, q, now, acts)
        self._dispatch(q, now, acts)
        return acts

    def _rebuilt(self, call_id, queue, caller, level, entered, now, arrived, pclass, data,
                 front, callback=False, number=None) -> tuple:
        """A call saved before a restart, checked, then rebuilt under a key made of its
        original times (``front``: at the head); not filed. ``callback``: an entry
        to call ``number`` back. Returns (queue, call, its own key, now); a refusal changes nothing."""
        ident(call_id, "call id")
        q = self._queue(queue)
        if call_id in self.calls:
            raise AcdError(f"call {call_id!r} is already in the ACD")
        if callback:
            ident(number, "callback number")
        if not isinstance(caller, str):
            raise AcdError(f"caller must be a string (a number), got {caller!r}")
        if isinstance(level, bool) or not isinstance(level, int) or level < 0:
            raise AcdError(f"priority level must be a whole number >= 0, got {level!r}")
        if data is not None and not isinstance(data, dict):
            raise AcdError(f"call data must be a dict, got {type(data).__name__}")
        arrived = entered if arrived is None else arrived
        for what, t in (("entered", entered), ("arrived", arrived)):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or t != t or t > now:
                raise AcdError(f"{what} must be a time no later than now ({now}), got {t!r}")
        now = self._clock(now)
        call = Call(call_id, caller, dict(data or {}), level, pclass, arrived)
        call.queue = q
        call.entered = entered
        cfg = q.cfg
        key = queue_key(level, arrived, cfg.priority_step_s, cfg.boost_s, next(self._cseq), call_id)
        call.key = (0,) + key[1:] if front else key
        return q, call, key, now

    def restore_lost(self, call_id, queue, entered, now, reason: str = "lost_in_restart") -> None:
        """A caller saved as waiting whose line did not survive the restart: counted and
        logged as an abandon (ABANDON with the reason), never filed."""
        q = self._queue(queue)
        now = self._clock(now)
        q.stats.abandoned += 1
        self._log(now, q.name, call_id, "", "ABANDON",
                  {"reason": reason, "wait_s": max(0.0, now - entered)})
