"""The `dahdi` backend's own code against the simulator's DAHDI emulation.

Every system call of the backend goes through the cffi seam to a DahdiEmulation: in-process
(the callbacks call the emulation directly and its clock runs while a read would block) or
over a real ZeroMQ socket to DahdiEmulationFrontend driven by a lockstep clock thread.
"""
from __future__ import annotations

import errno
import select
import threading
import time

import numpy as np
import pytest

from drivers.backends import open_backend
from drivers.backends.base import (BackendError, ChannelEvent, HookOp, HwEvent, PortInfo,
                                   PortKind, SpanAlarm, SpanInfo)
from drivers.backends.dahdi import DahdiBackend, bench
from drivers.media import g711
from drivers.native import dahdi as D
from simulators.cards import VirtualCards
from simulators.clock import Clock
from simulators.dahdi_emulation import DahdiEmulation, DahdiEmulationFrontend

SPANS = [SpanInfo(1, "analog-1", "analog"), SpanInfo(2, "e1-2", "e1")]
PORTS = [PortInfo(1, 1, PortKind.FXS), PortInfo(2, 1, PortKind.FXO),
         PortInfo(17, 2, PortKind.E1), PortInfo(18, 2, PortKind.E1)]
FXS, FXO, TS1, TS2 = 1, 2, 17, 18


class Rig:
    """Virtual cards + in-process emulation + a clock that runs while the host's read waits.

    Each tick the far side writes a fresh random row per port (kept in `sent`), and what the
    host transmitted is recorded in `received` (tick -> rows), as the world would see it.
    """

    def __init__(self, spans=SPANS, ports=PORTS, block=160, alarms=None):
        spans = [SpanInfo(s.span, s.name, s.kind, (alarms or {}).get(s.span, 0)) for s in spans]
        self.cards = VirtualCards(spans, ports, block=block)
        self.emu = DahdiEmulation(self.cards, on_block=self.step)
        self.rng = np.random.default_rng(7)
        self.sent: dict[int, np.ndarray] = {}
        self.received: dict[int, np.ndarray] = {}
        self.backend = None

    def step(self) -> None:
        self.emu.finish_tick()
        self.cards.next_tick()
        self.received[self.cards.tick] = np.stack([self.cards.from_host(p.channel)
                                                   for p in self.cards.ports])
        rows = self.rng.integers(0, 256, (len(self.cards.ports), self.cards.block),
                                 dtype=np.uint8)
        for p in self.cards.ports:
            self.cards.to_host(p.channel)[:] = rows[p.row]
        self.sent[self.cards.tick] = rows
        self.emu.deliver()

    def open(self, ports=PORTS, **kw) -> DahdiBackend:
        self.backend = DahdiBackend(ports, emulation=self.emu, **kw)
        self.backend.open()
        return self.backend

    def tx(self, fill=None) -> np.ndarray:
        n, block = len(self.backend.ports), self.backend.block
        if fill is None:
            return self.rng.integers(0, 256, (n, block), dtype=np.uint8)
        return np.full((n, block), fill, dtype=np.uint8)


@pytest.fixture
def rig():
    r = Rig()
    yield r
    if r.backend is not None:
        r.backend.close()
    D.use_libc()


# ---- the header's numbers ------------------------------------------------------------------
def test_request_numbers_and_struct_layouts_are_the_headers(rig):
    assert D.struct_size("struct dahdi_spaninfo") == 314          # packed
    assert D.struct_size("struct dahdi_params") == 136
    assert D.ioc_size(D.DAHDI_SPANSTAT) == D.struct_size("struct dahdi_spaninfo")
    assert D.ioc_size(D.DAHDI_GET_PARAMS) == D.struct_size("struct dahdi_params")
    assert D.ioc_size(D.DAHDI_SET_BUFINFO) == D.struct_size("struct dahdi_bufferinfo")
    assert D.ioc_dir(D.DAHDI_GET_PARAMS) == D.IOC_READ | D.IOC_WRITE
    assert D.DAHDI_HOOK & 0xFF == 7 and (D.DAHDI_HOOK >> 8) & 0xFF == D.DAHDI_CODE
    # The backend interface's vocabulary is DAHDI's numbering.
    for op in HookOp:
        assert op.value == getattr(D, f"DAHDI_{op.name}")
    for ev in HwEvent:
        assert ev.value == getattr(D, f"DAHDI_EVENT_{ev.name}")
    for alarm in (SpanAlarm.YELLOW, SpanAlarm.RED, SpanAlarm.BLUE, SpanAlarm.RECOVER):
        assert alarm.value == getattr(D, f"DAHDI_ALARM_{alarm.name}")

    be = rig.open()
    be.hook(FXS, HookOp.RING)
    seen = rig.emu.ioctls
    assert seen[D.DAHDI_HOOK] == 1
    for name in ("DAHDI_SPECIFY", "DAHDI_SET_BLOCKSIZE", "DAHDI_SET_BUFINFO", "DAHDI_SETLAW",
                 "DAHDI_GET_PARAMS", "DAHDI_FLUSH"):
        assert seen[getattr(D, name)] == len(PORTS), name
    assert seen[D.DAHDI_SPANSTAT] == len(SPANS)
    assert set(seen) <= set(D.REQUEST_NAMES)


