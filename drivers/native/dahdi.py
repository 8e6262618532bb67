"""The DAHDI binding: constants, struct codecs, the system-call seam, the per-tick exchange.

This module is the only importer of the compiled ``drivers.native._dahdi`` (built by
``cffi_build/build_dahdi.py`` against ``<dahdi/user.h>``). Everything numeric here, ioctl
request numbers, event and alarm codes, struct sizes and offsets, is the header's.

The seam: every system call goes through a C table of function pointers. By default it
holds libc's calls (the kernel driver). ``use_emulation(client)`` swaps in callbacks that
hand each call, as a ``SyscallRequest`` (name, fd, request number or flags, raw bytes), to
``client.call(req) -> SyscallReply`` (return value, errno, out bytes): in tests that client
is the simulator's DAHDI emulation, in-process or over a socket. The code above the seam is
the same either way.
"""
from __future__ import annotations

import dataclasses
import errno as _errno
import os
import struct
from typing import Protocol

import numpy as np

try:
    from drivers.native._dahdi import ffi, lib
except ImportError as exc:   # pragma: no cover - depends on the build
    raise ImportError("drivers.native._dahdi is not built: run "
                      "`python cffi_build/build_dahdi.py` (needs <dahdi/user.h> from the "
                      "dahdi-source package)") from exc

# ---- constants (values from the header) -----------------------------------------------------
ELAST: int = lib.ELAST
for _name in dir(lib):
    if _name.startswith("DAHDI_"):
        globals()[_name] = getattr(lib, _name)
del _name

IOC_READ: int = lib.HL_IOC_READ
IOC_WRITE: int = lib.HL_IOC_WRITE
# hl_exchange statuses besides 0 (ok) and -errno (read failed).
HL_WRITE_ERR: int = lib.HL_WRITE_ERR
HL_UNREAD: int = lib.HL_UNREAD
HL_SHORT: int = lib.HL_SHORT

DEVICE = "/dev/dahdi/channel"


def _names(prefix: str, skip: tuple[str, ...] = ()) -> dict[int, str]:
    out: dict[int, str] = {}
    for name in sorted(dir(lib)):
        if name.startswith(prefix) and name not in skip:
            out.setdefault(getattr(lib, name), name[len(prefix):])
    return out


EVENT_NAMES: dict[int, str] = _names("DAHDI_EVENT_", ("DAHDI_EVENT_PULSEDIGIT",
                                                      "DAHDI_EVENT_DTMFDOWN",
                                                      "DAHDI_EVENT_DTMFUP"))
SIG_NAMES: dict[int, str] = _names("DAHDI_SIG_")
HOOK_NAMES: dict[int, str] = {lib.DAHDI_ONHOOK: "ONHOOK", lib.DAHDI_OFFHOOK: "OFFHOOK",
                              lib.DAHDI_WINK: "WINK", lib.DAHDI_FLASH: "FLASH",
                              lib.DAHDI_START: "START", lib.DAHDI_RING: "RING",
                              lib.DAHDI_RINGOFF: "RINGOFF"}
LAW_CODES: dict[str, int] = {"alaw": lib.DAHDI_LAW_ALAW, "ulaw": lib.DAHDI_LAW_MULAW}

# The ioctls this project uses, by request number (for the emulation and for messages).
REQUEST_NAMES: dict[int, str] = {getattr(lib, n): n for n in (
    "DAHDI_GET_BLOCKSIZE", "DAHDI_SET_BLOCKSIZE", "DAHDI_FLUSH", "DAHDI_GET_PARAMS",
    "DAHDI_SET_PARAMS", "DAHDI_HOOK", "DAHDI_GETEVENT", "DAHDI_SPANSTAT",
    "DAHDI_GET_BUFINFO", "DAHDI_SET_BUFINFO", "DAHDI_CHANNO", "DAHDI_SPECIFY",
    "DAHDI_SETLAW", "DAHDI_GETRXBITS", "DAHDI_SETTXBITS")}


def sig_name(sigtype: int) -> str:
    return SIG_NAMES.get(sigtype, f"0x{sigtype:x}")


def event_name(event: int) -> str:
    return EVENT_NAMES.get(event, str(event))


