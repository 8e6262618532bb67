from typing import Any, ClassVar, Protocol

import numpy as np

ffi: Any
lib: Any

ELAST: int
IOC_READ: int
IOC_WRITE: int
HL_WRITE_ERR: int
HL_UNREAD: int
HL_SHORT: int
DEVICE: str

# Constants from <dahdi/user.h> (values come from the compiled module).
DAHDI_CODE: int
DAHDI_MAX_BLOCKSIZE: int
DAHDI_DEFAULT_BLOCKSIZE: int
DAHDI_DEFAULT_NUM_BUFS: int
DAHDI_GET_BLOCKSIZE: int
DAHDI_SET_BLOCKSIZE: int
DAHDI_FLUSH: int
DAHDI_GET_PARAMS: int
DAHDI_SET_PARAMS: int
DAHDI_HOOK: int
DAHDI_GETEVENT: int
DAHDI_SPANSTAT: int
DAHDI_GET_BUFINFO: int
DAHDI_SET_BUFINFO: int
DAHDI_CHANNO: int
DAHDI_SPECIFY: int
DAHDI_SETLAW: int
DAHDI_GETRXBITS: int
DAHDI_SETTXBITS: int
DAHDI_GET_PARAMS_RETURN_MASTER: int
DAHDI_ONHOOK: int
DAHDI_OFFHOOK: int
DAHDI_WINK: int
DAHDI_FLASH: int
DAHDI_START: int
DAHDI_RING: int
DAHDI_RINGOFF: int
DAHDI_FLUSH_READ: int
DAHDI_FLUSH_WRITE: int
DAHDI_FLUSH_BOTH: int
DAHDI_FLUSH_EVENT: int
DAHDI_FLUSH_ALL: int
DAHDI_POLICY_IMMEDIATE: int
DAHDI_POLICY_WHEN_FULL: int
DAHDI_LAW_DEFAULT: int
DAHDI_LAW_MULAW: int
DAHDI_LAW_ALAW: int
DAHDI_ALARM_NONE: int
DAHDI_ALARM_RECOVER: int
DAHDI_ALARM_LOOPBACK: int
DAHDI_ALARM_YELLOW: int
DAHDI_ALARM_RED: int
DAHDI_ALARM_BLUE: int
DAHDI_ALARM_NOTOPEN: int
DAHDI_EVENT_NONE: int
DAHDI_EVENT_ONHOOK: int
DAHDI_EVENT_RINGOFFHOOK: int
DAHDI_EVENT_WINKFLASH: int
DAHDI_EVENT_ALARM: int
DAHDI_EVENT_NOALARM: int
DAHDI_EVENT_ABORT: int
DAHDI_EVENT_OVERRUN: int
DAHDI_EVENT_BADFCS: int
DAHDI_EVENT_DIALCOMPLETE: int
DAHDI_EVENT_RINGERON: int
DAHDI_EVENT_RINGEROFF: int
DAHDI_EVENT_HOOKCOMPLETE: int
DAHDI_EVENT_BITSCHANGED: int
DAHDI_EVENT_PULSE_START: int
DAHDI_EVENT_TIMER_EXPIRED: int
DAHDI_EVENT_TIMER_PING: int
DAHDI_EVENT_POLARITY: int
DAHDI_EVENT_RINGBEGIN: int
DAHDI_EVENT_EC_DISABLED: int
DAHDI_EVENT_REMOVED: int
DAHDI_EVENT_READ_OVERRUN: int
DAHDI_EVENT_WRITE_UNDERRUN: int
DAHDI_EVENT_PULSEDIGIT: int
DAHDI_EVENT_DTMFDOWN: int
DAHDI_EVENT_DTMFUP: int
DAHDI_SIG_NONE: int
DAHDI_SIG_FXSLS: int
DAHDI_SIG_FXSGS: int
DAHDI_SIG_FXSKS: int
DAHDI_SIG_FXOLS: int
DAHDI_SIG_FXOGS: int
DAHDI_SIG_FXOKS: int
DAHDI_SIG_EM: int
DAHDI_SIG_CLEAR: int
DAHDI_SIG_HDLCRAW: int
DAHDI_SIG_HDLCFCS: int
DAHDI_SIG_HDLCNET: int
DAHDI_SIG_SLAVE: int
DAHDI_SIG_SF: int
DAHDI_SIG_CAS: int
DAHDI_SIG_DACS: int
DAHDI_SIG_EM_E1: int
DAHDI_SIG_DACS_RBS: int
DAHDI_SIG_HARDHDLC: int
DAHDI_SIG_MTP2: int
DAHDI_CONFIG_CCS: int
DAHDI_CONFIG_HDB3: int
DAHDI_CONFIG_CRC4: int
DAHDI_CONFIG_AMI: int

EVENT_NAMES: dict[int, str]
SIG_NAMES: dict[int, str]
HOOK_NAMES: dict[int, str]
LAW_CODES: dict[str, int]
REQUEST_NAMES: dict[int, str]

def sig_name(sigtype: int) -> str: ...
def event_name(event: int) -> str: ...
def law_code(law: str) -> int: ...
def law_name(code: int) -> str: ...
def ioc_size(request: int) -> int: ...
def ioc_dir(request: int) -> int: ...
def struct_size(ctype: str) -> int: ...