def test_struct_codecs_round_trip():
    p = D.ChannelParams(channo=5, spanno=2, sigtype=D.DAHDI_SIG_CAS, name="X/2/5",
                        chan_alarms=D.DAHDI_ALARM_RED)
    raw = p.to_bytes()
    assert len(raw) == 136 and D.ChannelParams.from_bytes(raw) == p
    s = D.SpanStatus(spanno=3, name="n" * 30, spantype="E1", alarms=8)
    back = D.SpanStatus.from_bytes(s.to_bytes())
    assert back.name == "n" * 19 and back.spantype == "E1" and back.alarms == 8
    with pytest.raises(ValueError, match="314 bytes"):
        D.SpanStatus.from_bytes(b"\0" * 313)


# ---- open ----------------------------------------------------------------------------------
def test_open_binds_channels_and_reads_params(rig):
    be = rig.open()
    inv = be._inventory
    assert inv.ports == PORTS and inv.block == 160 and inv.law == "alaw"
    assert [(s.span, s.name, s.kind, s.alarms) for s in inv.spans] == \
        [(1, "analog-1", "analog", 0), (2, "e1-2", "e1", 0)]
    assert sorted(rig.emu.channels) == [FXS, FXO, TS1, TS2]
    for ch in rig.emu.channels.values():
        assert (ch.blocksize, ch.numbufs, ch.law) == (160, 4, "alaw")
    assert be.params[FXS].sigtype == D.DAHDI_SIG_FXOKS      # a phone: FXO signalling
    assert be.params[FXO].sigtype == D.DAHDI_SIG_FXSKS      # a CO line: FXS signalling
    assert be.params[TS1].sigtype == D.DAHDI_SIG_CAS
    assert (be.params[TS2].spanno, be.params[TS2].chanpos) == (2, 2)
    assert be.params[FXS].curlaw == D.DAHDI_LAW_ALAW


def test_backend_registry_and_config_entries(rig):
    be = open_backend("dahdi", channels=[{"channel": 1, "span": 1, "kind": "fxs"}],
                      emulation=rig.emu)
    rig.backend = be
    inv = be.open()
    assert inv.ports == [PortInfo(1, 1, PortKind.FXS)]
    assert [s.span for s in inv.spans] == [1]
    with pytest.raises(BackendError, match="needs channel, span and kind"):
        DahdiBackend([{"channel": 3, "kind": "tdm"}])
    with pytest.raises(BackendError, match="configured twice"):
        DahdiBackend([PORTS[0], PORTS[0]])


def test_signalling_mismatch_is_a_clear_error_and_releases_everything(rig):
    wrong = [PORTS[0], PortInfo(2, 1, PortKind.FXS)]          # port 2 is on a CO line
    with pytest.raises(BackendError) as err:
        rig.open(ports=wrong)
    text = str(err.value)
    assert "channel 2" in text and "fxs" in text and "FXSKS" in text and "FXOKS" in text
    assert rig.emu.files == {} and rig.emu.channels == {}
    assert D.emulation_client() is None                      # the seam is back on libc
    rig.backend = None


def test_span_mismatch_unknown_and_busy_channels(rig):
    with pytest.raises(BackendError, match="channel 17: configured on span 1 but DAHDI has "
                                           "it on span 2"):
        rig.open(ports=[PortInfo(17, 1, PortKind.E1)])
    with pytest.raises(BackendError, match="channel 40: DAHDI_SPECIFY failed: DAHDI has no "
                                           "such channel"):
        rig.open(ports=[PortInfo(40, 2, PortKind.E1)])
    first = rig.open(ports=[PORTS[0]])
    other = DahdiBackend([PORTS[0]], emulation=rig.emu)
    with pytest.raises(BackendError, match="channel 1: .*already open by another program"):
        other.open()
    first.close()


