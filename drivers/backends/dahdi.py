"""The `dahdi` backend: DAHDI channel files, one C call per tick for every channel's audio.

open(): per configured port, open /dev/dahdi/channel, DAHDI_SPECIFY the channel, set its
buffers (DAHDI_SET_BUFINFO), DAHDI_SET_BLOCKSIZE and DAHDI_SETLAW, then check with
DAHDI_GET_PARAMS that DAHDI signals it as the configured port kind; spans from
DAHDI_SPANSTAT; finally DAHDI_FLUSH every channel's audio so all rows start together. exchange(tx): one hl_exchange call writes every tx row then reads every rx
row (the blocking read is the clock); channels refused with ELAST have their events fetched
with DAHDI_GETEVENT and their block written/read again. Span alarms come from
DAHDI_SPANSTAT, polled at most once a second (counted in ticks), with the span's error
counters (CRC-4, BPV, framing, E-bit, FAS; DAHDI_SPANSTAT has no slip counter).

D-channels (PRI spans): the span's timeslot 16 channel, opened non-blocking and checked to
be HDLC-signalled (dchan= in system.conf). DAHDI hands over one whole frame per read with
its 2 FCS bytes after it, and wants 2 spare bytes after each frame written (it computes
the FCS there): exchange() reads every waiting frame after the audio (TickIn.dframes,
FCS removed), send_dframe() writes one. The D-channel's number is the span's first
bearer channel + 15 (DAHDI numbers an E1 span's 31 timeslots contiguously), or given by
the `dchannels` option {span: channel}.

All system calls go through drivers.native.dahdi's seam. With `emulation` set they go to
ctisim's DAHDI emulation instead of the kernel: an endpoint string (ZeroMQ REQ) or, in
tests, an object with call(SyscallRequest) -> SyscallReply. The seam is process-wide: one
emulated backend per process at a time.
"""
from __future__ import annotations

import argparse
import errno
import logging
import time
from collections.abc import Mapping

import numpy as np

from drivers.backends.base import (Backend, BackendError, ChannelEvent, HookOp, HwEvent,
                                   Inventory, PortInfo, PortKind, SpanInfo, TickIn)
from drivers.media import g711
from drivers.native import dahdi as D

log = logging.getLogger("cardd.dahdi")

# DAHDI names signalling from the card's side: a port that feeds a phone (our FXS) is an
# FXO-signalled channel, a port on a CO line (our FXO) is FXS-signalled.
ACCEPTED_SIGNALLING: dict[PortKind, frozenset[int]] = {
    PortKind.FXS: frozenset({D.DAHDI_SIG_FXOLS, D.DAHDI_SIG_FXOGS, D.DAHDI_SIG_FXOKS}),
    PortKind.FXO: frozenset({D.DAHDI_SIG_FXSLS, D.DAHDI_SIG_FXSGS, D.DAHDI_SIG_FXSKS}),
    PortKind.E1: frozenset({D.DAHDI_SIG_CAS, D.DAHDI_SIG_CLEAR, D.DAHDI_SIG_EM_E1}),
}
_KIND_TEXT = {PortKind.FXS: "fxs (a phone attached)", PortKind.FXO: "fxo (on a CO line)",
              PortKind.E1: "e1 (a timeslot)"}
_SPECIFY_ERRORS = {errno.EINVAL: "DAHDI has no such channel",
                   errno.ENXIO: "the channel is not configured in DAHDI (system.conf)",
                   errno.EBUSY: "the channel is already open by another program"}
_RETRY_ROUNDS = 4            # event fetch + retry rounds per tick before giving a row up
HDLC_SIGNALLING = frozenset({D.DAHDI_SIG_HARDHDLC, D.DAHDI_SIG_HDLCFCS, D.DAHDI_SIG_HDLCNET})
DFRAME_MAX = 1024            # a Q.921 frame is at most 260 octets; DAHDI's default buffer
DFRAME_NUMBUFS = 16
_DFRAMES_PER_TICK = 64       # frames read from one D-channel per tick, at most
_PRI_SIGNALING = ("pri_cpe", "pri_net")


def _span_signaling(item) -> str:
    get = item.get if isinstance(item, Mapping) else (lambda k, d=None: getattr(item, k, d))
    return str(get("signaling", "") or "")