class _Struct:
    CTYPE: ClassVar[str]
    @classmethod
    def from_bytes(cls, data: bytes) -> Any: ...
    def to_bytes(self) -> bytes: ...

class ChannelParams(_Struct):
    channo: int
    spanno: int
    chanpos: int
    sigtype: int
    sigcap: int
    rxisoffhook: int
    rxbits: int
    txbits: int
    txhooksig: int
    rxhooksig: int
    curlaw: int
    idlebits: int
    name: str
    chan_alarms: int
    def __init__(self, channo: int = ..., spanno: int = ..., chanpos: int = ...,
                 sigtype: int = ..., sigcap: int = ..., rxisoffhook: int = ...,
                 rxbits: int = ..., txbits: int = ..., txhooksig: int = ...,
                 rxhooksig: int = ..., curlaw: int = ..., idlebits: int = ...,
                 name: str = ..., chan_alarms: int = ...) -> None: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> ChannelParams: ...

class SpanStatus(_Struct):
    spanno: int
    name: str
    desc: str
    alarms: int
    bpvcount: int
    crc4count: int
    ebitcount: int
    fascount: int
    fecount: int
    cvcount: int
    irqmisses: int
    syncsrc: int
    numchans: int
    totalchans: int
    totalspans: int
    lineconfig: int
    linecompat: int
    spantype: str
    def __init__(self, spanno: int = ..., name: str = ..., desc: str = ..., alarms: int = ...,
                 bpvcount: int = ..., crc4count: int = ..., ebitcount: int = ...,
                 fascount: int = ..., fecount: int = ..., cvcount: int = ...,
                 irqmisses: int = ...,
                 syncsrc: int = ..., numchans: int = ..., totalchans: int = ...,
                 totalspans: int = ..., lineconfig: int = ..., linecompat: int = ...,
                 spantype: str = ...) -> None: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> SpanStatus: ...

class BufferInfo(_Struct):
    txbufpolicy: int
    rxbufpolicy: int
    numbufs: int
    bufsize: int
    readbufs: int
    writebufs: int
    def __init__(self, txbufpolicy: int = ..., rxbufpolicy: int = ..., numbufs: int = ...,
                 bufsize: int = ..., readbufs: int = ..., writebufs: int = ...) -> None: ...
    @classmethod
    def from_bytes(cls, data: bytes) -> BufferInfo: ...

class DahdiError(OSError):
    what: str
    def __init__(self, err: int, what: str) -> None: ...

class SeamError(RuntimeError): ...

OPS: tuple[str, ...]

class SyscallRequest:
    op: str
    fd: int
    arg: int
    data: bytes
    def __init__(self, op: str, fd: int = ..., arg: int = ..., data: bytes = ...) -> None: ...
    def encode(self) -> bytes: ...
    @classmethod
    def decode(cls, raw: bytes) -> SyscallRequest: ...
    def poll_fds(self) -> list[tuple[int, int]]: ...

class SyscallReply:
    ret: int
    err: int
    data: bytes
    def __init__(self, ret: int, err: int = ..., data: bytes = ...) -> None: ...
    @classmethod
    def fail(cls, err: int) -> SyscallReply: ...
    def encode(self) -> bytes: ...
    @classmethod
    def decode(cls, raw: bytes) -> SyscallReply: ...

class EmulationClient(Protocol):
    def call(self, req: SyscallRequest) -> SyscallReply: ...

def encode_revents(revents: list[int]) -> bytes: ...
def use_libc() -> None: ...
def use_emulation(client: EmulationClient) -> None: ...
def emulation_client() -> EmulationClient | None: ...

def open_file(path: str = ..., flags: int = ...) -> int: ...
def close(fd: int) -> None: ...
def ioctl(fd: int, request: int, arg: Any = ...) -> int: ...
def ioctl_int(fd: int, request: int, value: int = ...) -> int: ...
def specify(fd: int, channel: int) -> None: ...
def set_blocksize(fd: int, size: int) -> None: ...
def get_blocksize(fd: int) -> int: ...
def set_law(fd: int, code: int) -> None: ...
def get_params(fd: int, channo: int = ...) -> ChannelParams: ...
def hook(fd: int, op: int) -> None: ...
def get_event(fd: int) -> int: ...
def span_status(fd: int, span: int = ...) -> SpanStatus: ...
def get_bufinfo(fd: int) -> BufferInfo: ...
def set_bufinfo(fd: int, info: BufferInfo) -> None: ...
def channo(fd: int) -> int: ...
def get_rxbits(fd: int) -> int: ...
def set_txbits(fd: int, bits: int) -> None: ...
def flush(fd: int, what: int) -> None: ...
def read(fd: int, count: int) -> bytes: ...
def write(fd: int, data: bytes) -> int: ...
def poll(fds: list[tuple[int, int]], timeout_ms: int) -> list[int]: ...
def exchange(fds: np.ndarray, tx: np.ndarray | None, rx: np.ndarray | None,
             status: np.ndarray | None = ...) -> np.ndarray: ...
def event_pending(status: int) -> bool: ...
def write_failed(status: int) -> int: ...
def read_failed(status: int) -> int: ...
