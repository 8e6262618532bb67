"""The DAHDI emulation: answers the `dahdi` backend's system calls from the virtual cards.

cardd's `dahdi` backend sends every system call through one seam (drivers.native.dahdi).
In tests and demos those calls arrive here, with the header's request numbers and the raw
bytes of the header's structs, and are answered as the kernel driver would answer them:

- open("/dev/dahdi/channel") gives an fd; DAHDI_SPECIFY binds it to a channel (EINVAL for a
  channel that does not exist, EBUSY when another fd holds it).
- DAHDI_SET_BLOCKSIZE, DAHDI_SET/GET_BUFINFO, DAHDI_SETLAW (audio is transcoded when the
  host's law differs from the cards'), DAHDI_GET_PARAMS (a port with a phone attached, FXS,
  is FXO-signalled in DAHDI and the reverse), DAHDI_HOOK (-> cards.host_hook),
  DAHDI_GETEVENT, DAHDI_SPANSTAT, DAHDI_GETRXBITS/SETTXBITS (E1 CAS), DAHDI_CHANNO, DAHDI_FLUSH.
- read gives the channel's row of cards.host_rx() for each tick delivered; write queues
  the host's audio, which finish_tick() hands to cards.host_tx(). While an event is pending
  on a channel, read and write fail with ELAST, as DAHDI's do.
- A span alarm change reaches every open channel of the span as DAHDI_EVENT_ALARM or
  DAHDI_EVENT_NOALARM (as dahdi_alarm_notify does), and SPANSTAT reports the alarm bits
  and the span's error counters (VirtualCards.span_counters; slips have no SPANSTAT field).
- An E1 span's D-channel (timeslot 16: the span's first channel + 15, when no port has
  that number) is an HDLC channel: each read gives one frame the cards sent
  (cards.send_dframe) with 2 FCS bytes after it, each write is one frame with 2 spare
  bytes after it, handed to cards.host_dframe; reads on a non-blocking file with nothing
  waiting fail with EAGAIN. Frames for a span whose D-channel is not open are dropped.

`DahdiEmulation` is the functional core (no sockets, no clock). `DahdiEmulationFrontend`
serves it over a ZeroMQ ROUTER socket for a cardd in another thread or process and keeps
the simulator's Frontend contract.
"""
from __future__ import annotations

import collections
import dataclasses
import errno
import logging
import os
import select
import time

import numpy as np

from drivers.backends.base import HookOp, HwEvent, PortKind
from drivers.media import g711
from drivers.native import dahdi as D
from drivers.native.dahdi import SyscallReply, SyscallRequest
from simulators.cards import Frontend, Port, VirtualCards

log = logging.getLogger("ctisim.dahdi")

MAX_EVENTS = 64          # DAHDI keeps this many events per channel (DAHDI_MAX_EVENTSIZE)
MAX_NUM_BUFS = 32        # DAHDI_SET_BUFINFO accepts 2..32 buffers
CAS_IDLE = 0b1001        # ABCD idle pattern of an E1 CAS timeslot
_HOOK_OPS = frozenset(int(op) for op in HookOp)
DFRAME_QUEUE = 64         # frames a D-channel holds for its reader (numbufs)

_DEFAULT_SIGTYPE = {
    PortKind.FXS: D.DAHDI_SIG_FXOKS,   # our port feeds a phone: FXO signalling in DAHDI
    PortKind.FXO: D.DAHDI_SIG_FXSKS,   # our port is on a CO line: FXS signalling
    PortKind.E1: D.DAHDI_SIG_CAS,
}


class WouldBlock(RuntimeError):
    """An in-process blocking call found nothing to return and no clock to wait for."""


@dataclasses.dataclass
class _File:
    fd: int
    flags: int
    channel: int | None = None


@dataclasses.dataclass
class _Channel:
    """The kernel-side state of one open channel."""
    port: Port
    fd: int
    sigtype: int
    law: str
    blocksize: int = D.DAHDI_DEFAULT_BLOCKSIZE
    numbufs: int = D.DAHDI_DEFAULT_NUM_BUFS
    txbufpolicy: int = D.DAHDI_POLICY_IMMEDIATE
    rxbufpolicy: int = D.DAHDI_POLICY_IMMEDIATE
    txhooksig: int = D.DAHDI_ONHOOK
    ringing_in: bool = False            # FXO port: ring voltage from the CO
    rx: bytearray = dataclasses.field(default_factory=bytearray)
    tx: bytearray = dataclasses.field(default_factory=bytearray)
    events: collections.deque = dataclasses.field(default_factory=collections.deque)
    overruns: int = 0

    @property
    def analog(self) -> bool:
        return self.port.info.kind in (PortKind.FXS, PortKind.FXO)

    def buffer_cap(self, tick_block: int) -> int:
        return max(self.numbufs, 2) * max(self.blocksize, tick_block)