def test_a_missing_device_through_libc():
    be = DahdiBackend([PORTS[0]], device="/nonexistent/dahdi/channel")
    with pytest.raises(BackendError, match="channel 1: cannot open .*No such file"):
        be.open()


# ---- audio ---------------------------------------------------------------------------------
def test_rx_and_tx_blocks_arrive_exactly(rig):
    be = rig.open()
    txs = []
    for _ in range(6):
        tx = rig.tx()
        txs.append(tx)
        got = be.exchange(tx)
        assert np.array_equal(got.rx, rig.sent[rig.cards.tick])
        assert got.events == []
    # The tx of the exchange that returned tick T is what the far side saw at tick T.
    assert sorted(rig.received) == sorted(rig.sent) == [1, 2, 3, 4, 5, 6]
    for tx, t in zip(txs, sorted(rig.received)):
        assert np.array_equal(rig.received[t], tx)
    assert [t.tick for t in [be.exchange(rig.tx())]] == [7]


def test_ulaw_channels_are_transcoded_by_the_emulation(rig):
    be = rig.open(law="ulaw")
    assert all(ch.law == "ulaw" for ch in rig.emu.channels.values())
    assert be.params[FXS].curlaw == D.DAHDI_LAW_MULAW
    tx = g711.encode("ulaw", (np.sin(np.arange(160) / 5) * 8000).astype(np.int16))
    tx = np.tile(tx, (len(PORTS), 1))
    got = be.exchange(tx)
    want = g711.encode("ulaw", g711.decode("alaw", rig.sent[rig.cards.tick]))
    assert np.array_equal(got.rx, want)
    assert np.array_equal(rig.received[1], g711.encode("alaw", g711.decode("ulaw", tx)))


def test_a_smaller_host_block_reads_each_tick_in_pieces(rig):
    be = rig.open(block=80)
    first = be.exchange(rig.tx(0xD5))
    second = be.exchange(rig.tx(0xD5))
    row = rig.sent[1]
    assert np.array_equal(first.rx, row[:, :80]) and np.array_equal(second.rx, row[:, 80:])


# ---- hook operations -----------------------------------------------------------------------
def test_hook_operations_reach_the_virtual_ports(rig):
    be = rig.open()
    ops = []
    rig.cards.hook_listeners.append(lambda port, op: ops.append((port.channel, op)))
    be.hook(FXS, HookOp.RING)
    assert rig.cards.port(FXS).ringing
    assert be.channel_params(FXS).txhooksig == D.DAHDI_RING
    be.hook(FXS, HookOp.RINGOFF)
    assert not rig.cards.port(FXS).ringing
    be.hook(FXO, HookOp.OFFHOOK)
    assert rig.cards.port(FXO).hook == HookOp.OFFHOOK
    be.hook(FXO, HookOp.FLASH)
    be.hook(FXO, HookOp.ONHOOK)
    assert rig.cards.port(FXO).hook == HookOp.ONHOOK
    assert ops == [(FXS, HookOp.RING), (FXS, HookOp.RINGOFF), (FXO, HookOp.OFFHOOK),
                   (FXO, HookOp.FLASH), (FXO, HookOp.ONHOOK)]
    with pytest.raises(BackendError, match="channel 17: DAHDI_HOOK OFFHOOK failed: Invalid"):
        be.hook(TS1, HookOp.OFFHOOK)
    with pytest.raises(BackendError, match="channel 9 is not one of this backend's"):
        be.hook(9, HookOp.OFFHOOK)
    with pytest.raises(BackendError, match="99 is not a hook operation"):
        be.hook(FXS, 99)


def test_params_report_hook_and_ring_state(rig):
    be = rig.open()
    assert be.channel_params(FXS).rxisoffhook == 0
    rig.cards.port(FXS).far_offhook = True
    assert be.channel_params(FXS).rxisoffhook == 1
    rig.cards.post_event(FXO, HwEvent.RINGERON)
    be.exchange(rig.tx())
    assert be.channel_params(FXO).rxisoffhook == 1          # ring voltage, as DAHDI reports
    rig.cards.post_event(FXO, HwEvent.RINGEROFF)
    be.exchange(rig.tx())
    assert be.channel_params(FXO).rxisoffhook == 0


