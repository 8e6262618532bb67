"""Supervisors in agents' calls: listen, whisper, barge, for AcdService.

One job: the ACD's Supervise action (AgentRequest(action="supervise", agent=AGENT,
device=SUPERVISOR_PHONE, reason="listen"|"whisper"|"barge"|"stop")) rings the
supervisor's phone with a call of its own (a Session); when it is answered the agent's
caller and the agent move from their bridge into a cardd conference "sup-CALL" (talk)
and the supervisor joins it (listen; whisper heard by the agent only; barge = talk).
Asking again with another mode switches it. The supervisor hanging up restores the
bridge; the agent's call ending, being held or transferred ends the supervision (the
supervisor's phone is hung up).
"""
from __future__ import annotations

import dataclasses

from ctid.acd import Supervise
from ctid.model.callmodel import CallModel, Out, RequestError
from ctid.model.calls import ConnState
from hotline_proto import cardd_pb2

CAUSE_NORMAL = 16
# What each supervise mode is in the conference.
SUPERVISE_MIX = {"listen": "listen", "whisper": "whisper", "barge": "talk"}
# CSTA events on a supervised call that end its supervision.
ENDS_SUPERVISION = frozenset({"ConnectionCleared", "CallCleared", "Held", "Transferred",
                              "Conferenced"})


@dataclasses.dataclass
class Session:
    """A supervisor's phone in an agent's call."""
    call_id: str                 # the supervisor's own call (it rings their phone)
    supervised: str              # the agent's call
    agent: str
    device: str                  # the supervisor's phone
    supervisor: str
    mode: str
    caller: str = ""             # the supervised call's caller and agent devices
    agent_device: str = ""
    joined: bool = False


class Supervision:
    def __init__(self, svc):
        self.svc = svc               # the AcdService: its ACD and its calls
        self.sessions: dict[str, Session] = {}          # supervisor's call -> session
        self.supervised: dict[str, set[str]] = {}       # agent's call -> sessions

    def at(self, device: str) -> Session | None:
        """The session of the supervisor's phone `device`, if it is supervising."""
        return next((s for s in self.sessions.values() if s.device == device), None)

    def start(self, model: CallModel, out: Out, a: Supervise, now: float) -> None:
        """Ring the supervisor's phone for the ACD's Supervise (or switch the mode)."""
        svc = self.svc
        # The supervisor is a logged-in agent (their phone) or, when nobody is logged in
        # there, the phone itself (agent ids have no ':').
        sup = svc.acd.agents.get(a.supervisor)
        sup_dev = model.devices[sup.extension if sup is not None else a.supervisor]
        current = self.at(sup_dev.id)
        if current is not None and current.supervised == a.call:
            current.mode = a.mode
            if current.joined:
                self._join_supervisor(model, out, current)
            return
        if current is not None:
            self.end(model, out, current, now, restore=True, hang_up=True)
        st = svc.calls[a.call]
        agent_dev = model.devices[st.agent_device]
        call = model.new_call(now, calling=agent_dev.number, called=sup_dev.number)
        call.data.update({"supervise": a.call, "agent": a.agent, "mode": a.mode})
        ev = model.ring(out, call, sup_dev, now, caller_id=agent_dev.number)
        if ev is None:
            del model.calls[call.id]
            raise RequestError(f"{sup_dev.id} is busy: hang up and ask again")
        ev.agent = a.agent
        sess = Session(call.id, a.call, a.agent, sup_dev.id, a.supervisor, a.mode,
                       caller=st.caller, agent_device=st.agent_device)
        self.sessions[call.id] = sess
        self.supervised.setdefault(a.call, set()).add(call.id)

    def event(self, model: CallModel, out: Out, e, now: float) -> bool:
        """A CSTA event on a watched call: True when the call is a supervisor's own (the
        event is handled); a supervised call held, transferred or ending ends the
        sessions on it (False: the event is the service's too)."""
        sess = self.sessions.get(e.call_id)
        if sess is not None:
            if e.name == "Established" and e.device == sess.device:
                self._join(model, out, sess, now)
            elif e.name == "CallCleared":
                self.end(model, out, sess, now, restore=True, hang_up=False)
            return True
        if e.name in ENDS_SUPERVISION and self.supervised.get(e.call_id):
            for sid in list(self.supervised[e.call_id]):
                s = self.sessions.get(sid)
                if s is not None:
                    self.end(model, out, s, now, restore=False, hang_up=True)
        return False

    def _conference(self, sess: Session) -> str:
        return f"sup-{sess.supervised}"

    def _join(self, model, out, sess: Session, now: float) -> None:
        st = self.svc.calls.get(sess.supervised)
        call = model.calls.get(sess.supervised)
        if st is None or call is None or st.agent_device != sess.agent_device:
            self.end(model, out, sess, now, restore=False, hang_up=True)
            return
        conf = self._conference(sess)
        if not any(s.joined for s in self._sessions_of(sess.supervised)):
            for dev_id in (sess.caller, sess.agent_device):      # the bridge becomes a conference
                model.command(out, model.devices[dev_id],
                              conference_join=cardd_pb2.ConferenceJoin(conference=conf, mode="talk"))
        sess.joined = True
        self._join_supervisor(model, out, sess)

    def _join_supervisor(self, model, out, sess: Session) -> None:
        mode = SUPERVISE_MIX[sess.mode]
        join = cardd_pb2.ConferenceJoin(conference=self._conference(sess), mode=mode)
        if mode == "whisper":
            join.whisper_to = model.devices[sess.agent_device].channel.channel
        model.command(out, model.devices[sess.device], conference_join=join)

    def _sessions_of(self, call_id: str) -> list[Session]:
        return [self.sessions[s] for s in self.supervised.get(call_id, ()) if s in self.sessions]

    def end(self, model, out, sess: Session, now: float, *, restore: bool,
            hang_up: bool) -> None:
        """End a session: the supervisor leaves; the last one out restores the bridge
        (`restore`, both parties still connected) or takes them out of the conference."""
        self.sessions.pop(sess.call_id, None)
        left = self.supervised.get(sess.supervised, set())
        left.discard(sess.call_id)
        if not left:
            self.supervised.pop(sess.supervised, None)
        if sess.joined:
            model.command(out, model.devices[sess.device], conference_leave=cardd_pb2.ConferenceLeave())
            if not any(s.joined for s in self._sessions_of(sess.supervised)):
                caller, agent = model.devices[sess.caller], model.devices[sess.agent_device]
                call = model.calls.get(sess.supervised)
                if restore and call is not None and all(
                        call.connection(d.id) is not None
                        and call.connection(d.id).state == ConnState.CONNECTED for d in (caller, agent)):
                    model.bridge(out, agent, caller)             # back to a plain bridge
                else:
                    for d in (caller, agent):
                        model.command(out, d, conference_leave=cardd_pb2.ConferenceLeave())
        if hang_up:
            own = model.calls.get(sess.call_id)
            if own is not None:
                model.clear_call(out, own, CAUSE_NORMAL, now)