def law_code(law: str) -> int:
    try:
        return LAW_CODES[law]
    except KeyError:
        raise ValueError(f"unknown law {law!r}; expected one of {sorted(LAW_CODES)}") from None


def law_name(code: int) -> str:
    for name, value in LAW_CODES.items():
        if value == code:
            return name
    raise ValueError(f"unknown DAHDI law code {code}")


def ioc_size(request: int) -> int:
    """Size of the argument an ioctl request carries, as encoded in its number."""
    return lib.hl_ioc_size(request)


def ioc_dir(request: int) -> int:
    """Direction bits (IOC_READ: kernel to user, IOC_WRITE: user to kernel)."""
    return lib.hl_ioc_dir(request)


def struct_size(ctype: str) -> int:
    """sizeof a declared struct, e.g. struct_size("struct dahdi_spaninfo") == 314."""
    return ffi.sizeof(ctype)


# ---- struct codecs ---------------------------------------------------------------------------
class _Struct:
    """A frozen dataclass mirrored onto a C struct of the header's layout."""
    CTYPE = ""

    @classmethod
    def from_bytes(cls, data: bytes):
        size = ffi.sizeof(cls.CTYPE)
        if len(data) != size:
            raise ValueError(f"{cls.CTYPE} is {size} bytes, got {len(data)}")
        p = ffi.new(cls.CTYPE + " *")
        ffi.memmove(p, data, size)
        values = {}
        for f in dataclasses.fields(cls):
            v = getattr(p, f.name)
            if isinstance(v, ffi.CData):       # char[N]
                v = ffi.string(v).decode("latin-1")
            values[f.name] = v
        return cls(**values)

    def to_bytes(self) -> bytes:
        p = ffi.new(self.CTYPE + " *")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, str):
                cap = ffi.sizeof(getattr(p, f.name)) - 1
                v = v.encode("latin-1")[:cap]
            setattr(p, f.name, v)
        return bytes(ffi.buffer(p))


@dataclasses.dataclass(frozen=True)
class ChannelParams(_Struct):
    """struct dahdi_params (DAHDI_GET_PARAMS)."""
    CTYPE = "struct dahdi_params"
    channo: int = 0
    spanno: int = 0
    chanpos: int = 0
    sigtype: int = 0
    sigcap: int = 0
    rxisoffhook: int = 0
    rxbits: int = -1
    txbits: int = -1
    txhooksig: int = -1
    rxhooksig: int = -1
    curlaw: int = 0
    idlebits: int = 0
    name: str = ""
    chan_alarms: int = 0


@dataclasses.dataclass(frozen=True)
class SpanStatus(_Struct):
    """struct dahdi_spaninfo (DAHDI_SPANSTAT; packed, 314 bytes)."""
    CTYPE = "struct dahdi_spaninfo"
    spanno: int = 0
    name: str = ""
    desc: str = ""
    alarms: int = 0
    bpvcount: int = 0
    crc4count: int = 0
    ebitcount: int = 0
    fascount: int = 0
    fecount: int = 0          # framing errors
    cvcount: int = 0          # coding violations
    irqmisses: int = 0
    syncsrc: int = 0
    numchans: int = 0
    totalchans: int = 0
    totalspans: int = 0
    lineconfig: int = 0
    linecompat: int = 0
    spantype: str = ""


@dataclasses.dataclass(frozen=True)
class BufferInfo(_Struct):
    """struct dahdi_bufferinfo (DAHDI_GET_BUFINFO / DAHDI_SET_BUFINFO)."""
    CTYPE = "struct dahdi_bufferinfo"
    txbufpolicy: int = 0
    rxbufpolicy: int = 0
    numbufs: int = 0
    bufsize: int = 0
    readbufs: int = 0
    writebufs: int = 0


# ---- errors ------------------------------------------------------------------------------
class DahdiError(OSError):
    """A system call through the seam failed: errno and what was being done."""

    def __init__(self, err: int, what: str):
        text = "a DAHDI event is pending (ELAST)" if err == ELAST else os.strerror(err)
        super().__init__(err, text)      # .strerror: the reason alone
        self.what = what

    def __str__(self) -> str:
        return f"{self.what}: {self.strerror}"


class SeamError(RuntimeError):
    """The emulation behind the seam failed (not a system-call error): e.g. no answer."""