# ---- events --------------------------------------------------------------------------------
@pytest.mark.parametrize("channel,event", [
    (FXS, HwEvent.RINGOFFHOOK), (FXS, HwEvent.ONHOOK), (FXS, HwEvent.WINKFLASH),
    (FXO, HwEvent.RINGBEGIN), (FXO, HwEvent.POLARITY), (FXO, HwEvent.ALARM),
    (FXO, HwEvent.NOALARM), (FXO, HwEvent.RINGOFFHOOK)])
def test_card_events_come_out_of_exchange(rig, channel, event):
    be = rig.open()
    be.exchange(rig.tx())
    rig.cards.post_event(channel, event)       # taken with the next tick's delivery
    got = be.exchange(rig.tx())
    assert got.events == [ChannelEvent(channel=channel, event=event)]
    assert np.array_equal(got.rx, rig.sent[rig.cards.tick])  # the block was read after all
    assert be.exchange(rig.tx()).events == []


def test_several_events_keep_their_order(rig):
    be = rig.open()
    for ev in (HwEvent.RINGOFFHOOK, HwEvent.WINKFLASH, HwEvent.ONHOOK):
        rig.cards.post_event(FXS, ev)
    rig.cards.post_event(FXO, HwEvent.POLARITY)
    got = be.exchange(rig.tx())
    assert [(e.channel, e.event) for e in got.events] == [
        (FXS, HwEvent.RINGOFFHOOK), (FXS, HwEvent.WINKFLASH), (FXS, HwEvent.ONHOOK),
        (FXO, HwEvent.POLARITY)]


def test_a_write_refused_for_a_pending_event_is_written_again(rig):
    be = rig.open()
    be.exchange(rig.tx())
    rig.cards.post_event(FXS, HwEvent.WINKFLASH)
    rig.emu.route_events()                 # pending before the host writes: write -> ELAST
    tx = rig.tx()
    got = be.exchange(tx)
    assert got.events == [ChannelEvent(channel=FXS, event=HwEvent.WINKFLASH)]
    assert np.array_equal(got.rx, rig.sent[rig.cards.tick])
    assert np.array_equal(rig.received[rig.cards.tick], tx)       # no block lost
    assert rig.emu.calls["write"] == 2 * len(PORTS) + 1            # one write went again


def test_cas_bits_in_and_out(rig):
    be = rig.open()
    rig.cards.set_cas_to_host(TS1, 0b0001)
    got = be.exchange(rig.tx())
    assert got.events == [ChannelEvent(channel=TS1, event=HwEvent.BITSCHANGED, value=0b0001)]
    assert got.cas == [(TS1, 0b0001)]
    be.set_cas(TS2, 0b0101)
    assert rig.cards.port(TS2).cas_from_host == 0b0101
    with pytest.raises(BackendError, match="channel 1: DAHDI_SETTXBITS failed"):
        be.set_cas(FXS, 0b0101)


# ---- spans ---------------------------------------------------------------------------------
def test_span_alarms_reach_channels_at_once_and_the_span_by_polling():
    rig = Rig(alarms={2: int(SpanAlarm.BLUE)})
    try:
        be = rig.open(alarm_poll_ticks=5)
        assert be._inventory.spans[1].alarms == SpanAlarm.BLUE and be.span_alarms(2) == 16
        rig.cards.set_span_alarms(2, int(SpanAlarm.NONE))
        events = []
        for _ in range(5):
            events += be.exchange(rig.tx()).events
        assert events == [ChannelEvent(TS1, HwEvent.NOALARM), ChannelEvent(TS2, HwEvent.NOALARM),
                          ChannelEvent(0, HwEvent.NOALARM, span=2, value=0)]
        rig.cards.set_span_alarms(2, int(SpanAlarm.RED))
        rig.cards.set_span_alarms(2, int(SpanAlarm.RED | SpanAlarm.YELLOW))
        events = []
        for _ in range(5):
            events += be.exchange(rig.tx()).events
        assert events == [ChannelEvent(TS1, HwEvent.ALARM), ChannelEvent(TS2, HwEvent.ALARM),
                          ChannelEvent(0, HwEvent.ALARM, span=2, value=12)]
        assert be.span_alarms(2) == SpanAlarm.RED | SpanAlarm.YELLOW
        assert be.channel_params(TS1).chan_alarms == 12
    finally:
        rig.backend.close()
        D.use_libc()