def _coerce_port(item) -> PortInfo:
    if isinstance(item, PortInfo):
        return item
    get = item.get if isinstance(item, Mapping) else (lambda k, d=None: getattr(item, k, d))
    try:
        return PortInfo(channel=int(get("channel")), span=int(get("span", 1) or 1),
                        kind=PortKind(str(getattr(get("kind"), "value", get("kind"))).lower()))
    except (TypeError, ValueError) as exc:
        raise BackendError(f"bad channel entry {item!r}: needs channel, span and kind "
                           f"(fxs, fxo or e1) ({exc})") from None


def _coerce_span(item) -> SpanInfo:
    if isinstance(item, SpanInfo):
        return item
    get = item.get if isinstance(item, Mapping) else (lambda k, d=None: getattr(item, k, d))
    try:
        return SpanInfo(span=int(get("span")), name=str(get("name", "") or ""),
                        kind=str(get("kind", "") or ""), alarms=0)
    except (TypeError, ValueError) as exc:
        raise BackendError(f"bad span entry {item!r}: {exc}") from None


class RemoteSyscalls:
    """Forwards each system call to ctisim's DAHDI emulation over ZeroMQ (REQ)."""

    def __init__(self, endpoint: str, timeout_s: float = 5.0, context=None):
        import zmq
        self._zmq = zmq
        self.endpoint = endpoint
        self.timeout_ms = max(1, int(timeout_s * 1000))
        self._context = context or zmq.Context.instance()
        self._sock = None

    def call(self, req: D.SyscallRequest) -> D.SyscallReply:
        zmq = self._zmq
        if self._sock is None:
            self._sock = self._context.socket(zmq.REQ)
            self._sock.setsockopt(zmq.LINGER, 0)
            self._sock.setsockopt(zmq.SNDTIMEO, self.timeout_ms)
            self._sock.connect(self.endpoint)
        try:
            self._sock.send(req.encode())
        except zmq.Again:
            self.close()
            raise D.SeamError(f"the DAHDI emulation at {self.endpoint} does not take "
                              f"calls ({req.op})") from None
        if not self._sock.poll(self.timeout_ms, zmq.POLLIN):
            self.close()      # a REQ socket without its answer cannot be reused
            raise D.SeamError(f"no answer from the DAHDI emulation at {self.endpoint} "
                              f"within {self.timeout_ms} ms ({req.op})")
        return D.SyscallReply.decode(self._sock.recv())

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None