# ---- the seam ----------------------------------------------------------------------------
OPS = ("open", "close", "ioctl", "read", "write", "poll")
_OP_CODE = {name: i + 1 for i, name in enumerate(OPS)}
_REQ = struct.Struct("<Biq")      # op, fd, arg (request number, flags, count or timeout)
_REP = struct.Struct("<qi")       # return value, errno
_POLLFD = struct.Struct("<ih")    # fd, events


@dataclasses.dataclass(frozen=True)
class SyscallRequest:
    """One system call as the emulation sees it.

    open: arg=flags, data=path. close: -. ioctl: arg=request number, data=the argument's
    bytes (ioc_size(request) of them). read: arg=count. write: data. poll: arg=timeout ms,
    data=(fd int32, events int16) pairs.
    """
    op: str
    fd: int = -1
    arg: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        return _REQ.pack(_OP_CODE[self.op], self.fd, self.arg) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> SyscallRequest:
        if len(raw) < _REQ.size:
            raise ValueError(f"syscall request too short ({len(raw)} bytes)")
        code, fd, arg = _REQ.unpack_from(raw)
        if not 1 <= code <= len(OPS):
            raise ValueError(f"unknown syscall op code {code}")
        return cls(OPS[code - 1], fd, arg, bytes(raw[_REQ.size:]))

    def poll_fds(self) -> list[tuple[int, int]]:
        return [_POLLFD.unpack_from(self.data, i) for i in range(0, len(self.data), _POLLFD.size)]


@dataclasses.dataclass(frozen=True)
class SyscallReply:
    """ret >= 0 on success; ret < 0 with err = errno on failure. data: ioctl out-buffer,
    read bytes, or poll revents (int16 each)."""
    ret: int
    err: int = 0
    data: bytes = b""

    @classmethod
    def fail(cls, err: int) -> SyscallReply:
        return cls(-1, err)

    def encode(self) -> bytes:
        return _REP.pack(self.ret, self.err) + self.data

    @classmethod
    def decode(cls, raw: bytes) -> SyscallReply:
        if len(raw) < _REP.size:
            raise ValueError(f"syscall reply too short ({len(raw)} bytes)")
        ret, err = _REP.unpack_from(raw)
        return cls(ret, err, bytes(raw[_REP.size:]))


def encode_revents(revents: list[int]) -> bytes:
    return struct.pack(f"<{len(revents)}h", *revents)


class EmulationClient(Protocol):
    """What use_emulation() forwards to: the simulator's emulation or a socket to it."""

    def call(self, req: SyscallRequest) -> SyscallReply: ...


_client: EmulationClient | None = None
_callback_error: BaseException | None = None


def use_libc() -> None:
    """System calls go to the kernel (the default)."""
    global _client
    lib.hl_use_libc()
    _client = None


def use_emulation(client: EmulationClient) -> None:
    """System calls go to client.call(SyscallRequest) -> SyscallReply."""
    global _client
    if not callable(getattr(client, "call", None)):
        raise TypeError("an emulation client needs a call(SyscallRequest) method")
    _client = client
    lib.hl_use_python()


def emulation_client() -> EmulationClient | None:
    """The client the seam forwards to, or None when system calls go to libc."""
    return _client if lib.hl_using_python() else None


def _check_seam() -> None:
    """Re-raise, in the caller, an exception that a callback had to swallow."""
    global _callback_error
    if _callback_error is not None:
        exc, _callback_error = _callback_error, None
        raise SeamError(f"DAHDI emulation failed: {exc}") from exc


def _forward(err, req: SyscallRequest) -> SyscallReply | None:
    global _callback_error
    try:
        if _client is None:
            raise SeamError("the Python seam is selected but no emulation client is set")
        reply = _client.call(req)
    except BaseException as exc:   # a callback must not raise into C
        if _callback_error is None:
            _callback_error = exc
        err[0] = _errno.EIO
        return None
    if reply.ret < 0:
        err[0] = reply.err or _errno.EIO
    return reply


@ffi.def_extern(error=-1)
def hl_py_open(path, flags, err):
    reply = _forward(err, SyscallRequest("open", -1, flags, ffi.string(path)))
    return -1 if reply is None or reply.ret < 0 else reply.ret