# ---- the seam itself -----------------------------------------------------------------------
def test_raw_calls_through_the_seam_get_the_kernels_answers(rig):
    emu = rig.emu
    D.use_emulation(emu)
    fd = D.open_file()
    with pytest.raises(D.DahdiError) as err:
        D.get_event(fd)                                  # unbound: only SPECIFY works
    assert err.value.errno == errno.ENOSYS
    D.specify(fd, FXS)
    assert D.channo(fd) == FXS
    with pytest.raises(D.DahdiError) as err:
        D.set_blocksize(fd, 8)
    assert err.value.errno == errno.EINVAL
    D.set_blocksize(fd, 160)
    assert D.get_blocksize(fd) == 160
    with pytest.raises(D.DahdiError) as err:
        D.ioctl_int(fd, D.DAHDI_CODE << 8 | 200)         # not an ioctl DAHDI knows
    assert err.value.errno == errno.ENOTTY
    assert D.poll([(fd, select.POLLIN | select.POLLPRI)], 0) == [0]
    rig.cards.post_event(FXS, HwEvent.RINGOFFHOOK)
    emu.deliver()
    assert D.poll([(fd, select.POLLIN | select.POLLPRI)], 0) == [select.POLLPRI]
    with pytest.raises(D.DahdiError) as err:
        D.read(fd, 160)
    assert err.value.errno == D.ELAST and "event is pending" in str(err.value)
    with pytest.raises(D.DahdiError):
        D.write(fd, b"\xd5" * 160)
    assert D.get_event(fd) == D.DAHDI_EVENT_RINGOFFHOOK
    assert D.get_event(fd) == D.DAHDI_EVENT_NONE
    assert D.poll([(fd, select.POLLIN)], 0) == [select.POLLIN]
    assert D.read(fd, 160) == rig.cards.host_rx()[0].tobytes()
    assert D.write(fd, b"\x01" * 160) == 160
    info = D.get_bufinfo(fd)
    assert (info.bufsize, info.writebufs, info.readbufs) == (160, 1, 0)
    D.close(fd)
    with pytest.raises(D.DahdiError) as err:
        D.close(fd)
    assert err.value.errno == errno.EBADF


def test_an_unanswered_tick_ends_at_the_next_delivery_with_silence(rig):
    emu, cards = rig.emu, rig.cards
    D.use_emulation(emu)
    fds = [D.open_file(), D.open_file()]
    D.specify(fds[0], FXS)
    D.specify(fds[1], FXO)
    for fd in fds:
        D.set_blocksize(fd, 160)
    emu.deliver()
    D.write(fds[0], b"\x11" * 160)              # FXO's channel never writes this tick
    assert not emu.answered() and not emu.finish_if_answered()
    cards.next_tick()
    emu.deliver()                               # the card moves on regardless
    assert (cards.from_host(FXS) == 0x11).all()
    assert (cards.from_host(FXO) == cards.silence).all()
    D.write(fds[0], b"\x22" * 160)
    D.write(fds[1], b"\x33" * 160)
    assert emu.finish_if_answered()             # both wrote: the tick goes out at once
    assert (cards.from_host(FXO) == 0x33).all()


def test_malformed_calls_get_errors_not_exceptions(rig, tmp_path):
    emu = rig.emu
    fd = emu.handle(D.SyscallRequest("open", data=D.DEVICE.encode())).ret
    emu.handle(D.SyscallRequest("ioctl", fd, D.DAHDI_SPECIFY, (1).to_bytes(4, "little")))
    short = emu.handle(D.SyscallRequest("ioctl", fd, D.DAHDI_HOOK, b"\0\0"))
    assert (short.ret, short.err) == (-1, errno.EFAULT)
    assert emu.handle(D.SyscallRequest("open", data=b"/dev/dahdi/ctl")).err == errno.ENOENT
    assert emu.handle(D.SyscallRequest("write", 4242, 3, b"abc")).err == errno.EBADF

    import zmq
    fe = DahdiEmulationFrontend(rig.cards, f"ipc://{tmp_path}/fe.sock", emulation=emu)
    fe.start()
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    try:
        req.connect(fe.endpoint)
        req.send(b"\x09junk")
        for _ in range(100):
            fe.collect(time.monotonic() + 0.1)
            if req.poll(50):           # the reply travels asynchronously: give it a moment
                break
        assert req.poll(5000), "the emulation never answered the malformed request"
        reply = D.SyscallReply.decode(req.recv(zmq.NOBLOCK))
        assert (reply.ret, reply.err) == (-1, errno.EPROTO)
    finally:
        req.close(0)
        fe.close()


