"""The agents' CTI requests (Request.agent = AgentRequest), for AcdService.

One job: check an AgentRequest's agent, device and reason, ask the ACD (its actions are
carried out by the service) and build the Reply. The actions, and what they take, are in
the package docstring (ctid/acd_service/__init__.py). Bad input is a RequestError naming
what is wrong; the ACD's own refusals (AcdError) become one in AcdService.request.
"""
from __future__ import annotations

from ctid.model.callmodel import RequestError
from ctid.model.calls import Device, DeviceType
from hotline_proto import cti_pb2

from .notifier import figures_data
from .supervision import SUPERVISE_MIX

AGENT_ACTIONS = ("login", "logout", "ready", "not_ready", "force_state", "supervise", "status")


class AgentRequests:
    """One method per action in AGENT_ACTIONS: (model, out, body, now) -> Reply; the
    service checks the action's name and dispatches."""

    def __init__(self, svc):
        self.svc = svc               # the AcdService: its ACD, agents' settings, _apply

    def _agent(self, body):
        acd = self.svc.acd
        if not body.agent:
            raise RequestError(f"{body.action}: name the agent")
        if body.agent not in acd.agents:
            raise RequestError(f"unknown agent {body.agent!r}")
        return acd.agents[body.agent]

    def _extension(self, model, device: str, what: str) -> Device:
        if device.isdigit():
            device = f"ext:{device}"
        dev = model.devices.get(device)
        if dev is None:
            raise RequestError(f"{what}: unknown device {device!r}")
        if dev.type != DeviceType.EXTENSION:
            raise RequestError(f"{what}: {device} is not an extension")
        return dev

    def _reply(self, agent_id: str) -> cti_pb2.Reply:
        a = self.svc.acd.agents[agent_id]
        return cti_pb2.Reply(status={"agent": a.id, "agent_state": a.state, "reason": a.reason,
                                     "device": a.extension})

    def login(self, model, out, body, now):
        svc = self.svc
        a = self._agent(body)
        device = body.device
        if not device:
            seat = svc.agent_settings.get(a.id)
            if seat is None or not seat.extension:
                raise RequestError(f"login: agent {a.id!r} has no extension configured; "
                                   "name the device to log in at")
            device = seat.extension
        dev = self._extension(model, device, "login")
        ready = body.reason.strip().lower() != "not_ready"
        svc._apply(model, out, svc.acd.agent_login(a.id, dev.id, now, ready=ready), now)
        return self._reply(a.id)

    def logout(self, model, out, body, now):
        svc = self.svc
        a = self._agent(body)
        svc._apply(model, out, svc.acd.agent_logout(a.id, now, body.reason), now)
        return self._reply(a.id)

    def ready(self, model, out, body, now):
        svc = self.svc
        a = self._agent(body)
        svc._apply(model, out, svc.acd.set_ready(a.id, now), now)
        return self._reply(a.id)

    def not_ready(self, model, out, body, now):
        svc = self.svc
        a = self._agent(body)
        svc._apply(model, out, svc.acd.set_not_ready(a.id, now, body.reason or "break"), now)
        return self._reply(a.id)

    def force_state(self, model, out, body, now):
        """reason: "STATE" or "STATE:why" (ready, not_ready, logged_off); device: who asks."""
        svc = self.svc
        a = self._agent(body)
        state, _, why = body.reason.partition(":")
        if not state:
            raise RequestError("force_state: give the state in reason "
                               "(ready, not_ready or logged_off, optionally ':why')")
        by = body.device or "supervisor"
        svc._apply(model, out, svc.acd.force_state(a.id, state.strip(), now, by, why.strip()), now)
        return self._reply(a.id)

    def supervise(self, model, out, body, now):
        svc = self.svc
        sup = svc.supervision
        a = self._agent(body)
        mode = body.reason.strip().lower()
        if not body.device:
            raise RequestError("supervise: name the supervisor's phone in device")
        dev = self._extension(model, body.device, "supervise")
        if mode == "stop":
            sess = sup.at(dev.id)
            if sess is None:
                raise RequestError(f"supervise stop: {dev.id} is not supervising")
            sup.end(model, out, sess, now, restore=True, hang_up=True)
            return cti_pb2.Reply(call_id=sess.supervised)
        if mode not in SUPERVISE_MIX:
            raise RequestError(f"supervise: reason must be the mode: listen, whisper, barge "
                               f"or stop; got {body.reason!r}")
        if dev.id == a.extension:
            raise RequestError(f"supervise: {dev.id} is agent {a.id!r}'s own phone")
        sitting = svc.acd.by_extension.get(dev.id)
        if sitting is not None and not getattr(svc.agent_settings.get(sitting), "supervisor", False):
            raise RequestError(f"supervise: agent {sitting!r} at {dev.id} is not a supervisor")
        st = svc.calls.get(a.call) if a.call else None
        if st is None or not st.agent_device or a.state != "busy":
            # (on hold, the caller hears the hold tone: nobody to listen to)
            raise RequestError(f"supervise: agent {a.id!r} is {a.state}, not on a queue call")
        nodes = {model.devices[d].channel.node for d in (st.caller, st.agent_device, dev.id)}
        if len(nodes) > 1:
            raise RequestError(f"supervise: {dev.id} and the agent's call are on different "
                               "cardd nodes (a conference lives on one node)")
        busy = sup.at(dev.id)
        if (busy is None or busy.supervised != a.call) and not model.idle(dev):
            raise RequestError(f"supervise: {dev.id} is busy: hang up and ask again")
        svc._apply(model, out, svc.acd.supervise(sitting or dev.id, a.id, mode, now), now)
        return cti_pb2.Reply(call_id=a.call, status={"agent": a.id, "mode": mode})

    def status(self, model, out, body, now):
        acd = self.svc.acd
        if body.device.startswith("queue:"):
            name = body.device[len("queue:"):]
            if name not in acd.queues:
                raise RequestError(f"unknown queue {name!r} (queues: {', '.join(acd.queues)})")
            return cti_pb2.Reply(status=figures_data(acd.queue_figures(name, now)))
        if body.agent:
            a = self._agent(body)
            reply = self._reply(a.id)
            reply.status["calls_handled"] = str(a.calls_handled)
            reply.status["call_id"] = a.offered_call or a.call or ""
            return reply
        raise RequestError("status: name an agent, or a queue as device queue:NAME")