class DahdiBackend(Backend):
    """DAHDI channels as a Backend.

    channels: the ports in row order: PortInfo, mappings or objects with channel, span and
    kind; or a config object with `.ports`/`.channels` (and optionally `.spans`).
    spans: optional SpanInfo-like entries giving names and kinds (otherwise DAHDI's).
    """

    def __init__(self, channels=None, spans=None, block: int = 160, law: str = "alaw",
                 emulation=None, *, device: str = D.DEVICE, numbufs: int = 4,
                 timeout_s: float = 5.0, alarm_poll_ticks: int | None = None,
                 dchannels: Mapping[int, int] | None = None):
        if channels is not None and not isinstance(channels, (list, tuple)):
            config = channels
            channels = getattr(config, "ports", None) or getattr(config, "channels", None)
            spans = spans if spans is not None else getattr(config, "spans", None)
        if not channels:
            raise BackendError("the dahdi backend needs at least one channel")
        self.ports = [_coerce_port(c) for c in channels]
        seen = set()
        for p in self.ports:
            if p.channel in seen:
                raise BackendError(f"channel {p.channel} is configured twice")
            seen.add(p.channel)
        self.span_config = {s.span: s for s in (_coerce_span(x) for x in (spans or []))}
        self.dchannels = self._dchannel_numbers(spans or [], dchannels or {})
        if not 16 <= int(block) <= D.DAHDI_MAX_BLOCKSIZE:
            raise BackendError(f"block {block} out of range 16..{D.DAHDI_MAX_BLOCKSIZE}")
        self.block = int(block)
        try:
            self.law_code = D.law_code(law)
        except ValueError as exc:
            raise BackendError(str(exc)) from None
        self.law = law
        self.silence = g711.silence_byte(law)
        self.emulation = emulation
        self.device = device
        self.numbufs = int(numbufs)
        self.timeout_s = timeout_s
        self.alarm_poll_ticks = alarm_poll_ticks or max(1, round(8000 / self.block))
        self.tick = 0
        self.params: dict[int, D.ChannelParams] = {}   # channel -> params read at open()
        self._fds: list[int] = []
        self._fd_of: dict[int, int] = {}
        self._fd_array = np.zeros(0, dtype=np.int32)
        self._status = np.zeros(len(self.ports), dtype=np.int32)
        self._span_alarms: dict[int, int] = {}
        self._span_fd: dict[int, int] = {}
        self._ticks_since_poll = 0
        self._client = None
        self._faults: dict[tuple[int, int], int] = {}     # (channel, status) -> count
        self._inventory: Inventory | None = None
        self._dfd: dict[int, int] = {}                     # span -> D-channel fd
        self._span_stats: dict[int, D.SpanStatus] = {}
        self.dframe_errors: dict[int, int] = {}            # span -> bad FCS, aborts, overruns

    # ---- Backend ------------------------------------------------------------------------
    def open(self) -> Inventory:
        if self._inventory is not None:
            raise BackendError("the dahdi backend is already open")
        self._install_seam()
        try:
            for port in self.ports:
                self._open_channel(port)
            for span, channel in self.dchannels.items():
                self._open_dchannel(span, channel)
            spans = self._read_spans()
            # Start every channel's audio from the same block: drop what queued up while
            # the channels were being opened one by one.
            with self._seam_errors():
                for port, fd in zip(self.ports, self._fds):
                    try:
                        D.flush(fd, D.DAHDI_FLUSH_READ | D.DAHDI_FLUSH_WRITE)
                    except D.DahdiError as exc:
                        raise BackendError(f"channel {port.channel}: {exc}") from None
        except BaseException:
            self._release()
            raise
        self._fd_array = np.array(self._fds, dtype=np.int32)
        self._inventory = Inventory(spans=spans, ports=list(self.ports), block=self.block,
                                    law=self.law)
        return self._inventory

    def exchange(self, tx: np.ndarray) -> TickIn:
        if self._inventory is None:
            raise BackendError("exchange() before open()")
        n = len(self.ports)
        tx = np.asarray(tx)
        if tx.dtype != np.uint8 or tx.shape != (n, self.block):
            raise BackendError(f"exchange: tx must be uint8 of shape ({n}, {self.block}), "
                               f"got {tx.dtype} {tx.shape}")
        tx = np.ascontiguousarray(tx)
        rx = np.empty((n, self.block), dtype=np.uint8)
        events: list[ChannelEvent] = []
        cas: list[tuple[int, int]] = []
        with self._seam_errors():
            status = D.exchange(self._fd_array, tx, rx, self._status)
            if status.any():
                self._recover(tx, rx, status, events, cas)
            self.tick += 1
            self._ticks_since_poll += 1
            if self._ticks_since_poll >= self.alarm_poll_ticks:
                self._ticks_since_poll = 0
                self._poll_span_alarms(events)
            dframes = self._read_dframes() if self._dfd else []
        return TickIn(tick=self.tick, rx=rx, events=events, cas=cas, dframes=dframes)

    def hook(self, channel: int, op: HookOp) -> None:
        fd = self._channel_fd(channel, "hook")
        try:
            op = HookOp(op)
        except ValueError:
            raise BackendError(f"hook: {op!r} is not a hook operation") from None
        with self._seam_errors():
            try:
                D.hook(fd, int(op))
            except D.DahdiError as exc:
                if exc.errno == errno.EINPROGRESS:     # non-blocking wink/flash under way
                    return
                raise BackendError(f"channel {channel}: DAHDI_HOOK {op.name} failed: "
                                   f"{exc.strerror}") from None

    def set_cas(self, channel: int, bits: int) -> None:
        fd = self._channel_fd(channel, "set_cas")
        with self._seam_errors():
            try:
                D.set_txbits(fd, int(bits) & 0xF)
            except D.DahdiError as exc:
                raise BackendError(f"channel {channel}: DAHDI_SETTXBITS failed: "
                                   f"{exc.strerror}") from None

    def span_alarms(self, span: int) -> int:
        return self._span_alarms.get(span, 0)

    def send_dframe(self, span: int, frame: bytes) -> None:
        fd = self._dfd.get(span)
        if fd is None:
            raise BackendError(f"span {span} has no D-channel open "
                               f"(D-channels: {sorted(self._dfd) or 'none'})")
        frame = bytes(frame)
        if not 3 <= len(frame) <= DFRAME_MAX - 2:
            raise BackendError(f"span {span}: a D-channel frame is 3..{DFRAME_MAX - 2} bytes, "
                               f"not {len(frame)}")
        with self._seam_errors():
            for _ in range(2):
                try:
                    D.write(fd, frame + b"\0\0")     # DAHDI puts the FCS in the 2 spare bytes
                    return
                except D.DahdiError as exc:
                    if exc.errno == D.ELAST:          # an event first (alarm, bad FCS)
                        self._dchannel_events(span, fd)
                        continue
                    raise BackendError(f"span {span}: D-channel write failed: "
                                       f"{exc.strerror}") from None
            raise BackendError(f"span {span}: D-channel write refused (events pending)")

    def span_counters(self, span: int) -> dict[str, int]:
        """Error counters from the last DAHDI_SPANSTAT (running totals) and the D-channel
        frames DAHDI refused. No `slips`: DAHDI counts timing slips inside the kernel
        (struct dahdi_count) but DAHDI_SPANSTAT does not carry them."""
        st = self._span_stats.get(span)
        if st is None:
            return {}
        return {"crc4_errors": st.crc4count, "bpv_errors": st.bpvcount,
                "frame_errors": st.fecount, "ebit_errors": st.ebitcount,
                "fas_errors": st.fascount, "dchannel_errors": self.dframe_errors.get(span, 0)}

    def channel_params(self, channel: int) -> D.ChannelParams:
        """DAHDI_GET_PARAMS now (hook state, alarms, law, signalling)."""
        fd = self._channel_fd(channel, "channel_params")
        with self._seam_errors():
            return D.get_params(fd)

    def close(self) -> None:
        self._release()
        self._inventory = None

    # ---- opening ------------------------------------------------------------------------
    # The seam is process-wide: backends sharing one emulation may be open together; a
    # different emulation (or the kernel) while one is in use would redirect their calls.
    _seam_owner = None        # the emulation the open backends share
    _seam_users = 0

    def _install_seam(self) -> None:
        cls = DahdiBackend
        if self.emulation is None:
            if cls._seam_users:
                raise BackendError("an emulated dahdi backend is open in this process; "
                                   "close it before opening one on the kernel driver")
            D.use_libc()
            return
        key = self.emulation
        if cls._seam_users and cls._seam_owner != key:
            raise BackendError("another DAHDI emulation is in use in this process")
        if cls._seam_users:
            self._client = D.emulation_client()
        elif isinstance(self.emulation, str):
            self._client = RemoteSyscalls(self.emulation, self.timeout_s)
        else:
            self._client = self.emulation
        D.use_emulation(self._client)
        cls._seam_owner = key
        cls._seam_users += 1

    def _open_channel(self, port: PortInfo) -> None:
        ch = port.channel
        with self._seam_errors():
            try:
                fd = D.open_file(self.device)
            except D.DahdiError as exc:
                raise BackendError(f"channel {ch}: cannot open {self.device}: "
                                   f"{exc.strerror} (is the DAHDI driver loaded?)") from None
            self._fds.append(fd)
            self._fd_of[ch] = fd
            try:
                D.specify(fd, ch)
            except D.DahdiError as exc:
                raise BackendError(f"channel {ch}: DAHDI_SPECIFY failed: "
                                   f"{_SPECIFY_ERRORS.get(exc.errno, exc.strerror)}") from None
            try:
                D.set_blocksize(fd, self.block)
                D.set_bufinfo(fd, D.BufferInfo(txbufpolicy=D.DAHDI_POLICY_IMMEDIATE,
                                               rxbufpolicy=D.DAHDI_POLICY_IMMEDIATE,
                                               numbufs=self.numbufs, bufsize=self.block))
                D.set_law(fd, self.law_code)
                params = D.get_params(fd)
            except D.DahdiError as exc:
                raise BackendError(f"channel {ch}: {exc}") from None
        self._check_params(port, params)
        self.params[ch] = params
        self._span_fd.setdefault(port.span, fd)

    def _dchannel_numbers(self, spans, given: Mapping[int, int]) -> dict[int, int]:
        """span -> D-channel number, for every PRI span."""
        out = {int(k): int(v) for k, v in given.items()}
        numbers = {p.channel for p in self.ports}
        for item in spans:
            if _span_signaling(item) not in _PRI_SIGNALING:
                continue
            span = _coerce_span(item).span
            if span in out:
                continue
            bearers = sorted(p.channel for p in self.ports if p.span == span)
            if not bearers:
                continue
            dchan = bearers[0] + 15
            if dchan in numbers:
                raise BackendError(
                    f"span {span}: its D-channel would be channel {dchan} (first channel + "
                    f"15, DAHDI's numbering), but that number is a bearer channel; number the "
                    f"span's channels as DAHDI does (channels = \"{bearers[0]}-{bearers[0] + 14},"
                    f"{bearers[0] + 16}-{bearers[0] + 30}\") or give dchannels")
            out[span] = dchan
        return out

    def _open_dchannel(self, span: int, channel: int) -> None:
        import os
        with self._seam_errors():
            try:
                fd = D.open_file(self.device, os.O_RDWR | os.O_NONBLOCK)
            except D.DahdiError as exc:
                raise BackendError(f"span {span} D-channel {channel}: cannot open "
                                   f"{self.device}: {exc.strerror}") from None
            self._dfd[span] = fd
            try:
                D.specify(fd, channel)
            except D.DahdiError as exc:
                raise BackendError(f"span {span} D-channel {channel}: DAHDI_SPECIFY failed: "
                                   f"{_SPECIFY_ERRORS.get(exc.errno, exc.strerror)}") from None
            try:
                D.set_bufinfo(fd, D.BufferInfo(txbufpolicy=D.DAHDI_POLICY_IMMEDIATE,
                                               rxbufpolicy=D.DAHDI_POLICY_IMMEDIATE,
                                               numbufs=DFRAME_NUMBUFS, bufsize=DFRAME_MAX))
                params = D.get_params(fd)
            except D.DahdiError as exc:
                raise BackendError(f"span {span} D-channel {channel}: {exc}") from None
        if params.sigtype not in HDLC_SIGNALLING:
            raise BackendError(f"span {span}: channel {channel} should be its D-channel "
                               f"(HDLC: dchan= in system.conf), but DAHDI signals it as "
                               f"{D.sig_name(params.sigtype)}")
        if params.spanno != span:
            raise BackendError(f"span {span}: D-channel {channel} is on span {params.spanno} "
                               f"in DAHDI")
        self.params[channel] = params

    def _read_dframes(self) -> list[tuple[int, bytes]]:
        out = []
        for span, fd in self._dfd.items():
            for _ in range(_DFRAMES_PER_TICK):
                try:
                    data = D.read(fd, DFRAME_MAX)
                except D.DahdiError as exc:
                    if exc.errno == D.ELAST:
                        self._dchannel_events(span, fd)
                        continue
                    if exc.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                        log.warning("span %d: D-channel read failed: %s", span, exc.strerror)
                    break
                if len(data) > 2:
                    out.append((span, data[:-2]))       # the 2 FCS bytes DAHDI leaves on
        return out

    def _dchannel_events(self, span: int, fd: int) -> None:
        """Events on a D-channel: bad frames are counted; alarms come with SPANSTAT."""
        for _ in range(64):
            try:
                code = D.get_event(fd)
            except D.DahdiError as exc:
                log.warning("span %d: D-channel DAHDI_GETEVENT failed: %s", span, exc)
                return
            if code == D.DAHDI_EVENT_NONE:
                return
            if code in (D.DAHDI_EVENT_BADFCS, D.DAHDI_EVENT_ABORT, D.DAHDI_EVENT_OVERRUN):
                self.dframe_errors[span] = self.dframe_errors.get(span, 0) + 1

    def _check_params(self, port: PortInfo, params: D.ChannelParams) -> None:
        ch = port.channel
        accepted = ACCEPTED_SIGNALLING[port.kind]
        if params.sigtype not in accepted:
            want = "/".join(sorted(D.sig_name(s) for s in accepted))
            raise BackendError(
                f"channel {ch}: configured as {_KIND_TEXT[port.kind]}, which needs DAHDI "
                f"signalling {want}, but DAHDI signals it as {D.sig_name(params.sigtype)}")
        if params.spanno != port.span:
            raise BackendError(f"channel {ch}: configured on span {port.span} but DAHDI has "
                               f"it on span {params.spanno}")
        if params.curlaw != self.law_code:
            raise BackendError(f"channel {ch}: DAHDI_SETLAW {self.law} did not take "
                               f"(law code {params.curlaw})")

    def _read_spans(self) -> list[SpanInfo]:
        spans = []
        for span, fd in self._span_fd.items():
            with self._seam_errors():
                try:
                    st = D.span_status(fd, span)
                except D.DahdiError as exc:
                    raise BackendError(f"span {span}: DAHDI_SPANSTAT failed: "
                                       f"{exc.strerror}") from None
            conf = self.span_config.get(span)
            kind = (conf.kind if conf and conf.kind else
                    "e1" if st.spantype in ("E1", "T1", "J1") else "analog")
            name = conf.name if conf and conf.name else st.name
            self._span_alarms[span] = st.alarms
            spans.append(SpanInfo(span=span, name=name, kind=kind, alarms=st.alarms))
        return spans

    # ---- per tick -----------------------------------------------------------------------
    def _recover(self, tx, rx, status, events, cas) -> None:
        """Fetch events where a channel was refused with ELAST, then write and read those
        channels again; give other failed rows silence (and a log line)."""
        pending = {}
        for i in np.flatnonzero(status):
            pending[int(i)] = int(status[i])
        for _ in range(_RETRY_ROUNDS):
            rewrite, reread = [], []
            for i, st in pending.items():
                if D.event_pending(st):
                    self._drain_events(i, events, cas)
                if D.write_failed(st) == D.ELAST:
                    rewrite.append(i)
                elif st in (-D.ELAST, D.HL_UNREAD):
                    reread.append(i)
                elif st != 0:
                    self._fault(i, st, rx)
            if not rewrite and not reread:
                return
            pending = {}
            if rewrite:
                idx = np.array(rewrite)
                st_w = D.exchange(self._fd_array[idx], np.ascontiguousarray(tx[idx]), None)
                for i, st in zip(rewrite, st_w):
                    if st == 0:
                        reread.append(i)
                    else:
                        pending[i] = int(st)
            if reread:
                reread.sort()
                idx = np.array(reread)
                sub = np.empty((len(idx), self.block), dtype=np.uint8)
                st_r = D.exchange(self._fd_array[idx], None, sub)
                for k, (i, st) in enumerate(zip(reread, st_r)):
                    if st == 0:
                        rx[i] = sub[k]
                    else:
                        pending[i] = int(st)
            if not pending:
                return
        for i, st in pending.items():
            self._fault(i, st, rx)

    def _drain_events(self, row: int, events, cas) -> None:
        port = self.ports[row]
        fd = self._fds[row]
        for _ in range(64):
            try:
                code = D.get_event(fd)
            except D.DahdiError as exc:
                log.warning("channel %d: DAHDI_GETEVENT failed: %s", port.channel, exc)
                return
            if code == D.DAHDI_EVENT_NONE:
                return
            try:
                event = HwEvent(code)
            except ValueError:
                log.debug("channel %d: ignoring DAHDI event %s", port.channel,
                          D.event_name(code))
                continue
            value = 0
            if event == HwEvent.BITSCHANGED:
                try:
                    value = D.get_rxbits(fd)
                except D.DahdiError as exc:
                    log.warning("channel %d: DAHDI_GETRXBITS failed: %s", port.channel, exc)
                    continue
                cas.append((port.channel, value))
            events.append(ChannelEvent(channel=port.channel, event=event, value=value))

    def _fault(self, row: int, status: int, rx) -> None:
        rx[row] = self.silence
        if status == D.HL_SHORT:
            what = "short read or write (block size mismatch?)"
        elif D.write_failed(status):
            what = f"write failed: {D.DahdiError(D.write_failed(status), 'write').strerror}"
        elif D.read_failed(status):
            what = f"read failed: {D.DahdiError(D.read_failed(status), 'read').strerror}"
        else:
            what = "events kept arriving; block dropped"
        key = (self.ports[row].channel, status)
        n = self._faults[key] = self._faults.get(key, 0) + 1
        if n == 1 or n % 1000 == 0:     # a dead channel must not flood the log
            log.warning("channel %d: %s (%d times)", key[0], what, n)

    def _poll_span_alarms(self, events) -> None:
        for span, fd in self._span_fd.items():
            try:
                st = D.span_status(fd, span)
            except D.DahdiError as exc:
                log.warning("span %d: DAHDI_SPANSTAT failed: %s", span, exc)
                continue
            self._span_stats[span] = st
            alarms = st.alarms
            if alarms != self._span_alarms.get(span, 0):
                self._span_alarms[span] = alarms
                events.append(ChannelEvent(channel=0, span=span, value=alarms,
                                           event=HwEvent.ALARM if alarms else HwEvent.NOALARM))

    # ---- helpers ------------------------------------------------------------------------
    def _channel_fd(self, channel: int, what: str) -> int:
        if self._inventory is None:
            raise BackendError(f"{what}() before open()")
        fd = self._fd_of.get(channel)
        if fd is None:
            raise BackendError(f"{what}: channel {channel} is not one of this backend's "
                               f"channels")
        return fd

    def _seam_errors(self):
        return _SeamErrors(self)

    def _release(self) -> None:
        for fd in [*self._fds, *self._dfd.values()]:
            try:
                D.close(fd)
            except (D.DahdiError, D.SeamError) as exc:
                log.debug("close fd %d: %s", fd, exc)
        self._fds.clear()
        self._dfd.clear()
        self._fd_of.clear()
        self._span_fd.clear()
        self._fd_array = np.zeros(0, dtype=np.int32)
        if self._client is not None:
            cls = DahdiBackend
            cls._seam_users -= 1
            if cls._seam_users == 0:
                cls._seam_owner = None
                D.use_libc()
                if isinstance(self._client, RemoteSyscalls):
                    self._client.close()
            self._client = None


