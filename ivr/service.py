"""The IVR as ctid hosts it: sessions on calls, their actions carried out.

`IvrService` is the thin imperative shell around `IvrSession`s: it turns Play/StopMedia
into cardd channel commands (rendering TTS text on worker threads, keeping each call's
commands in order), runs look-ups on the LookupService, passes external-IVR traffic
through the ExternalBridge, fires session timers, and hands the actions that take the
call out of the IVR (Queue, Transfer, RecordVoicemail, FaxBack, Hangup, End) to ctid
as `CallAction`s. ctid's loop calls `tick(now)` every 100 ms or so; nothing here blocks.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import logging
from typing import Any

from hotline_proto import cardd_pb2

from . import interpreter as ia
from .flow import FlowSet
from .interpreter import CallInfo, IvrSession
from .lookup import LookupService
from .prompts import PromptResolver
from .security import PinGuard
from .stats import IvrStats
from .tts import TtsError

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ChannelCommand:
    """A command for cardd `node`."""
    node: str
    command: cardd_pb2.Command


@dataclasses.dataclass(frozen=True)
class CallAction:
    """An interpreter action for ctid's call model, ACD, fax or recording services."""
    call_id: str
    action: ia.Action


Effect = ChannelCommand | CallAction
_TO_CALL_MODEL = (ia.Queue, ia.Transfer, ia.RecordVoicemail, ia.FaxBack, ia.Hangup, ia.End)


class IvrError(ValueError):
    pass


@dataclasses.dataclass
class _Port:
    session: IvrSession
    node: str
    channel: int
    pending: collections.deque = dataclasses.field(default_factory=collections.deque)