@ffi.def_extern(error=-1)
def hl_py_close(fd, err):
    reply = _forward(err, SyscallRequest("close", fd))
    return -1 if reply is None or reply.ret < 0 else reply.ret


@ffi.def_extern(error=-1)
def hl_py_ioctl(fd, request, arg, err):
    size = lib.hl_ioc_size(request) if arg != ffi.NULL else 0
    data = ffi.buffer(ffi.cast("char *", arg), size)[:] if size else b""
    reply = _forward(err, SyscallRequest("ioctl", fd, request, data))
    if reply is None or reply.ret < 0:
        return -1
    if size and lib.hl_ioc_dir(request) & IOC_READ and reply.data:
        ffi.memmove(arg, reply.data[:size], min(size, len(reply.data)))
    return reply.ret


@ffi.def_extern(error=-1)
def hl_py_read(fd, buf, count, err):
    reply = _forward(err, SyscallRequest("read", fd, count))
    if reply is None or reply.ret < 0:
        return -1
    n = min(len(reply.data), count)
    ffi.memmove(buf, reply.data[:n], n)
    return n


@ffi.def_extern(error=-1)
def hl_py_write(fd, buf, count, err):
    reply = _forward(err, SyscallRequest("write", fd, count, ffi.buffer(buf, count)[:]))
    return -1 if reply is None or reply.ret < 0 else reply.ret


@ffi.def_extern(error=-1)
def hl_py_poll(fds, nfds, timeout_ms, err):
    data = b"".join(_POLLFD.pack(fds[i].fd, fds[i].events) for i in range(nfds))
    reply = _forward(err, SyscallRequest("poll", -1, timeout_ms, data))
    if reply is None or reply.ret < 0:
        return -1
    revents = struct.unpack_from(f"<{nfds}h", reply.data) if len(reply.data) >= 2 * nfds \
        else (0,) * nfds
    for i in range(nfds):
        fds[i].revents = revents[i]
    return reply.ret


# ---- system calls through the seam -------------------------------------------------------
def _ok(result: int, what: str) -> int:
    _check_seam()
    if result < 0:
        raise DahdiError(-result, what)
    return result


def open_file(path: str = DEVICE, flags: int = os.O_RDWR) -> int:
    return _ok(lib.hl_open(path.encode(), flags), f"open {path}")


def close(fd: int) -> None:
    _ok(lib.hl_close(fd), f"close fd {fd}")


def ioctl(fd: int, request: int, arg=ffi.NULL) -> int:
    name = REQUEST_NAMES.get(request, f"ioctl 0x{request:x}")
    return _ok(lib.hl_ioctl(fd, request, arg), name)


def ioctl_int(fd: int, request: int, value: int = 0) -> int:
    """An ioctl whose argument is one int; returns the int as the call left it."""
    p = ffi.new("int *", value)
    ioctl(fd, request, p)
    return p[0]


def _ioctl_struct(fd: int, request: int, value: _Struct) -> bytes:
    p = ffi.new(value.CTYPE + " *")
    ffi.memmove(p, value.to_bytes(), ffi.sizeof(value.CTYPE))
    ioctl(fd, request, p)
    return bytes(ffi.buffer(p))


def specify(fd: int, channel: int) -> None:
    """Bind an open /dev/dahdi/channel file to a channel number."""
    ioctl_int(fd, lib.DAHDI_SPECIFY, channel)


def set_blocksize(fd: int, size: int) -> None:
    ioctl_int(fd, lib.DAHDI_SET_BLOCKSIZE, size)


def get_blocksize(fd: int) -> int:
    return ioctl_int(fd, lib.DAHDI_GET_BLOCKSIZE)


def set_law(fd: int, code: int) -> None:
    ioctl_int(fd, lib.DAHDI_SETLAW, code)


def get_params(fd: int, channo: int = 0) -> ChannelParams:
    return ChannelParams.from_bytes(
        _ioctl_struct(fd, lib.DAHDI_GET_PARAMS, ChannelParams(channo=channo)))


def hook(fd: int, op: int) -> None:
    ioctl_int(fd, lib.DAHDI_HOOK, op)


def get_event(fd: int) -> int:
    """The next pending event (DAHDI_EVENT_*), DAHDI_EVENT_NONE when there is none."""
    return ioctl_int(fd, lib.DAHDI_GETEVENT)