@dataclasses.dataclass
class _DChannel:
    """The kernel-side state of an open D-channel (HDLC, with FCS)."""
    channel: int
    span: int
    fd: int
    numbufs: int = 16
    bufsize: int = 1024
    frames: collections.deque = dataclasses.field(default_factory=collections.deque)
    events: collections.deque = dataclasses.field(default_factory=collections.deque)
    overruns: int = 0


class DahdiEmulation:
    """Answers SyscallRequests from the state of `cards`.

    handle(req, token) answers one call, or returns None when it would block (a read with
    no block ready, a poll with nothing ready): with a token the call is parked and its
    answer comes out of take_wakeups() after a later deliver(). call(req) is the in-process
    client for drivers.native.dahdi.use_emulation(): when a call would block it runs
    `on_block()` (the test's clock: finish_tick, next tick, world, deliver) and retries.
    """

    def __init__(self, cards: VirtualCards, *, sigtypes: dict[int, int] | None = None,
                 on_block=None):
        self.cards = cards
        self.on_block = on_block
        self.sigtypes = {p.channel: _DEFAULT_SIGTYPE[p.info.kind] for p in cards.ports}
        self.sigtypes.update(sigtypes or {})
        self.files: dict[int, _File] = {}
        self.channels: dict[int, _Channel] = {}
        self.dchannels: dict[int, _DChannel] = {}          # channel number -> open D-channel
        self.dchannel_numbers = self._dchannel_numbers()   # channel number -> span
        self._next_fd = 1000
        self._parked: list[tuple[object, SyscallRequest]] = []
        self.tick_open = False        # a tick was delivered and is not finished yet
        self._span_in_alarm = {s: bool(a) for s, a in cards.span_alarms.items()}
        self._chanpos = {}
        for span in {p.info.span for p in cards.ports}:
            members = [p for p in cards.ports if p.info.span == span]
            for i, p in enumerate(members):
                self._chanpos[p.channel] = i + 1
        # What the host asked for, for tests and diagnostics.
        self.ioctls = collections.Counter()      # request number -> count
        self.calls = collections.Counter()       # op name -> count
        self._ioctl_handlers = {
            D.DAHDI_SPECIFY: self._specify,
            D.DAHDI_SET_BLOCKSIZE: self._set_blocksize,
            D.DAHDI_GET_BLOCKSIZE: self._get_blocksize,
            D.DAHDI_SET_BUFINFO: self._set_bufinfo,
            D.DAHDI_GET_BUFINFO: self._get_bufinfo,
            D.DAHDI_SETLAW: self._setlaw,
            D.DAHDI_GET_PARAMS: self._get_params,
            D.DAHDI_HOOK: self._hook,
            D.DAHDI_GETEVENT: self._getevent,
            D.DAHDI_SPANSTAT: self._spanstat,
            D.DAHDI_CHANNO: self._channo,
            D.DAHDI_FLUSH: self._flush,
            D.DAHDI_GETRXBITS: self._getrxbits,
            D.DAHDI_SETTXBITS: self._settxbits,
        }

    # ---- the clock side (called by the simulator's tick loop) -----------------------------
    def deliver(self) -> None:
        """This tick's rx audio and events become readable on every open channel.

        A tick the host has not finished writing ends here, as a card's interrupt would end
        it: what was written goes out, silence where nothing was (an underrun)."""
        if self.tick_open:
            self.finish_tick()
        self.tick_open = True
        self.route_events()
        self._route_dframes()
        rows = self.cards.host_rx()
        for ch in self.channels.values():
            row = rows[ch.port.row]
            if ch.law != self.cards.law:
                row = g711.encode(ch.law, g711.decode(self.cards.law, row))
            ch.rx += row.tobytes()
            cap = ch.buffer_cap(self.cards.block)
            if len(ch.rx) > cap:          # the host fell behind: drop the oldest audio
                del ch.rx[:len(ch.rx) - cap]
                ch.overruns += 1

    def route_events(self) -> None:
        """Queue the cards' pending host events on their channels now (deliver() does it
        too; a real-time clock may call this between ticks, as events are not tick-bound)."""
        for ev in self.cards.take_host_events():
            self._route_event(ev)

    def answered(self) -> bool:
        """Every open channel has written a tick's worth of audio (lockstep)."""
        need = self.cards.block
        return bool(self.channels) and all(len(ch.tx) >= need for ch in self.channels.values())

    def finish_if_answered(self) -> bool:
        """Finish the delivered tick if every open channel has written it. True when no
        delivered tick is waiting for the host any more."""
        if self.tick_open and self.answered():
            self.finish_tick()
        return not self.tick_open

    def finish_tick(self) -> None:
        """Hand what the host wrote for this tick to the cards (silence where it did not)."""
        self.tick_open = False
        block = self.cards.block
        tx = np.full((len(self.cards.ports), block), self.cards.silence, dtype=np.uint8)
        for ch in self.channels.values():
            if len(ch.tx) >= block:
                row = np.frombuffer(bytes(ch.tx[:block]), dtype=np.uint8)
                del ch.tx[:block]
                if ch.law != self.cards.law:
                    row = g711.encode(self.cards.law, g711.decode(ch.law, row))
                tx[ch.port.row] = row
        self.cards.host_tx(tx)

    def take_wakeups(self) -> list[tuple[object, SyscallReply]]:
        """Answers for parked calls that can now complete (after deliver())."""
        parked, self._parked = self._parked, []
        out = []
        for token, req in parked:
            reply = self.handle(req)
            if reply is None and req.op == "poll":
                reply = SyscallReply(0, 0, D.encode_revents([0] * len(req.poll_fds())))
            if reply is None:
                self._parked.append((token, req))
            else:
                out.append((token, reply))
        return out

    def reset_host(self) -> None:
        """The host went away: close every file it held."""
        for fd in list(self.files):
            self._close(fd)
        self._parked.clear()

    # ---- the host side ------------------------------------------------------------------
    def call(self, req: SyscallRequest) -> SyscallReply:
        """In-process client: answer now, running the clock (on_block) while it would block."""
        for _ in range(8):
            reply = self.handle(req)
            if reply is not None:
                return reply
            if self.on_block is None:
                raise WouldBlock(f"{req.op} on fd {req.fd} would block and the emulation has "
                                 "no clock (set on_block or deliver() first)")
            self.on_block()
        raise WouldBlock(f"{req.op} on fd {req.fd} still blocked after 8 ticks")

    def handle(self, req: SyscallRequest, token=None) -> SyscallReply | None:
        self.calls[req.op] += 1
        try:
            reply = getattr(self, "_sys_" + req.op)(req)
        except _Errno as exc:
            return SyscallReply.fail(exc.errno)
        if reply is None and token is not None:
            self._parked.append((token, req))
        return reply

    # ---- system calls -------------------------------------------------------------------
    def _sys_open(self, req: SyscallRequest) -> SyscallReply:
        path = req.data.decode(errors="replace")
        if path != D.DEVICE:
            raise _Errno(errno.ENOENT)
        fd = self._next_fd
        self._next_fd += 1
        self.files[fd] = _File(fd=fd, flags=req.arg)
        return SyscallReply(fd)

    def _sys_close(self, req: SyscallRequest) -> SyscallReply:
        if req.fd not in self.files:
            raise _Errno(errno.EBADF)
        self._close(req.fd)
        return SyscallReply(0)

    def _sys_ioctl(self, req: SyscallRequest) -> SyscallReply:
        f = self._file(req.fd)
        self.ioctls[req.arg] += 1
        handler = self._ioctl_handlers.get(req.arg)
        if handler is None:
            raise _Errno(errno.ENOTTY)
        if len(req.data) != D.ioc_size(req.arg):
            raise _Errno(errno.EFAULT)
        if f.channel is None and req.arg != D.DAHDI_SPECIFY:
            raise _Errno(errno.ENOSYS)     # an unbound channel file knows only SPECIFY
        if self._dchan(f.fd) is not None:
            out = self._dchan_ioctl(f, req.arg, req.data)
            return SyscallReply(0, 0, out if out is not None else req.data)
        out = handler(f, req.data)
        return SyscallReply(0, 0, out if out is not None else req.data)

    def _sys_read(self, req: SyscallRequest) -> SyscallReply | None:
        if self._dchan(req.fd) is not None:
            return self._dchan_read(req)
        ch = self._bound(req.fd)
        if ch.events:
            raise _Errno(D.ELAST)
        if len(ch.rx) < ch.blocksize:
            if self.files[req.fd].flags & os.O_NONBLOCK:
                raise _Errno(errno.EAGAIN)
            return None
        block = bytes(ch.rx[:ch.blocksize])
        del ch.rx[:ch.blocksize]            # a read consumes a whole buffer, as DAHDI's does
        return SyscallReply(min(req.arg, len(block)), 0, block[:req.arg])

    def _sys_write(self, req: SyscallRequest) -> SyscallReply:
        if self._dchan(req.fd) is not None:
            return self._dchan_write(req)
        ch = self._bound(req.fd)
        if not req.data:
            raise _Errno(errno.EINVAL)
        if ch.events:
            raise _Errno(D.ELAST)
        ch.tx += req.data
        cap = ch.buffer_cap(self.cards.block)
        if len(ch.tx) > cap:                # the host ran ahead of the clock
            del ch.tx[:len(ch.tx) - cap]
        return SyscallReply(len(req.data))

    def _sys_poll(self, req: SyscallRequest) -> SyscallReply | None:
        revents = []
        for fd, events in req.poll_fds():
            f = self.files.get(fd)
            if f is None:
                revents.append(select.POLLNVAL)
                continue
            ch = self.channels.get(f.channel) if f.channel is not None else None
            r = 0
            d = self.dchannels.get(f.channel) if f.channel is not None else None
            if d is not None and d.fd == fd:
                r = select.POLLPRI if d.events else (select.POLLIN if d.frames else 0)
                r |= select.POLLOUT
            if ch is not None:
                if ch.events:
                    r |= select.POLLPRI
                elif len(ch.rx) >= ch.blocksize:
                    r |= select.POLLIN
                if len(ch.tx) < ch.buffer_cap(self.cards.block):
                    r |= select.POLLOUT
            revents.append(r & (events | select.POLLERR | select.POLLHUP | select.POLLNVAL))
        ready = sum(1 for r in revents if r)
        if not ready and req.arg != 0:
            return None          # parked until the next deliver(): a one-tick timeout
        return SyscallReply(ready, 0, D.encode_revents(revents))

    # ---- ioctls (in: the argument's bytes; out: the bytes to copy back, or None) ---------
    def _specify(self, f: _File, data: bytes) -> None:
        if f.channel is not None:
            raise _Errno(errno.EINVAL)
        channel = _int(data)
        port = self.cards.by_channel.get(channel)
        if port is None and channel in self.dchannel_numbers:
            if channel in self.dchannels:
                raise _Errno(errno.EBUSY)
            self.dchannels[channel] = _DChannel(channel=channel, fd=f.fd,
                                                span=self.dchannel_numbers[channel])
            f.channel = channel
            return
        if port is None:
            raise _Errno(errno.EINVAL)
        if channel in self.channels:
            raise _Errno(errno.EBUSY)
        self.channels[channel] = _Channel(port=port, fd=f.fd, sigtype=self.sigtypes[channel],
                                          law=self.cards.law)
        f.channel = channel

    def _set_blocksize(self, f: _File, data: bytes) -> None:
        size = _int(data)
        if not 16 <= size <= D.DAHDI_MAX_BLOCKSIZE:
            raise _Errno(errno.EINVAL)
        ch = self.channels[f.channel]
        ch.blocksize = size
        ch.rx.clear()                       # DAHDI reallocates its buffers
        ch.tx.clear()

    def _get_blocksize(self, f: _File, data: bytes) -> bytes:
        return _pack(self.channels[f.channel].blocksize)

    def _set_bufinfo(self, f: _File, data: bytes) -> None:
        info = D.BufferInfo.from_bytes(data)
        if not 2 <= info.numbufs <= MAX_NUM_BUFS or \
                not 16 <= info.bufsize <= D.DAHDI_MAX_BLOCKSIZE:
            raise _Errno(errno.EINVAL)
        ch = self.channels[f.channel]
        ch.numbufs, ch.blocksize = info.numbufs, info.bufsize
        ch.txbufpolicy, ch.rxbufpolicy = info.txbufpolicy, info.rxbufpolicy
        ch.rx.clear()
        ch.tx.clear()

    def _get_bufinfo(self, f: _File, data: bytes) -> bytes:
        ch = self.channels[f.channel]
        return D.BufferInfo(txbufpolicy=ch.txbufpolicy, rxbufpolicy=ch.rxbufpolicy,
                            numbufs=ch.numbufs, bufsize=ch.blocksize,
                            readbufs=len(ch.rx) // ch.blocksize,
                            writebufs=len(ch.tx) // ch.blocksize).to_bytes()

    def _setlaw(self, f: _File, data: bytes) -> None:
        code = _int(data)
        if code == D.DAHDI_LAW_DEFAULT:
            law = self.cards.law
        elif code in (D.DAHDI_LAW_ALAW, D.DAHDI_LAW_MULAW):
            law = D.law_name(code)
        else:
            raise _Errno(errno.EINVAL)
        self.channels[f.channel].law = law

    def _get_params(self, f: _File, data: bytes) -> bytes:
        ch = self.channels[f.channel]
        port = ch.port
        span = port.info.span
        alarms = self.cards.span_alarms.get(span, 0)
        fields = dict(channo=port.channel, spanno=span, chanpos=self._chanpos[port.channel],
                      sigtype=ch.sigtype, sigcap=ch.sigtype, curlaw=D.law_code(ch.law),
                      name=f"HOTSIM/{span}/{self._chanpos[port.channel]}",
                      chan_alarms=alarms)
        if port.info.kind == PortKind.FXS:
            fields.update(rxisoffhook=int(port.far_offhook), txhooksig=ch.txhooksig)
        elif port.info.kind == PortKind.FXO:
            # DAHDI reports ring voltage as "off hook" on an FXS-signalled channel.
            fields.update(rxisoffhook=int(ch.ringing_in), txhooksig=ch.txhooksig)
        elif ch.sigtype == D.DAHDI_SIG_CAS:
            fields.update(rxbits=port.cas_to_host, txbits=port.cas_from_host,
                          idlebits=CAS_IDLE, rxisoffhook=int(port.cas_to_host != CAS_IDLE))
        return dataclasses.replace(D.ChannelParams.from_bytes(data), **fields).to_bytes()

    def _hook(self, f: _File, data: bytes) -> None:
        ch = self.channels[f.channel]
        op = _int(data)
        if not ch.analog or op not in _HOOK_OPS:
            raise _Errno(errno.EINVAL)
        ch.txhooksig = op
        self.cards.host_hook(ch.port.channel, HookOp(op))

    def _getevent(self, f: _File, data: bytes) -> bytes:
        ch = self.channels[f.channel]
        return _pack(ch.events.popleft() if ch.events else D.DAHDI_EVENT_NONE)

    def _spanstat(self, f: _File, data: bytes) -> bytes:
        req = D.SpanStatus.from_bytes(data)
        span = req.spanno or self.channels[f.channel].port.info.span
        info = next((s for s in self.cards.inventory.spans if s.span == span), None)
        if info is None:
            raise _Errno(errno.EINVAL)
        ports = [p for p in self.cards.ports if p.info.span == span]
        kinds = {p.info.kind for p in ports}
        if info.kind == "e1":
            spantype = "E1"
            lineconfig = D.DAHDI_CONFIG_HDB3 | D.DAHDI_CONFIG_CRC4
        else:
            spantype = kinds.pop().value.upper() if len(kinds) == 1 else "ANALOG_MIXED"
            lineconfig = 0
        # The span's error counters as DAHDI keeps them (C ints: they wrap as the kernel's
        # do); slips have no field in SPANSTAT.
        counts = {k: v & 0x7FFFFFFF for k, v in self.cards.span_counters.get(span, {}).items()}
        return dataclasses.replace(
            req, spanno=span, name=info.name, desc=f"Hotline simulated span {span} ({info.kind})",
            alarms=self.cards.span_alarms.get(span, 0), numchans=len(ports),
            bpvcount=counts.get("bpv_errors", 0), crc4count=counts.get("crc4_errors", 0),
            ebitcount=counts.get("ebit_errors", 0), fascount=counts.get("fas_errors", 0),
            fecount=counts.get("frame_errors", 0),
            totalchans=len(ports), totalspans=len(self.cards.inventory.spans),
            lineconfig=lineconfig, linecompat=lineconfig, spantype=spantype).to_bytes()

    def _channo(self, f: _File, data: bytes) -> bytes:
        return _pack(f.channel)

    def _flush(self, f: _File, data: bytes) -> None:
        what = _int(data)
        ch = self.channels[f.channel]
        if what & D.DAHDI_FLUSH_READ:
            ch.rx.clear()
        if what & D.DAHDI_FLUSH_WRITE:
            ch.tx.clear()
        if what & D.DAHDI_FLUSH_EVENT:
            ch.events.clear()

    def _getrxbits(self, f: _File, data: bytes) -> bytes:
        ch = self.channels[f.channel]
        if ch.sigtype != D.DAHDI_SIG_CAS:
            raise _Errno(errno.EINVAL)
        return _pack(ch.port.cas_to_host)

    def _settxbits(self, f: _File, data: bytes) -> None:
        ch = self.channels[f.channel]
        if ch.sigtype != D.DAHDI_SIG_CAS:
            raise _Errno(errno.EINVAL)
        self.cards.host_cas(ch.port.channel, _int(data) & 0xF)

    # ---- helpers ------------------------------------------------------------------------
    def _file(self, fd: int) -> _File:
        f = self.files.get(fd)
        if f is None:
            raise _Errno(errno.EBADF)
        return f

    def _bound(self, fd: int) -> _Channel:
        f = self._file(fd)
        if f.channel is None:
            raise _Errno(errno.EINVAL)
        return self.channels[f.channel]

    def _close(self, fd: int) -> None:
        f = self.files.pop(fd)
        if f.channel is not None:
            self.channels.pop(f.channel, None)
            d = self.dchannels.get(f.channel)
            if d is not None and d.fd == fd:
                del self.dchannels[f.channel]

    # ---- D-channels ---------------------------------------------------------------------
    def _dchannel_numbers(self) -> dict[int, int]:
        """channel number -> span for each E1 span's timeslot 16 (first channel + 15)."""
        out = {}
        for info in self.cards.inventory.spans:
            if info.kind != "e1":
                continue
            chans = sorted(p.channel for p in self.cards.ports if p.info.span == info.span)
            if chans and chans[0] + 15 not in self.cards.by_channel:
                out[chans[0] + 15] = info.span
        return out

    def _dchan(self, fd: int) -> _DChannel | None:
        f = self.files.get(fd)
        if f is None or f.channel is None:
            return None
        d = self.dchannels.get(f.channel)
        return d if d is not None and d.fd == fd else None

    def _route_dframes(self) -> None:
        by_span = {d.span: d for d in self.dchannels.values()}
        for span, frame in self.cards.take_dframes_to_host():
            d = by_span.get(span)
            if d is None:
                continue                   # nobody has the D-channel open: lost, as on a card
            if len(d.frames) >= DFRAME_QUEUE:
                d.overruns += 1
                self._queue_d(d, D.DAHDI_EVENT_OVERRUN)
                continue
            d.frames.append(bytes(frame))

    def _queue_d(self, d: _DChannel, code: int) -> None:
        if len(d.events) < MAX_EVENTS:
            d.events.append(code)

    def _dchan_read(self, req: SyscallRequest) -> SyscallReply | None:
        d = self._dchan(req.fd)
        if d.events:
            raise _Errno(D.ELAST)
        if not d.frames:
            if self.files[req.fd].flags & os.O_NONBLOCK:
                raise _Errno(errno.EAGAIN)
            return None
        data = d.frames.popleft() + b"\xff\xff"     # the frame and its 2 FCS bytes
        return SyscallReply(min(req.arg, len(data)), 0, data[:req.arg])

    def _dchan_write(self, req: SyscallRequest) -> SyscallReply:
        d = self._dchan(req.fd)
        if d.events:
            raise _Errno(D.ELAST)
        if len(req.data) < 3 or len(req.data) > d.bufsize:
            raise _Errno(errno.EINVAL)
        self.cards.host_dframe(d.span, req.data[:-2])  # DAHDI fills the 2 spare bytes with FCS
        return SyscallReply(len(req.data))

    def _dchan_ioctl(self, f: _File, request: int, data: bytes) -> bytes | None:
        d = self.dchannels[f.channel]
        if request == D.DAHDI_GET_PARAMS:
            alarms = self.cards.span_alarms.get(d.span, 0)
            return dataclasses.replace(
                D.ChannelParams.from_bytes(data), channo=d.channel, spanno=d.span, chanpos=16,
                sigtype=D.DAHDI_SIG_HARDHDLC, sigcap=D.DAHDI_SIG_HARDHDLC,
                curlaw=D.law_code(self.cards.law), name=f"HOTSIM/{d.span}/16",
                chan_alarms=alarms).to_bytes()
        if request == D.DAHDI_SET_BUFINFO:
            info = D.BufferInfo.from_bytes(data)
            if not 2 <= info.numbufs <= MAX_NUM_BUFS or not 16 <= info.bufsize <= 65536:
                raise _Errno(errno.EINVAL)
            d.numbufs, d.bufsize = info.numbufs, info.bufsize
            return None
        if request == D.DAHDI_GET_BUFINFO:
            return D.BufferInfo(numbufs=d.numbufs, bufsize=d.bufsize,
                                readbufs=len(d.frames)).to_bytes()
        if request == D.DAHDI_GETEVENT:
            return _pack(d.events.popleft() if d.events else D.DAHDI_EVENT_NONE)
        if request == D.DAHDI_FLUSH:
            what = _int(data)
            if what & D.DAHDI_FLUSH_READ:
                d.frames.clear()
            if what & D.DAHDI_FLUSH_EVENT:
                d.events.clear()
            return None
        if request == D.DAHDI_CHANNO:
            return _pack(d.channel)
        if request == D.DAHDI_SPANSTAT:
            req = D.SpanStatus.from_bytes(data)
            return self._spanstat(f, dataclasses.replace(req, spanno=req.spanno or d.span)
                                  .to_bytes())
        raise _Errno(errno.EINVAL)      # audio, hook and CAS requests mean nothing on HDLC

    def _route_event(self, ev) -> None:
        if ev.channel == 0:
            # A span alarm change reaches every channel of the span, on a change of the
            # general state only (alarm <-> no alarm), as DAHDI's alarm notification does.
            in_alarm = bool(self.cards.span_alarms.get(ev.span, 0))
            if self._span_in_alarm.get(ev.span) == in_alarm:
                return
            self._span_in_alarm[ev.span] = in_alarm
            code = D.DAHDI_EVENT_ALARM if in_alarm else D.DAHDI_EVENT_NOALARM
            for ch in self.channels.values():
                if ch.port.info.span == ev.span:
                    self._queue(ch, code)
            for d in self.dchannels.values():
                if d.span == ev.span:
                    self._queue_d(d, code)
            return
        ch = self.channels.get(ev.channel)
        if ch is None:
            return                  # DAHDI resets a channel's events when it is opened
        if ev.event in (HwEvent.RINGERON, HwEvent.RINGBEGIN):
            ch.ringing_in = True
        elif ev.event in (HwEvent.RINGEROFF, HwEvent.RINGOFFHOOK, HwEvent.ONHOOK):
            ch.ringing_in = False
        self._queue(ch, int(ev.event))

    def _queue(self, ch: _Channel, code: int) -> None:
        if len(ch.events) >= MAX_EVENTS:
            log.warning("channel %d: event queue full, dropping %s", ch.port.channel,
                        D.event_name(code))
            return
        ch.events.append(code)


class _Errno(Exception):
    def __init__(self, err: int):
        super().__init__(err)
        self.errno = err


def _int(data: bytes) -> int:
    return int.from_bytes(data[:4], "little", signed=True)


def _pack(value: int) -> bytes:
    return int(value).to_bytes(4, "little", signed=True)


class DahdiEmulationFrontend(Frontend):
    """Serves a DahdiEmulation over ZeroMQ (ROUTER) at `endpoint` for the `dahdi` backend.

    The simulator's clock loop owns time: deliver() makes the tick's audio and events
    readable (answering reads that were waiting for it); collect(deadline) serves calls
    until every open channel wrote its tick, which then goes to the cards (lockstep), or
    the deadline passes. With deadline None it waits for the host, but returns when the
    host closes its last file, and gives up (forgetting the host's files) after
    `host_timeout_s` without a single call. connected(): the host has a channel open.
    """

    def __init__(self, cards: VirtualCards, endpoint: str, *,
                 emulation: DahdiEmulation | None = None, host_timeout_s: float = 10.0,
                 context=None):
        self.cards = cards
        self.endpoint = endpoint
        self.emulation = emulation or DahdiEmulation(cards)
        self.host_timeout_s = host_timeout_s
        self._context = context
        self._sock = None
        self._last_call = time.monotonic()
        self._host_left = False      # the host closed its last file during this tick

    def start(self) -> None:
        import zmq

        from drivers.bus import ensure_ipc_dir
        ensure_ipc_dir(self.endpoint)
        ctx = self._context or zmq.Context.instance()
        self._zmq = zmq
        self._sock = ctx.socket(zmq.ROUTER)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.bind(self.endpoint)
        self._last_call = time.monotonic()

    def deliver(self) -> None:
        self._serve_ready()
        self.emulation.finish_if_answered()
        self.emulation.deliver()
        self._send_wakeups()

    def collect(self, deadline: float | None) -> bool:
        """Serve calls until the host has written the delivered tick on every channel it has
        open (True), or until the deadline (False; the tick then ends at the next deliver).
        May be called again for the same tick, as the fast clock does."""
        emu = self.emulation
        while True:
            self._serve_ready()
            if emu.finish_if_answered() and self.connected():
                return True
            if self._host_left:      # a clean close: no host to wait for
                self._host_left = False
                return False
            now = time.monotonic()
            if deadline is None:
                if now - self._last_call > self.host_timeout_s:
                    if emu.files:
                        log.warning("DAHDI host silent for %.1f s: closing its %d files",
                                    self.host_timeout_s, len(emu.files))
                        emu.reset_host()
                    return False
                wait = self._last_call + self.host_timeout_s - now
            else:
                wait = deadline - now
                if wait <= 0:
                    return False
            self._sock.poll(max(1, int(wait * 1000)), self._zmq.POLLIN)

    def connected(self) -> bool:
        return bool(self.emulation.channels)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None

    def _serve_ready(self) -> None:
        """Answer every call already waiting on the socket."""
        zmq = self._zmq
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._last_call = time.monotonic()
            envelope, payload = frames[:-1], frames[-1]
            try:
                req = SyscallRequest.decode(payload)
            except ValueError as exc:
                log.warning("bad DAHDI syscall message: %s", exc)
                self._reply(envelope, SyscallReply.fail(errno.EPROTO))
                continue
            try:
                reply = self.emulation.handle(req, token=envelope)
            except Exception:   # a bug in the emulation must not stop the simulator
                log.exception("DAHDI emulation failed on %s", req.op)
                reply = SyscallReply.fail(errno.EIO)
            if reply is not None:
                self._reply(envelope, reply)
            if req.op == "close" and not self.emulation.files:
                self._host_left = True

    def _send_wakeups(self) -> None:
        for envelope, reply in self.emulation.take_wakeups():
            self._reply(envelope, reply)

    def _reply(self, envelope, reply: SyscallReply) -> None:
        try:
            self._sock.send_multipart([*envelope, reply.encode()], self._zmq.NOBLOCK)
        except self._zmq.ZMQError as exc:
            log.warning("DAHDI reply not sent: %s", exc)


# ---- benchmark: the dahdi backend against the emulation ------------------------------------
def bench(channels: int = 30, ticks: int = 200) -> dict:
    """ms per tick of DahdiBackend.exchange() against the emulation, in-process and over
    ZeroMQ (ipc) with the fast clock in a thread. Emulation cost, not the kernel's."""
    import tempfile
    import threading

    from drivers.backends.base import PortInfo, SpanInfo
    from drivers.backends.dahdi import DahdiBackend
    from simulators.clock import Clock

    spans = [SpanInfo(1, "bench", "analog")]
    ports = [PortInfo(i + 1, 1, PortKind.FXS) for i in range(channels)]
    out = {"channels": channels, "ticks": ticks}

    cards = VirtualCards(spans, ports)
    emu = DahdiEmulation(cards)

    def step():
        emu.finish_tick()
        cards.next_tick()
        emu.deliver()
    emu.on_block = step
    be = DahdiBackend(ports, emulation=emu)
    be.open()
    tx = np.full((channels, cards.block), cards.silence, dtype=np.uint8)
    t0 = time.perf_counter()
    for _ in range(ticks):
        be.exchange(tx)
    out["inprocess_ms_per_tick"] = (time.perf_counter() - t0) * 1e3 / ticks
    be.close()

    class Quiet:
        def step(self, tick):
            pass

    with tempfile.TemporaryDirectory() as tmp:
        cards = VirtualCards(spans, ports)
        fe = DahdiEmulationFrontend(cards, f"ipc://{tmp}/dahdi.sock")
        clock = Clock(cards, Quiet(), fe, mode="fast")
        ready = threading.Event()

        def run():
            fe.start()
            ready.set()
            try:
                clock.run()
            finally:
                fe.close()
        th = threading.Thread(target=run, daemon=True)
        th.start()
        ready.wait(5)
        be = DahdiBackend(ports, emulation=fe.endpoint)
        be.open()
        t0 = time.perf_counter()
        for _ in range(ticks):
            be.exchange(tx)
        out["zeromq_ms_per_tick"] = (time.perf_counter() - t0) * 1e3 / ticks
        be.close()
        clock.stop()
        th.join(5)
    return out


def main(argv=None) -> int:
    import argparse
    ap = argparse.ArgumentParser(description="ctisim DAHDI emulation tools")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the dahdi backend against the emulation")
    b.add_argument("--channels", type=int, default=30)
    b.add_argument("--ticks", type=int, default=200)
    args = ap.parse_args(argv)
    r = bench(args.channels, args.ticks)
    print(f"dahdi backend on the emulation, {r['channels']} channels, {r['ticks']} ticks: "
          f"in-process {r['inprocess_ms_per_tick']:.2f} ms per tick, "
          f"over ZeroMQ {r['zeromq_ms_per_tick']:.2f} ms per tick")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
