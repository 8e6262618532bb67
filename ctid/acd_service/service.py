"""AcdService: the ACD core (ctid.acd) as the call model's service for "queue:NAME" targets.

The glue, and nothing more: the ACD decides, the call model keeps the calls, this module
carries the ACD's actions out as call-model operations and cardd commands, and feeds the
ACD what happens on the lines (as the call model's CSTA events) and what agents ask (CTI
AgentRequest). Its collaborators, each with one job, are owned by the service and carry
out their part through it: callbacks.py (placing callbacks), supervision.py (supervisors
in agents' calls), transfer.py (transfers, consultations of a queue), requests.py (the
CTI AgentRequest actions), phones.py (agents' phones in use outside the ACD, the
reconciler). No socket and no clock here: every entry point takes `now` (ctid's clock,
clamped so that it never goes backwards for the ACD).

A call routed to a queue:
  caller's line answered (trunks), connection queue:NAME QUEUED, Queued event, music on
  hold (looped: restarted at the PromptDone of the prompt playing; each PlayPrompt has an
  id that cardd echoes, and a PromptDone of any other prompt, stopped or replaced, is
  stale), position/wait announcements over it;
  OfferCall -> the agent's extension rings with the caller's number (Delivered, with the
  call's attached data and the agent); answered -> the model bridges, the queue
  connection ends, the agent is busy; ring no answer (ACD timer, or the ring failed) ->
  the ringing stops, the agent goes not ready (rona), the call goes back to the head of
  the queue (Queued again); the caller hangs up first -> an abandon; the call ends -> the
  agent's wrap-up, then ready; an agent's transfer, to an agent or to a queue ->
  transfer.py; overflow to another queue
  -> Diverted and Queued there; overflow to voicemail:MAILBOX (the queue's name when no
  mailbox is given) -> cardd records a message after a beep (Record, as the IVR's voicemail;
  '#' ends it), its RecordDone goes into the queue log (VOICEMAIL, with the path), then the
  line is cleared; overflow out otherwise (hangup, maximum wait) -> a goodbye (speech, or
  busy tone) and the line is cleared.

Callbacks (a queue with callback_key/callback_trunk in AcdSettings.callbacks): the waiting
caller keys callback_key, or an overflow target `callback` applies -> the ACD keeps their
place as a virtual entry (CallbackRegistered event), the caller hears a confirmation (three
beeps) and the line is cleared (cause normal). CallbackDue (the entry reached an agent) ->
a new call rings the agent's extension showing the customer's number; the agent answers ->
the agent is busy, the entry is dialling, the customer's number is dialled on the queue's
trunk group (Originated); the customer answers (the trunk's Established, the model bridges)
-> callback_connected (counted completed). No trunk, a failed dial, busy, the customer's
side clearing before answer, the agent hanging up first, or no answer within the dial
timeout -> callback_failed (the agent goes to wrap-up; with callback_retries left the
entry comes back as a new CallbackDue after callback_retry_s, keeping its place, else it
is given up). The placing is callbacks.py's job; the agent not
answering -> ring no answer (the entry goes back to the head of the queue).
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import random

from ctid.acd import (Acd, AcdConfig, AcdError, AgentStateChanged, AgentStateCorrected,
                      Announce, CallbackDue, CallbackRegistered, CallQueued, CancelOffer,
                      MusicOnHold, OfferCall, Overflow, QueueFigures, QueueLog, Supervise)
from ctid.acd.agent import LOGGED_OFF, OFFERED as AGENT_OFFERED, ON_CALL
from ctid.model.callmodel import CallModel, Out, RequestError
from ctid.model.calls import Call, ConnState, Device, DeviceType
from hotline_proto import cardd_pb2

from .audio import QueueAudio
from .callbacks import Callbacks
from .metrics import AcdMetrics
from .notifier import Notifier
from .persist import STATE_FILE, StateFile
from .phones import Phones
from .queue_log import QueueLogWriter
from .requests import AGENT_ACTIONS, AgentRequests
from .settings import AcdSettings, AgentSettings
from .supervision import Supervision
from .transfer import Transfers

log = logging.getLogger("ctid.acd")

CAUSE_NORMAL = 16
CAUSE_NO_ANSWER = 19
CAUSE_NON_SELECTED = 26          # Q.850: another agent took the call (ring all)
CAUSE_UNALLOCATED = 1
GOODBYE_TONE_S = 4.0             # busy tone before the line is cleared (no speech)
GOODBYE_LIMIT_S = 30.0           # a goodbye prompt never reported done: clear anyway
PROMPT_IDS = 2 ** 32              # PlayPrompt.id is a uint32; 0 means "no id"
VOICEMAIL_MAX_S = 120.0          # longest message a queue's voicemail records
VOICEMAIL_SILENCE_S = 5.0        # silence that ends a message
RECORD_LIMIT_S = VOICEMAIL_MAX_S + 15.0   # no RecordDone by then: clear anyway
GAUGES_EVERY_S = 1.0
CARDD_WAIT_LIMIT_S = 30.0        # at start: a cardd node not in step by then is given up on
# CSTA events on an ACD call that the service reacts to.
WATCHED = frozenset({"Established", "ConnectionCleared", "CallCleared", "Held", "Retrieved",
                     "Transferred", "Conferenced"})


@dataclasses.dataclass
class QueuedCall:
    """A call the ACD holds or has connected, as the service sees it."""
    call_id: str
    caller: str                  # the caller's device (a trunk channel, or an extension)
    queue: str
    answering: bool = False      # we answered the caller's line: its Answered is ours
    music: bool = False          # music wanted while the caller waits
    prompt: int = 0              # the id of the prompt playing, whose PromptDone we wait for
    looping: bool = False        # that prompt is the music (not an announcement, a goodbye)
    agent: str = ""              # the agent the call is connected (or transferred) to
    agent_device: str = ""
    leaving: bool = False        # overflowed out of the ACD: goodbye, then the line clears
    hangup_at: float | None = None
    recording: str = ""          # the voicemail mailbox being recorded to
    callback: bool = False       # released with a callback entry kept in the ACD


@dataclasses.dataclass
class Offer:
    agent: str
    call_id: str
    device: str


class AcdService:
    requests = ("agent",)

    def __init__(self, queues, agents: list[AgentSettings] = (), settings: AcdSettings | None = None,
                 *, audio: QueueAudio | None = None, store=None, registry=None, seed: int = 0):
        self.settings = settings or AcdSettings()
        s = self.settings
        self.metrics = AcdMetrics(registry)
        self.writer = QueueLogWriter(store) if store is not None else None
        self.acd = Acd(queues, AcdConfig(seed=seed, figures_every_s=s.figures_every_s,
                                         reconcile_grace_s=s.reconcile_grace_s),
                       log=QueueLog(keep=False, sink=self._log_record))
        self.agent_settings: dict[str, AgentSettings] = {}
        for a in agents:
            self.acd.add_agent(a.id, a.skills, a.name)
            self.agent_settings[a.id] = a
        self.audio = audio
        self.model: CallModel | None = None
        self.notifier: Notifier | None = None
        self.calls: dict[str, QueuedCall] = {}
        self.offers: dict[str, Offer] = {}                       # agent -> offer
        self._offer_at: dict[tuple[str, str], str] = {}          # (call, device) -> agent
        self.supervision = Supervision(self)                     # supervisors in agents' calls
        self.sessions = self.supervision.sessions                # supervisor's call -> session
        self.seat: dict[str, str] = {}                           # agent -> device last used
        self.callbacks = Callbacks(self)                         # placing the callbacks
        self.placing = self.callbacks.placing                    # model call -> callback placed
        self.callback_entries = self.callbacks.entries           # released callers' entries
        self.phones = Phones(self)                               # phones in use, the reconciler
        self.seized = self.phones.seized        # agents whose phone is on a call outside the ACD
        self.transfers = Transfers(self)                         # transfers, consultations
        self.agent_requests = AgentRequests(self)                # CTI AgentRequest actions
        self._started = False
        self._next_reconcile: float | None = None
        self._next_gauges: float | None = None
        self._fault_logged = -math.inf
        self.state_file: StateFile | None = None    # agents and callbacks across a restart
        # node -> cardd resynchronised since ctid started (the daemon's links); None: in
        # step (no cardd behind, as in tests). The ACD starts once its nodes are in step.
        self.in_step = None
        self._waiting_since: float | None = None
        # PlayPrompt ids, echoed in PromptDone. A random start: a prompt cardd still plays
        # from before a ctid restart does not share its id with ours.
        self._prompt_id = random.SystemRandom().randrange(1, PROMPT_IDS)

    # ---- set-up ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, cfg, *, store=None, registry=None) -> "AcdService | None":
        """The service for a ctid configuration (None when it defines no queue)."""
        if not cfg.queues:
            return None
        s = cfg.acd or AcdSettings()
        audio = QueueAudio(os.path.join(cfg.ctid.run_dir, "acd"), music=s.music,
                           announce=s.announce, language=s.language)
        svc = cls(cfg.queues, cfg.agents, s, audio=audio, store=store, registry=registry)
        svc.state_file = StateFile(os.path.join(cfg.ctid.run_dir, STATE_FILE))
        return svc

    def attach(self, model: CallModel) -> "AcdService":
        """Serve `model`'s queue targets: one ACD-group device per queue, and the hooks."""
        self.model = model
        self.notifier = Notifier(model)
        for name in self.acd.queues:
            model.add_device(Device(f"queue:{name}", DeviceType.ACD_GROUP, name=name))
        model.add_service("queue", self)
        if self.audio is not None:
            self.audio.start()
        return self

    def close(self) -> None:
        if self.audio is not None:
            self.audio.close()

    def status(self) -> dict[str, str]:
        acd = self.acd
        return {"acd.queues": str(len(acd.queues)),
                "acd.waiting": str(sum(q.live_waiting + len(q.sticky) for q in acd.queues.values())),
                "acd.agents_logged_in": str(sum(a.state != LOGGED_OFF for a in acd.agents.values())),
                "acd.supervising": str(len(self.sessions))}

    def channel_states(self, model: CallModel) -> dict[str, str]:
        """Each logged-in agent's phone as the reconciler sees it (phones.py)."""
        return self.phones.channel_states(model)

    def agent_queues(self, agent_id: str) -> tuple[str, ...]:
        """The queues `agent_id` is a member of (configuration and skills); () if unknown.
        The CTI server scopes supervisors by queue with it."""
        a = self.acd.agents.get(agent_id)
        return tuple(sorted(a.memberships)) if a is not None else ()

    def agent_phones(self) -> dict[str, tuple[str, ...]]:
        """Each agent's phones: where they are logged in and their configured extension.
        A queue-scoped CTI key's Snapshot shows the phones of the agents it oversees."""
        phones = {}
        for aid, a in self.acd.agents.items():
            seat = self.agent_settings.get(aid)
            devs = {a.extension} if a.extension else set()
            if seat is not None and seat.extension:
                devs.add(f"ext:{seat.extension}")
            phones[aid] = tuple(sorted(devs))
        return phones

    def _now(self, now: float) -> float:
        """ctid's clock, never behind what the ACD has seen (a wall clock may step back)."""
        return now if now >= self.acd.now else self.acd.now

    def _log_record(self, rec) -> None:
        self.metrics.log_record(rec)
        if self.writer is not None:
            self.writer(rec)

    # ---- the call model's hooks -------------------------------------------------------------
    def route(self, model: CallModel, out: Out, call: Call, origin: Device, name: str,
              number: str, now: float, caller_id: str | None = None) -> None:
        if name not in self.acd.queues:
            model.event(out, "Failed", call, now, device=origin.id, cause="invalidNumber",
                        reason=f"no queue {name!r}")
            model.clear_call(out, call, CAUSE_UNALLOCATED, now)
            return
        st = self.calls.get(call.id)
        if st is not None and st.agent:         # an agent's blind transfer into a queue
            self.transfers.transfer_in(model, out, call, st, name, now)
            return
        self.enqueue(model, out, call, origin, name, now, self._priority(call))

    def _priority(self, call: Call):
        """A priority the IVR set (call data queue_priority: a level > 0 or a class name);
        None lets the ACD's policy decide (VIP numbers, repeat callers)."""
        text = call.data.get("queue_priority", "").strip()
        if not text or text == "0":
            return None
        value = int(text) if text.isdigit() else text
        try:
            self.acd.policy.level_of(value)
        except AcdError as e:
            log.warning("call %s: queue_priority ignored: %s", call.id, e)
            return None
        return value

    def enqueue(self, model: CallModel, out: Out, call: Call, origin: Device, queue: str,
                now: float, priority=None) -> None:
        """Put `call`, whose caller is on `origin`, into `queue` (routing, or the IVR).
        A service that already answered the caller's trunk says so in the call model's own
        marker, call.data["answered_trunk"]; otherwise the trunk is answered here."""
        now = self._now(now)
        if call.id in self.calls:
            raise RequestError(f"call {call.id} is already in queue {self.calls[call.id].queue!r}")
        st = QueuedCall(call.id, origin.id, queue)
        if origin.type == DeviceType.TRUNK and not call.data.get("answered_trunk"):
            # A caller hears music only on an answered line.
            model.command(out, origin, answer=cardd_pb2.Answer())
            call.data["answered_trunk"] = origin.id
            st.answering = True
        call.data["queue"] = queue
        try:
            acts = self.acd.call_arrived(call.id, queue, call.calling, priority, dict(call.data), now)
        except AcdError as e:
            log.error("call %s not queued in %s: %s", call.id, queue, e)
            model.event(out, "Failed", call, now, device=origin.id, cause="notAvailable",
                        reason=str(e))
            model.clear_call(out, call, CAUSE_NORMAL, now)
            return
        self.calls[call.id] = st
        self._queue_up(model, out, call, st, acts, now)

    def _queue_up(self, model, out, call: Call, st: QueuedCall, acts: list, now: float) -> None:
        """The caller is at queue:NAME (st.queue): Queued, music, then the ACD's actions."""
        queue = st.queue
        model.connect(call, f"queue:{queue}", ConnState.QUEUED, now, "queue")
        if not any(isinstance(a, CallQueued) and a.call == call.id for a in acts):
            self.notifier.queued(out, call, queue, 1, 0, now)     # distributed at once
        if self.acd.queues[queue].cfg.moh:
            st.music = True
            self._play_music(model, out, st)
        self._apply(model, out, acts, now)

    def channel_event(self, model: CallModel, out: Out, device: Device, event, now: float) -> bool:
        kind = event.WhichOneof("kind")
        if kind not in ("answered", "prompt_done", "cleared", "on_hook", "digit", "record_done"):
            return False
        party = model.parties.get(device.id)
        st = self.calls.get(party.call_id) if party is not None else None
        if st is None or st.caller != device.id:
            return False
        if kind == "digit":
            return self._digit(model, out, device, st, event.digit.digit, self._now(now))
        if kind == "record_done":
            if not st.recording:
                return False
            self._voicemail_done(model, out, st, event.record_done, self._now(now))
            return True
        if kind == "answered":
            if st.answering:                  # the answer we gave the caller's line
                st.answering = False
                return True
            return False
        if kind == "prompt_done":
            done = event.prompt_done
            if not self._current_prompt(st, done):
                return True             # stale: stopped music, a replaced prompt, an old one
            st.prompt = 0
            if done.interrupted and st.looping:
                # The music ended without being replaced: cardd refused it or could not
                # play its file. Restarting it would fail again, at once (a loop): it comes
                # back after the next announcement.
                log.warning("call %s: the prompt on %s failed; music on hold paused",
                            st.call_id, device.id)
                return True
            self._prompts_over(model, out, st, self._now(now))
            return True
        if not st.agent and not st.leaving:   # the caller leaves before an agent answered
            call = model.calls.get(st.call_id)
            if call is not None and not call.outcome:
                call.outcome = "withdrawn" if call.data.get("consultation_of") else "abandoned"
        return False

    def _digit(self, model, out, device: Device, st: QueuedCall, digit: str, now: float) -> bool:
        """A key from a waiting caller: the queue's callback key asks for a callback; '#'
        ends a voicemail message. Other keys are nobody's business."""
        if st.recording:
            if digit == "#":
                model.command(out, device, stop_record=cardd_pb2.StopRecord())
            return True
        key = self.settings.callbacks.get(st.queue, ("", ""))[0]
        if st.agent or st.leaving or not key or digit != key:
            return False
        call = model.calls.get(st.call_id)
        try:
            acts = self.acd.request_callback(st.call_id, (call.calling if call else "") or None, now)
        except AcdError as e:           # e.g. being offered, or no caller number
            log.info("call %s: callback key %r not taken: %s", st.call_id, digit, e)
            return True
        self._apply(model, out, acts, now)
        return True

    def observe(self, model: CallModel, out: Out, events: list, now: float) -> None:
        now = self._now(now)
        for e in events:
            if e.call_id in self.placing:
                try:
                    self.callbacks.event(model, out, e, now)
                except AcdError as err:
                    log.warning("ACD: %s on callback call %s (%s): %s", e.name, e.call_id,
                                e.device, err)
                continue
            if e.name not in WATCHED:
                continue
            try:
                self._observed(model, out, e, now)
            except AcdError as err:           # the ACD disagrees: logged, the call goes on
                log.warning("ACD: %s on call %s (%s): %s", e.name, e.call_id, e.device, err)
        self.phones.sync(model, out, events, now)

    def tick(self, model: CallModel, out: Out, now: float) -> None:
        try:
            self._tick(model, out, self._now(now))
        except Exception:           # ctid's loop must go on; said once a minute at most
            if now - self._fault_logged >= 60.0:
                self._fault_logged = now
                log.exception("ACD: fault in the timer tick")

    def _tick(self, model: CallModel, out: Out, now: float) -> None:
        if not self._start(model, out, now):
            return                      # nothing offered, placed nor saved before cardd is
        self._apply(model, out, self.acd.tick(now), now)       # timers and figures due
        if self.seized:              # a handset put down after a call makes no CSTA event
            self.phones.sync(model, out, (), now)
        self.callbacks.tick(model, out, now)                    # callbacks' dial timeouts
        if now >= self._next_reconcile:
            self._next_reconcile = now + self.settings.reconcile_every_s
            self.phones.reconcile(model, out, now)
        for st in [s for s in self.calls.values() if s.hangup_at is not None and now >= s.hangup_at]:
            st.hangup_at = None
            call = model.calls.get(st.call_id)
            if call is not None:
                model.clear_call(out, call, CAUSE_NORMAL, now)
        if now >= self._next_gauges:
            self._next_gauges = now + GAUGES_EVERY_S
            for name in self.acd.queues:
                self.metrics.figures(self.acd.queue_figures(name, now))
        if self.state_file is not None:         # only when it changed
            self.state_file.save(self.acd, now, {cid: st.caller for cid, st in self.calls.items()
                                                 if not st.agent and not st.leaving})

    def _start(self, model: CallModel, out: Out, now: float) -> bool:
        """Started (True), or start now once cardd is in step: the saved state restored,
        then the auto logins; False while cardd is behind (nothing restored yet)."""
        if self._started:
            return True
        if not self._cardd_in_step(model, now):
            return False
        self._started = True
        if self.state_file is not None:     # before auto login: the saved state wins
            self._restore(model, out, now)
        self._auto_login(model, out, now)
        self._next_reconcile = now + self.settings.reconcile_every_s
        self._next_gauges = now
        return True

    def _cardd_in_step(self, model: CallModel, now: float) -> bool:
        """Every cardd node with the ACD's phones or trunks resynchronised since the start
        (a ring or a dial before would fail: ring no answer for a restored agent). A node
        still out of step after CARDD_WAIT_LIMIT_S is given up on, said once."""
        if self.in_step is None:
            return True
        nodes = {d.channel.node for d in model.devices.values() if d.channel is not None
                 and d.type in (DeviceType.EXTENSION, DeviceType.TRUNK)}
        behind = sorted(n for n in nodes if not self.in_step(n))
        if not behind:
            return True
        if self._waiting_since is None:
            self._waiting_since = now
            log.info("ACD waits for cardd %s to be in step before it starts", ", ".join(behind))
        if now - self._waiting_since < CARDD_WAIT_LIMIT_S:
            return False
        log.warning("ACD starts with cardd %s not in step after %.0f s: rings there fail",
                    ", ".join(behind), CARDD_WAIT_LIMIT_S)
        return True

    def _restore(self, model: CallModel, out: Out, now: float) -> None:
        """The saved state back: statistics, callbacks, waiting callers (on the lines cardd
        still holds, rebuilt by the resync), then agents; their actions carried out."""
        found: dict[str, QueuedCall] = {}

        def line(entry) -> str | None:
            dev = model.devices.get(entry["line"])
            party = model.parties.get(entry["line"]) if dev is not None else None
            call = model.calls.get(party.call_id) if party is not None and party.call_id else None
            if call is None or call.id in self.calls or call.id in found:
                return None
            live = [d for d, c in call.connections.items() if c.state != ConnState.NULL]
            conn = call.connection(dev.id)
            if live != [dev.id] or conn.state != ConnState.CONNECTED:
                return None             # the line is on some other call now
            found[call.id] = QueuedCall(call.id, dev.id, entry["queue"])
            call.data.update({str(k): str(v) for k, v in (entry.get("data") or {}).items()})
            call.data["queue"] = entry["queue"]
            if dev.type == DeviceType.TRUNK:
                call.data["answered_trunk"] = dev.id
            return call.id

        acts = self.state_file.restore(
            self.acd, now, lambda ext: getattr(model.devices.get(ext), "type", None)
            == DeviceType.EXTENSION, line)
        for cid, st in found.items():       # before the actions: music and Queued need them
            if cid in self.acd.calls:
                self.calls[cid] = st
        self._apply(model, out, acts, now)

    def request(self, model: CallModel, out: Out, kind: str, body, now: float):
        now = self._now(now)
        action = body.action.strip().lower()
        if action not in AGENT_ACTIONS:
            raise RequestError(f"unknown agent action {body.action!r} "
                               f"(use one of {', '.join(AGENT_ACTIONS)})")
        # A change before the saved state is back would be undone or contradicted by it
        # (a login at another phone, a ready over a saved break): refused, not held, so
        # the client's reply is the truth. Once cardd is in step the restore runs first.
        if action != "status" and not self._start(model, out, now):
            raise RequestError("ACD is restoring its state; try again in a moment")
        try:
            return getattr(self.agent_requests, action)(model, out, body, now)
        except AcdError as e:
            raise RequestError(str(e)) from None

    # ---- carrying out the ACD's actions -----------------------------------------------------
    def _apply(self, model: CallModel, out: Out, acts: list, now: float) -> None:
        """Carry out actions in order; what an action's handling makes the ACD say next is
        carried out before the actions after it (so events come out in causal order)."""
        todo = list(reversed(acts))
        while todo:
            more = self._act(model, out, todo.pop(), now)
            if more:
                todo.extend(reversed(more))

    def _act(self, model: CallModel, out: Out, a, now: float) -> list | None:
        if isinstance(a, AgentStateChanged):
            return self._agent_state(model, out, a, now)
        if isinstance(a, OfferCall):
            return self._offer(model, out, a, now)
        if isinstance(a, CancelOffer):
            cause = CAUSE_NON_SELECTED if a.reason == "answered_elsewhere" else CAUSE_NORMAL
            self._stop_ringing(model, out, a.agent, now, cause)
        elif isinstance(a, CallQueued):
            call = model.calls.get(a.call)
            if call is not None:
                model.connect(call, f"queue:{a.queue}", ConnState.QUEUED, now, "queue")
                self.notifier.queued(out, call, a.queue, a.position, a.ewt_s, now)
        elif isinstance(a, MusicOnHold):
            self._music(model, out, a, now)
        elif isinstance(a, Announce):
            st = self.calls.get(a.call)
            if st is not None and not st.agent and not st.leaving and self.audio is not None:
                self._play(model, out, st, self.audio.announcement(a.position, a.ewt_s))
        elif isinstance(a, Overflow):
            self._overflow(model, out, a, now)
        elif isinstance(a, Supervise):
            self.supervision.start(model, out, a, now)
        elif isinstance(a, QueueFigures):
            self.notifier.queue_statistics(out, a)
            self.metrics.figures(a)
        elif isinstance(a, AgentStateCorrected):
            log.warning("ACD reconciler: agent %s was %s while %s is %s; now %s",
                        a.agent, a.old, a.extension, a.channel_state, a.new)
        elif isinstance(a, CallbackDue):
            return self.callbacks.due(model, out, a, now)
        elif isinstance(a, CallbackRegistered):
            self.callbacks.registered(model, out, a, now)
        return None

    def _agent_state(self, model, out, a: AgentStateChanged, now) -> None:
        agent = self.acd.agents[a.agent]
        if agent.extension:
            self.seat[a.agent] = agent.extension
        call_id = (agent.offered_call if a.new in AGENT_OFFERED else
                   agent.call if a.new in ON_CALL else "") or ""
        self.notifier.agent_state(out, a, self.seat.get(a.agent, ""), call_id, now)
        offer = self.offers.get(a.agent)
        if offer is not None and a.old in AGENT_OFFERED and a.new not in AGENT_OFFERED:
            if agent.call == offer.call_id:     # answered (the reconciler saw it connected)
                self._took(model, offer, now)
            else:                               # ring no answer, withdrawn, forced
                self._stop_ringing(model, out, a.agent, now, CAUSE_NO_ANSWER)

    def _offer(self, model, out, a: OfferCall, now) -> list:
        call = model.calls.get(a.call)
        if call is None:                        # the model lost it: it leaves the ACD too
            return self.acd.call_abandoned(a.call, now)
        dev = model.devices.get(a.extension)
        ev = model.ring(out, call, dev, now, caller_id=call.calling or a.caller) \
            if dev is not None else None
        if ev is None:
            log.info("agent %s: %s cannot ring (busy or out of service): ring no answer",
                     a.agent, a.extension)
            return self.acd.agent_no_answer(a.agent, a.call, now)
        ev.agent = a.agent
        self.offers[a.agent] = Offer(a.agent, a.call, dev.id)
        self._offer_at[(a.call, dev.id)] = a.agent
        return self.acd.agent_ringing(a.agent, a.call, now)

    def _stop_ringing(self, model, out, agent: str, now: float, cause: int) -> None:
        offer = self.offers.pop(agent, None)
        if offer is None:
            return
        self._offer_at.pop((offer.call_id, offer.device), None)
        call = model.calls.get(offer.call_id)
        dev = model.devices.get(offer.device)
        if call is None or dev is None:
            return
        conn = call.connection(dev.id)
        if conn is not None and conn.state == ConnState.ALERTING:
            model.clear_connection(out, call, dev, cause, now, reason="offer withdrawn")

    def _music(self, model, out, a: MusicOnHold, now) -> None:
        st = self.calls.get(a.call)
        if st is None:
            return
        if a.on:
            if not st.music:
                st.music = True
                if not st.prompt:
                    self._play_music(model, out, st)
            return
        st.music = False
        if st.leaving:
            return                              # the goodbye is playing
        call = model.calls.get(st.call_id)
        caller = model.devices.get(st.caller)
        if call is not None and caller is not None and call.connection(caller.id) is not None \
                and call.connection(caller.id).state != ConnState.NULL:
            model.command(out, caller, stop_media=cardd_pb2.StopMedia())
            st.prompt = 0                       # its PromptDone is stale now

    def _play_music(self, model, out, st: QueuedCall) -> None:
        if self.audio is not None:
            files = self.audio.music()
            if files and self._play(model, out, st, files):
                st.looping = True

    def _play(self, model, out, st: QueuedCall, files: list[str]) -> bool:
        caller = model.devices.get(st.caller)
        if caller is None or not files:
            return False
        st.prompt = self._next_prompt_id()      # what played before reports stale
        st.looping = False
        model.command(out, caller, play_prompt=cardd_pb2.PlayPrompt(files=files, id=st.prompt))
        log.debug("call %s: playing %s on %s (prompt %d)", st.call_id,
                  ", ".join(os.path.basename(f) for f in files), caller.id, st.prompt)
        return True

    def _next_prompt_id(self) -> int:
        self._prompt_id = self._prompt_id % (PROMPT_IDS - 1) + 1    # 1..2**32-1; 0 is "none"
        return self._prompt_id

    @staticmethod
    def _current_prompt(st: QueuedCall, done) -> bool:
        """Whether a PromptDone ends the prompt `st` waits for. cardd echoes the PlayPrompt's
        id; a PromptDone without one (a cardd that does not echo ids) ends it only when
        it played out: a stopped or replaced prompt reports interrupted."""
        if not st.prompt:
            return False
        if done.id:
            return done.id == st.prompt
        return not done.interrupted

    def _prompts_over(self, model, out, st: QueuedCall, now: float) -> None:
        call = model.calls.get(st.call_id)
        if call is None:
            return
        if st.recording:
            return                                              # the music ended: recording
        if st.leaving:
            model.clear_call(out, call, CAUSE_NORMAL, now)      # the goodbye was said
        elif st.music and not st.agent:
            self._play_music(model, out, st)                    # the music loops

    def _leave_queue(self, model, call: Call, queue: str, now: float) -> None:
        """The call is no longer queued at queue:NAME (answered, moved, or sent away)."""
        dev_id = f"queue:{queue}"
        conn = call.connections.get(dev_id)
        if conn is None or conn.state == ConnState.NULL:
            return
        conn.state = ConnState.NULL
        leg = call.leg(dev_id)
        if leg is not None:
            leg.ended = now
        party = model.parties.get(dev_id)
        if party is not None and party.call_id == call.id:
            party.call_id = ""

    def _overflow(self, model, out, a: Overflow, now) -> None:
        call = model.calls.get(a.call)
        st = self.calls.get(a.call)
        if call is None or st is None:
            return
        self._leave_queue(model, call, a.queue, now)
        t = a.target
        if t.kind == "queue":
            self.notifier.diverted(out, call, a.queue, f"overflow ({a.reason}) to queue:{t.name}", now)
            st.queue = t.name
            call.data["queue"] = t.name
            model.connect(call, f"queue:{t.name}", ConnState.QUEUED, now, "queue")
            return
        if t.kind == "callback":        # CallbackRegistered follows: confirmation, release
            self.notifier.diverted(out, call, a.queue, f"overflow ({a.reason}) to callback", now)
            return
        caller = model.devices.get(st.caller)
        if t.kind == "voicemail" and caller is not None and caller.channel is not None:
            self._voicemail(model, out, call, st, caller, t.name or a.queue, a, now)
            return
        # Out of the ACD: a goodbye and the line is cleared.
        self.notifier.diverted(out, call, a.queue, f"overflow ({a.reason}) to {t}: "
                               "goodbye and clear", now)
        call.outcome = "timed_out" if a.reason == "max_wait" else "overflowed"
        st.leaving = True
        files = self.audio.goodbye() if self.audio is not None else []
        if files:
            self._play(model, out, st, files)
            st.hangup_at = now + GOODBYE_LIMIT_S
        elif caller is not None:
            model.command(out, caller, play_tone=cardd_pb2.PlayTone(tone="busy"))
            st.hangup_at = now + GOODBYE_TONE_S

    # ---- voicemail and callbacks --------------------------------------------------------------
    def _voicemail(self, model, out, call: Call, st: QueuedCall, caller: Device, mailbox: str,
                   a: Overflow, now: float) -> None:
        from ivr.ctid_service import voicemail_path     # the IVR's mailbox layout, shared
        self.notifier.diverted(out, call, a.queue, f"overflow ({a.reason}) to voicemail:{mailbox}",
                               now)
        call.outcome = "timed_out" if a.reason == "max_wait" else "overflowed"
        st.leaving, st.recording, st.music = True, mailbox, False
        model.command(out, caller, stop_media=cardd_pb2.StopMedia())
        st.prompt = 0                           # the RecordDone ends the call, no prompt
        model.command(out, caller, record=cardd_pb2.Record(
            path=voicemail_path(mailbox, call.id, now), max_s=VOICEMAIL_MAX_S,
            silence_s=VOICEMAIL_SILENCE_S, beep=True))
        st.hangup_at = now + RECORD_LIMIT_S

    def _voicemail_done(self, model, out, st: QueuedCall, r, now: float) -> None:
        self.acd.log.append(now, st.queue, st.call_id, "", "VOICEMAIL",
                            {"mailbox": st.recording, "ok": bool(r.ok), "path": r.path,
                             "duration_s": round(float(r.duration_s), 2)})
        st.recording = ""
        call = model.calls.get(st.call_id)
        if call is not None:
            model.clear_call(out, call, CAUSE_NORMAL, now)

    # ---- what happens on the lines ----------------------------------------------------------
    def _observed(self, model, out, e, now) -> None:
        cid = e.call_id
        if self.supervision.event(model, out, e, now):
            return                              # the supervisor's own call
        st = self.calls.get(cid)
        if st is None:
            return
        if e.name == "Transferred" and e.device == st.caller and e.secondary_call_id \
                and e.data.get("transferred_from") == e.secondary_call_id:
            self.transfers.consult_transferred(model, out, st, e, now)
        elif e.name == "Established":
            agent = self._offer_at.get((cid, e.device))
            if agent is not None:
                self._answered(model, out, st, agent, now)
        elif e.name == "ConnectionCleared":
            agent = self._offer_at.get((cid, e.device))
            if agent is not None:               # the ring ended without us: not answered
                offer = self.offers.pop(agent)
                del self._offer_at[(cid, offer.device)]
                a = self.acd.agents.get(agent)
                if a is not None and a.offered_call == cid:
                    self._apply(model, out, self.acd.agent_no_answer(agent, cid, now), now)
            elif e.device == st.caller and not st.agent and not st.leaving:
                if cid in self.acd.calls and e.data.get("consultation_of"):
                    self.transfers.withdraw(model, out, cid, now, f"consultation cleared by {e.device}")
                elif cid in self.acd.calls:     # the caller left while waiting or offered
                    self._apply(model, out, self.acd.call_abandoned(cid, now), now)
                call = model.calls.get(cid)
                if call is not None:
                    model.clear_call(out, call, CAUSE_NORMAL, now)
        elif e.name == "CallCleared":
            self.calls.pop(cid, None)
            if cid in self.callback_entries:    # the entry lives on in the ACD
                self.callback_entries.discard(cid)
                return
            for agent in [ag for (c, _), ag in self._offer_at.items() if c == cid]:
                offer = self.offers.pop(agent, None)
                if offer is not None:
                    self._offer_at.pop((cid, offer.device), None)
            if cid in self.acd.calls:
                self._apply(model, out, self.acd.call_ended(cid, now), now)
        elif e.device and e.device == st.agent_device:
            if e.name == "Held":
                self._apply(model, out, self.acd.agent_hold(st.agent, now), now)
            elif e.name == "Retrieved":
                self._apply(model, out, self.acd.agent_retrieve(st.agent, now), now)
            elif e.name == "Transferred":
                self.transfers.transferred(model, out, st, e, now)

    def _answered(self, model, out, st: QueuedCall, agent: str, now: float) -> None:
        self._took(model, self.offers[agent], now)
        self._apply(model, out, self.acd.agent_answered(agent, st.call_id, now), now)

    def _took(self, model, offer: Offer, now: float) -> None:
        """The agent answered the offer: the call is theirs, no longer queued."""
        self.offers.pop(offer.agent, None)
        self._offer_at.pop((offer.call_id, offer.device), None)
        st = self.calls.get(offer.call_id)
        if st is None:
            return
        st.agent, st.agent_device = offer.agent, offer.device
        call = model.calls.get(st.call_id)
        if call is not None:
            self._leave_queue(model, call, st.queue, now)

    def _auto_login(self, model, out, now: float) -> None:
        for a in self.agent_settings.values():
            if a.login and a.extension and self.acd.agents[a.id].state == LOGGED_OFF:
                try:
                    self._apply(model, out, self.acd.agent_login(a.id, f"ext:{a.extension}", now), now)
                except AcdError as e:
                    log.error("agent %s not logged in at start: %s", a.id, e)