def test_libc_exchange_over_real_file_descriptors():
    r = bench(channels=8, ticks=3)      # loopback sockets: each block comes back
    assert r["channels"] == 8 and r["ms_per_tick"] > 0
    D.use_libc()
    fds = np.array([-1, -1], dtype=np.int32)
    tx = np.zeros((2, 160), np.uint8)
    status = D.exchange(fds, tx, np.zeros_like(tx))
    assert [D.write_failed(int(s)) for s in status] == [errno.EBADF, errno.EBADF]


def test_exchange_rejects_bad_arrays(rig):
    be = rig.open()
    with pytest.raises(BackendError, match=r"tx must be uint8 of shape \(4, 160\)"):
        be.exchange(np.zeros((4, 160), np.int16))
    with pytest.raises(BackendError, match=r"got uint8 \(3, 160\)"):
        be.exchange(np.zeros((3, 160), np.uint8))


def test_an_unreachable_emulation_is_a_backend_error(tmp_path):
    be = DahdiBackend([PORTS[0]], emulation=f"ipc://{tmp_path}/nobody.sock", timeout_s=0.2)
    with pytest.raises(BackendError, match="no answer from the DAHDI emulation"):
        be.open()
    assert D.emulation_client() is None


# ---- over ZeroMQ ---------------------------------------------------------------------------
class RecordingWorld:
    """The far side for the clock: fresh random audio on every port each tick, a record
    of what the host transmitted, and events posted at chosen ticks."""

    def __init__(self, cards):
        self.cards = cards
        self.rng = np.random.default_rng(3)
        self.sent, self.received, self.hooks = {}, {}, []
        self.posts: dict[int, list] = {}
        cards.hook_listeners.append(lambda p, op: self.hooks.append((p.channel, op)))

    def step(self, tick):
        cards = self.cards
        self.received[tick] = np.stack([cards.from_host(p.channel) for p in cards.ports])
        rows = self.rng.integers(0, 256, (len(cards.ports), cards.block), dtype=np.uint8)
        for p in cards.ports:
            cards.to_host(p.channel)[:] = rows[p.row]
        self.sent[tick] = rows
        for ch, ev in self.posts.pop(tick, []):
            cards.post_event(ch, ev)


class LockstepSim:
    """ctisim's part in a thread: the fast (lockstep) clock driving the DAHDI frontend."""

    def __init__(self, endpoint):
        self.cards = VirtualCards(SPANS, PORTS)
        self.world = RecordingWorld(self.cards)
        self.frontend = DahdiEmulationFrontend(self.cards, endpoint)
        self.clock = Clock(self.cards, self.world, self.frontend, mode="fast")
        self.started = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        self.frontend.start()
        self.started.set()
        try:
            self.clock.run()
        finally:
            self.frontend.close()


def test_over_zeromq_with_the_fast_clock(tmp_path):
    sim = LockstepSim(f"ipc://{tmp_path}/dahdi.sock")
    world = sim.world
    sim.thread.start()
    assert sim.started.wait(5)
    be = DahdiBackend(PORTS, emulation=sim.frontend.endpoint, timeout_s=5.0)
    try:
        inv = be.open()
        assert [s.name for s in inv.spans] == ["analog-1", "e1-2"]
        assert be.params[FXO].sigtype == D.DAHDI_SIG_FXSKS
        rng = np.random.default_rng(5)
        results = []
        for k in range(8):
            tx = rng.integers(0, 256, (4, 160), dtype=np.uint8)
            got = be.exchange(tx)
            results.append((tx, got))
            if k == 2:
                be.hook(FXS, HookOp.RING)
                # the clock waits for our next tx before its next tick: post two ticks on
                world.posts[max(world.sent) + 2] = [(FXS, HwEvent.RINGOFFHOOK)]
        first = max(world.sent) - 7              # the cards' tick of the first exchange
        for k, (tx, got) in enumerate(results):
            assert np.array_equal(got.rx, world.sent[first + k]), k
            assert np.array_equal(world.received[first + k], tx), k
        events = [(k, e) for k, (_, got) in enumerate(results) for e in got.events]
        assert events == [(4, ChannelEvent(channel=FXS, event=HwEvent.RINGOFFHOOK))]
        assert world.hooks == [(FXS, HookOp.RING)]
        assert sim.frontend.emulation.ioctls[D.DAHDI_HOOK] == 1
        assert sim.frontend.connected()
    finally:
        be.close()
        sim.clock.stop()
        sim.thread.join(10)
    assert not sim.thread.is_alive()
    assert not sim.frontend.connected()
    assert sim.clock.stats.stopped_by == "stop"