def span_status(fd: int, span: int = 0) -> SpanStatus:
    """DAHDI_SPANSTAT for a span number (0: the span of the fd's channel)."""
    return SpanStatus.from_bytes(_ioctl_struct(fd, lib.DAHDI_SPANSTAT, SpanStatus(spanno=span)))


def get_bufinfo(fd: int) -> BufferInfo:
    return BufferInfo.from_bytes(_ioctl_struct(fd, lib.DAHDI_GET_BUFINFO, BufferInfo()))


def set_bufinfo(fd: int, info: BufferInfo) -> None:
    _ioctl_struct(fd, lib.DAHDI_SET_BUFINFO, info)


def channo(fd: int) -> int:
    return ioctl_int(fd, lib.DAHDI_CHANNO)


def get_rxbits(fd: int) -> int:
    return ioctl_int(fd, lib.DAHDI_GETRXBITS)


def set_txbits(fd: int, bits: int) -> None:
    ioctl_int(fd, lib.DAHDI_SETTXBITS, bits)


def flush(fd: int, what: int) -> None:
    ioctl_int(fd, lib.DAHDI_FLUSH, what)


def read(fd: int, count: int) -> bytes:
    buf = ffi.new("uint8_t[]", count)
    n = _ok(lib.hl_read(fd, buf, count), f"read fd {fd}")
    return ffi.buffer(buf, n)[:]


def write(fd: int, data: bytes) -> int:
    return _ok(lib.hl_write(fd, data, len(data)), f"write fd {fd}")


def poll(fds: list[tuple[int, int]], timeout_ms: int) -> list[int]:
    """poll() through the seam: [(fd, events)] -> revents per fd."""
    p = ffi.new("struct pollfd[]", len(fds))
    for i, (fd, events) in enumerate(fds):
        p[i].fd, p[i].events, p[i].revents = fd, events, 0
    _ok(lib.hl_poll(p, len(fds), timeout_ms), "poll")
    return [p[i].revents for i in range(len(fds))]


def exchange(fds: np.ndarray, tx: np.ndarray | None, rx: np.ndarray | None,
             status: np.ndarray | None = None) -> np.ndarray:
    """Write every channel's tx row, then read every channel's rx row, in one C call.

    fds: int32 (n,); tx/rx: uint8 (n, block), C-contiguous (either may be None: read-only
    or write-only). Returns int32 statuses: 0 ok, -errno a failed read, HL_UNREAD,
    HL_SHORT, or -(HL_WRITE_ERR + errno) a failed write (see event_pending()).
    """
    n = len(fds)
    ref = tx if tx is not None else rx
    if ref is None:
        raise ValueError("exchange needs tx, rx or both")
    block = ref.shape[1] if ref.ndim == 2 else 0
    for name, a in (("tx", tx), ("rx", rx)):
        if a is not None and (a.dtype != np.uint8 or a.shape != (n, block)
                              or not a.flags.c_contiguous):
            raise ValueError(f"{name} must be C-contiguous uint8 of shape ({n}, {block})")
    if fds.dtype != np.int32 or not fds.flags.c_contiguous:
        raise ValueError("fds must be a contiguous int32 array")
    if status is None:
        status = np.zeros(n, dtype=np.int32)
    if n == 0:
        return status
    lib.hl_exchange(n, ffi.from_buffer("int[]", fds),
                    ffi.from_buffer("uint8_t[]", tx) if tx is not None else ffi.NULL,
                    ffi.from_buffer("uint8_t[]", rx, require_writable=True)
                    if rx is not None else ffi.NULL,
                    block, ffi.from_buffer("int[]", status, require_writable=True))
    _check_seam()
    return status


def event_pending(status: int) -> bool:
    """The read or the write of this channel was refused because an event is pending."""
    return status in (-ELAST, -(HL_WRITE_ERR + ELAST))


def write_failed(status: int) -> int:
    """errno of a failed write (0 when the write went through)."""
    return -status - HL_WRITE_ERR if status <= -HL_WRITE_ERR else 0


def read_failed(status: int) -> int:
    """errno of a failed read (0 when the read went through or was not attempted)."""
    return -status if -HL_WRITE_ERR < status < 0 else 0