class IvrService:
    def __init__(self, flows: FlowSet, resolver: PromptResolver, *,
                 lookups: LookupService | None = None, guard: PinGuard | None = None,
                 stats: IvrStats | None = None, external=None, render_workers: int = 2,
                 max_sessions: int = 10000):
        self.flows = flows
        self.resolver = resolver
        self.lookups = lookups or LookupService()
        self.guard = guard or PinGuard()
        self.stats = stats or IvrStats()
        self.external = external
        self.max_sessions = max_sessions
        self.ports: dict[str, _Port] = {}                    # call id -> port
        self._by_channel: dict[tuple[str, int], str] = {}
        self._render = concurrent.futures.ThreadPoolExecutor(render_workers,
                                                             thread_name_prefix="ivr-tts")
        # Its own id range: cardd replies are matched to commands by id, and the call
        # model numbers its commands from 1.
        self._cmd_ids = itertools.count(1 << 40)
        self.counters = collections.Counter()

    # ---- entry points ----------------------------------------------------------------
    def start(self, call_id: str, flow: str, node: str, channel: int, *, ani: str = "",
              dnis: str = "", data: dict | None = None, now: float) -> list[Effect]:
        """Put a call (already answered) on `flow`; its media is cardd `node`/`channel`."""
        if call_id in self.ports:
            raise IvrError(f"call {call_id} is already in the IVR")
        if (node, channel) in self._by_channel:
            raise IvrError(f"channel {node}/{channel} already serves an IVR call")
        if flow not in self.flows:
            raise IvrError(f"no IVR flow named {flow!r}")
        if len(self.ports) >= self.max_sessions:
            raise IvrError(f"IVR is full ({self.max_sessions} calls)")
        session = IvrSession(self.flows, flow, CallInfo(call_id, ani, dnis, dict(data or {})),
                             guard=self.guard, stats=self.stats, session_id=call_id)
        port = _Port(session, node, channel)
        self.ports[call_id] = port
        self._by_channel[(node, channel)] = call_id
        self.counters["started"] += 1
        return self._run(port, session.start(now), now)

    def on_channel_event(self, node: str, event: cardd_pb2.ChannelEvent, now: float) -> list[Effect]:
        call_id = self._by_channel.get((node, event.channel))
        if call_id is None:
            return []
        port = self.ports[call_id]
        kind = event.WhichOneof("kind")
        if kind == "digit":
            return self._run(port, port.session.on_digit(event.digit.digit, now), now)
        if kind == "prompt_done":
            pd = event.prompt_done
            return self._run(port, port.session.on_prompt_done(pd.interrupted, pd.digit, now), now)
        if kind in ("cleared", "on_hook"):
            return self._run(port, port.session.on_hangup(now), now)
        return []

    def call_on(self, node: str, channel: int) -> str | None:
        """The id of the IVR call whose media is on cardd `node`/`channel`, if any."""
        return self._by_channel.get((node, channel))

    def hangup(self, call_id: str, now: float) -> list[Effect]:
        port = self.ports.get(call_id)
        return self._run(port, port.session.on_hangup(now), now) if port else []

    def record_done(self, call_id: str, ok: bool, path: str, duration_s: float,
                    now: float) -> list[Effect]:
        port = self.ports.get(call_id)
        if port is None:
            return []
        return self._run(port, port.session.on_record_done(ok, path, duration_s, now), now)

    def command_failed(self, call_id: str, kind: str, error: str, now: float) -> list[Effect]:
        """cardd refused a command: a refused play ends at once (no PromptDone will come)."""
        port = self.ports.get(call_id)
        if port is None:
            return []
        log.warning("IVR %s: cardd refused %s: %s", call_id, kind, error)
        if kind == "play_prompt":
            return self._run(port, port.session.on_prompt_done(True, "", now), now)
        return []

    def tick(self, now: float) -> list[Effect]:
        out: list[Effect] = []
        for request_id, result in self.lookups.poll():
            port = self.ports.get(request_id.rpartition(":")[0])
            if port is not None:
                out += self._run(port, port.session.on_lookup_result(request_id, result, now), now)
        if self.external is not None:
            for session_id, command in self.external.poll():
                port = self.ports.get(session_id)
                if port is not None:
                    out += self._run(port, port.session.on_external(command, now), now)
        for port in list(self.ports.values()):
            d = port.session.deadline
            if d is not None and now >= d:
                out += self._run(port, port.session.on_timer(now), now)
            if port.pending:
                out += self._flush(port)
        return out

    def close(self) -> None:
        self._render.shutdown(wait=False, cancel_futures=True)
        self.lookups.close()

    # ---- carrying out actions -------------------------------------------------------------
    def _cmd(self, port: _Port, **kind) -> ChannelCommand:
        (field, msg), = kind.items()
        cmd = cardd_pb2.Command(id=next(self._cmd_ids), channel=port.channel)
        getattr(cmd, field).CopyFrom(msg)
        return ChannelCommand(port.node, cmd)

    def _run(self, port: _Port, actions: list[ia.Action], now: float) -> list[Effect]:
        self._apply(port, actions, now)
        return self._flush(port)

    def _apply(self, port: _Port, actions: list[ia.Action], now: float) -> None:
        """Queue the effects of `actions` behind what the call already has queued."""
        todo = collections.deque(actions)
        call_id = port.session.call.call_id
        while todo:
            a = todo.popleft()
            if isinstance(a, ia.Play):
                self._play(port, a)
            elif isinstance(a, ia.StopMedia):
                port.pending.append(self._cmd(port, stop_media=cardd_pb2.StopMedia()))
            elif isinstance(a, ia.PlayTone):
                port.pending.append(self._cmd(port, play_tone=cardd_pb2.PlayTone(tone=a.tone)))
            elif isinstance(a, ia.Lookup):
                self.lookups.submit(a)
            elif isinstance(a, (ia.ExternalStart, ia.ExternalSend)):
                delivered = self.external is not None and self.external.send(a)
                closing = isinstance(a, ia.ExternalSend) and a.event.get("kind") == "hangup"
                if not delivered and not closing:
                    todo.extend(port.session.on_external({"kind": "unreachable"}, now))
            elif isinstance(a, _TO_CALL_MODEL):
                port.pending.append(CallAction(call_id, a))
                if isinstance(a, ia.End):
                    self.counters[f"outcome.{a.outcome}"] += 1

    def _play(self, port: _Port, play: ia.Play) -> None:
        if all(self.resolver.ready(p) for p in play.prompts):
            port.pending.append(self._play_cmd(port, play))
            return
        self.counters["renders"] += 1
        port.pending.append(self._render.submit(self._play_cmd, port, play))

    def _play_cmd(self, port: _Port, play: ia.Play) -> ChannelCommand | None:
        files = []
        for p in play.prompts:
            try:
                files.append(self.resolver.file(p))
            except TtsError as e:                # leave it out rather than say it wrong
                log.error("IVR %s: prompt %r left out: %s", port.session.id, p.text or p.file, e)
                self.counters["prompt_errors"] += 1
        if not files:
            return None
        return self._cmd(port, play_prompt=cardd_pb2.PlayPrompt(files=files, barge_in=play.barge_in))

    def _flush(self, port: _Port) -> list[Effect]:
        """Hand on the call's queued effects in order, up to the first render still running."""
        out: list[Effect] = []
        while port.pending:
            head = port.pending[0]
            if isinstance(head, concurrent.futures.Future):
                if not head.done():
                    break
                port.pending.popleft()
                try:
                    cmd = head.result()
                except Exception as e:
                    log.error("IVR %s: prompt rendering failed: %s", port.session.id, e)
                    cmd = None
                if cmd is None:                  # nothing playable: the play is over
                    now = port.session.now
                    self._apply(port, port.session.on_prompt_done(True, "", now), now)
                    continue
                out.append(cmd)
            else:
                out.append(port.pending.popleft())
        if port.session.finished and not port.pending:
            self._forget(port)
        return out

    def _forget(self, port: _Port) -> None:
        call_id = port.session.call.call_id
        if self.ports.get(call_id) is port:
            del self.ports[call_id]
            self._by_channel.pop((port.node, port.channel), None)

    # ---- reporting ---------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        by_flow = collections.Counter(p.session.main.name for p in self.ports.values())
        return {"sessions": len(self.ports), "by_flow": dict(by_flow), **self.counters}