class _SeamErrors:
    """Turns a failure of the emulation behind the seam into a BackendError."""

    def __init__(self, backend: DahdiBackend):
        self.backend = backend

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if isinstance(exc, D.SeamError):
            raise BackendError(str(exc)) from exc
        return False


# ---- benchmark: the C exchange loop over real file descriptors ------------------------------
def _loopback_fds(n: int) -> list:
    """Datagram sockets connected to themselves: a write comes back on the next read."""
    import os
    import resource
    import socket
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n + 64
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, want), hard))
    socks = []
    for i in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        addr = f"\0hotline-dahdi-bench-{os.getpid()}-{i}"
        s.bind(addr)
        s.connect(addr)
        socks.append(s)
    return socks


def bench(channels: int = 960, ticks: int = 500, block: int = 160) -> dict:
    """Time hl_exchange (write + read of every channel) on loopback sockets through libc."""
    D.use_libc()
    socks = _loopback_fds(channels)
    try:
        fds = np.array([s.fileno() for s in socks], dtype=np.int32)
        tx = np.random.default_rng(1).integers(0, 256, (channels, block), dtype=np.uint8)
        rx = np.empty_like(tx)
        status = np.zeros(channels, dtype=np.int32)
        D.exchange(fds, tx, rx, status)
        assert not status.any() and np.array_equal(rx, tx), "loopback exchange failed"
        t0 = time.perf_counter()
        for _ in range(ticks):
            D.exchange(fds, tx, rx, status)
        dt = (time.perf_counter() - t0) / ticks
    finally:
        for s in socks:
            s.close()
    return {"channels": channels, "ticks": ticks, "ms_per_tick": dt * 1e3,
            "us_per_channel": dt * 1e6 / channels,
            "tick_budget_pct": 100 * dt / (block / 8000)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="DAHDI backend tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the per-tick C exchange over libc (loopback fds)")
    b.add_argument("--channels", type=int, default=960)
    b.add_argument("--ticks", type=int, default=500)
    args = ap.parse_args(argv)
    r = bench(args.channels, args.ticks)
    print(f"hl_exchange via libc, {r['channels']} channels: {r['ms_per_tick']:.3f} ms per tick "
          f"({r['us_per_channel']:.2f} us per channel, {r['tick_budget_pct']:.1f}% of a "
          f"20 ms tick), {r['ticks']} ticks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
