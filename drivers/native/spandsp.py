"""SpanDSP 0.0.6 as a small Pythonic binding: DTMF, caller ID (ADSI), echo cancelling,
T.30 fax over the audio path, supervisory tones, and G3 TIFF pages.

The only importer of the compiled module drivers.native._spandsp
(cffi_build/build_spandsp.py). All audio is 8 kHz linear int16 in 1-D numpy arrays,
normally one 160-sample (20 ms) block per call; each call is one C call (no per-sample
Python, no copies of the input: arrays are passed with ffi.from_buffer).

Each object owns one SpanDSP state and frees it when garbage-collected (or on close()).
Objects are not thread-safe: use each from one thread.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
from typing import Iterable, Sequence

import numpy as np

from drivers.native._spandsp import ffi as _ffi, lib as _lib

__all__ = [
    "SpanDspError", "DtmfRx", "DtmfTx", "AdsiTx", "AdsiRx", "CallerIdMessage",
    "EchoCanceller", "FaxSession", "FaxResult", "SuperToneRx", "ToneReport",
    "write_fax_tiff", "read_fax_tiff", "FaxPage",
    "ADSI_CLASS", "ADSI_CLIP", "ADSI_ACLIP", "ADSI_JCLIP", "ADSI_CLIP_DTMF",
]

RATE = 8000

ADSI_CLASS = _lib.ADSI_STANDARD_CLASS          # Bellcore/Telcordia (and China) FSK, Bell 202
ADSI_CLIP = _lib.ADSI_STANDARD_CLIP            # ETSI, V.23
ADSI_ACLIP = _lib.ADSI_STANDARD_ACLIP          # Singapore
ADSI_JCLIP = _lib.ADSI_STANDARD_JCLIP          # Japan (NTT)
ADSI_CLIP_DTMF = _lib.ADSI_STANDARD_CLIP_DTMF  # ETSI caller ID sent as DTMF digits

_STANDARDS = {
    "class": ADSI_CLASS, "clip": ADSI_CLIP, "aclip": ADSI_ACLIP, "jclip": ADSI_JCLIP,
    "clip_dtmf": ADSI_CLIP_DTMF,
}

# Field types shared by the CLASS, CLIP and A-CLIP multiple data message (MDMF) formats.
MDMF_CALLERID = 0x80
FIELD_DATETIME = 0x01
FIELD_CALLER_NUMBER = 0x02
FIELD_DIALED_NUMBER = 0x03
FIELD_NUMBER_ABSENT = 0x04
FIELD_CALLER_NAME = 0x07
FIELD_NAME_ABSENT = 0x08
# J-CLIP
JCLIP_MDMF_CALLERID = 0x40
JCLIP_CALLER_NUMBER = 0x02
JCLIP_ABSENCE = 0x04
# CLIP-DTMF ("A<number>#")
DTMF_HASH_TERMINATED = ord("#")
DTMF_CALLER_NUMBER = ord("A")
DTMF_ABSENCE = ord("D")

_I16 = np.dtype(np.int16)

log = logging.getLogger("drivers.native.spandsp")


@_ffi.def_extern()
def hl_tiff_message(is_error, module, text):
    """libtiff's messages (from SpanDSP's fax files and the TIFF helpers): logged,
    never printed on stderr."""
    msg = _ffi.string(text).decode("utf-8", "replace")
    mod = _ffi.string(module).decode("utf-8", "replace")
    log.log(logging.WARNING if is_error else logging.DEBUG, "libtiff %s: %s", mod, msg)


_lib.hl_tiff_init()

_SPAN_LEVELS = {
    _lib.SPAN_LOG_ERROR: logging.ERROR,
    _lib.SPAN_LOG_WARNING: logging.WARNING,
    _lib.SPAN_LOG_PROTOCOL_ERROR: logging.WARNING,
    _lib.SPAN_LOG_PROTOCOL_WARNING: logging.INFO,
}


@_ffi.def_extern()
def hl_span_message(level, text):
    """SpanDSP's span_log output (fax traces when asked for): logged, never printed."""
    py_level = _SPAN_LEVELS.get(level & 0xFF, logging.DEBUG)
    if log.isEnabledFor(py_level):
        log.log(py_level, "%s", _ffi.string(text).decode("utf-8", "replace").rstrip())


@_ffi.def_extern()
def hl_span_error(text):
    log.error("%s", _ffi.string(text).decode("utf-8", "replace").rstrip())


_lib.span_set_message_handler(_lib.hl_span_message)
_lib.span_set_error_handler(_lib.hl_span_error)


class SpanDspError(Exception):
    """Bad input to a SpanDSP object, or SpanDSP refused it."""


def _pcm_in(pcm, what: str) -> np.ndarray:
    """Validate an input block: 1-D int16, contiguous (passed to C without a copy)."""
    if not isinstance(pcm, np.ndarray) or pcm.dtype != _I16:
        raise SpanDspError(f"{what}: audio must be an int16 numpy array, got "
                           f"{getattr(pcm, 'dtype', type(pcm).__name__)}")
    if pcm.ndim != 1:
        raise SpanDspError(f"{what}: audio must be 1-D, got shape {pcm.shape}")
    if not pcm.flags.c_contiguous:
        pcm = np.ascontiguousarray(pcm)
    return pcm


def _count(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise SpanDspError(f"{what}: sample count must be an int >= 0, got {n!r}")
    return int(n)


class _Owned:
    """Frees its SpanDSP state on close() or when collected."""

    _state = _ffi.NULL
    _free = None

    def close(self) -> None:
        state, self._state = self._state, _ffi.NULL
        if state != _ffi.NULL and self._free is not None:
            self._free(state)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def _live(self):
        if self._state == _ffi.NULL:
            raise SpanDspError(f"{type(self).__name__} is closed")
        return self._state


# ---- DTMF -------------------------------------------------------------------------------
class DtmfRx(_Owned):
    """SpanDSP's DTMF receiver (Q.24 limits). `rx` returns the digits completed during
    that block."""

    _free = staticmethod(_lib.dtmf_rx_free)

    def __init__(self, *, filter_dialtone: bool = False, twist_db: int | None = None,
                 reverse_twist_db: int | None = None, threshold_dbm0: int | None = None):
        self._state = _lib.dtmf_rx_init(_ffi.NULL, _ffi.NULL, _ffi.NULL)
        if self._state == _ffi.NULL:
            raise SpanDspError("dtmf_rx_init failed")
        self._out = _ffi.new("char[]", _lib.MAX_DTMF_DIGITS + 1)
        self._max = _lib.MAX_DTMF_DIGITS
        self._parms = (1 if filter_dialtone else 0,
                       -1 if twist_db is None else int(twist_db),
                       -1 if reverse_twist_db is None else int(reverse_twist_db),
                       -99 if threshold_dbm0 is None else int(threshold_dbm0))
        _lib.dtmf_rx_parms(self._state, *self._parms)

    def rx(self, pcm: np.ndarray) -> str:
        """Feed one block; returns the digits newly detected in it ("" most of the time)."""
        # Kept lean: this runs once per channel per 20 ms block.
        try:
            if pcm.dtype != _I16:
                raise TypeError
            buf = _ffi.from_buffer("int16_t[]", pcm)
        except (AttributeError, TypeError, ValueError, BufferError):
            pcm = _pcm_in(pcm, "DtmfRx.rx")
            buf = _ffi.from_buffer("int16_t[]", pcm)
        n = _lib.hl_dtmf_rx(self._state, buf, len(buf), self._out, self._max)
        return _ffi.unpack(self._out, n).decode("ascii") if n else ""

    def status(self) -> str:
        """The digit currently held ('' when none, 'x' when unsure)."""
        code = _lib.dtmf_rx_status(self._live())
        return chr(code) if code else ""

    def reset(self) -> None:
        """Forget any partial digit (e.g. when the channel changes hands)."""
        _lib.dtmf_rx_init(self._live(), _ffi.NULL, _ffi.NULL)
        _lib.dtmf_rx_parms(self._state, *self._parms)


class DtmfTx(_Owned):
    """SpanDSP's DTMF generator: queue digits with put(), pull audio with generate()."""

    _free = staticmethod(_lib.dtmf_tx_free)
    DIGITS = frozenset("0123456789*#ABCDabcd")

    def __init__(self, *, level_dbm0: int | None = None, twist_db: int = 0,
                 on_ms: int | None = None, off_ms: int | None = None):
        self._state = _lib.dtmf_tx_init(_ffi.NULL)
        if self._state == _ffi.NULL:
            raise SpanDspError("dtmf_tx_init failed")
        if level_dbm0 is not None:
            _lib.dtmf_tx_set_level(self._state, int(level_dbm0), int(twist_db))
        if on_ms is not None or off_ms is not None:
            _lib.dtmf_tx_set_timing(self._state, -1 if on_ms is None else int(on_ms),
                                    -1 if off_ms is None else int(off_ms))

    def put(self, digits: str) -> None:
        if not isinstance(digits, str) or any(d not in self.DIGITS for d in digits):
            raise SpanDspError(f"DtmfTx.put: {digits!r} is not a string of DTMF digits")
        raw = digits.upper().encode("ascii")
        left = _lib.dtmf_tx_put(self._live(), raw, len(raw))
        if left:
            raise SpanDspError(f"DtmfTx.put: queue full, {left} digits not queued")

    def generate(self, n: int = 160) -> np.ndarray:
        """Up to n samples of tone; zeros after the queued digits are done."""
        out = np.zeros(_count(n, "DtmfTx.generate"), np.int16)
        _lib.dtmf_tx(self._live(), _ffi.from_buffer("int16_t[]", out), out.shape[0])
        return out


# ---- caller ID (ADSI) -------------------------------------------------------------------
def _standard(standard) -> int:
    if isinstance(standard, str):
        try:
            return _STANDARDS[standard.lower()]
        except KeyError:
            raise SpanDspError(f"unknown caller ID standard {standard!r} "
                               f"(one of {', '.join(_STANDARDS)})") from None
    if standard not in _STANDARDS.values():
        raise SpanDspError(f"unknown caller ID standard {standard!r}")
    return int(standard)


def _when_text(when) -> str | None:
    """Caller ID date and time: MMDDHHMM."""
    if when is None:
        return None
    if isinstance(when, (_dt.datetime,)):
        return when.strftime("%m%d%H%M")
    if isinstance(when, str) and len(when) == 8 and when.isdigit():
        return when
    raise SpanDspError(f"caller ID time must be a datetime or 'MMDDHHMM', got {when!r}")


@dataclasses.dataclass(frozen=True)
class CallerIdMessage:
    """One received caller ID message, checksum verified by SpanDSP."""
    message_type: int
    fields: tuple[tuple[int, bytes], ...]
    number: str | None = None
    name: str | None = None
    when: str | None = None          # MMDDHHMM as sent
    absence: str | None = None       # reason the number is absent: 'O', 'P', ...
    raw: bytes = b""


class AdsiTx(_Owned):
    """Caller ID generator (FSK or DTMF per `standard`)."""

    _free = staticmethod(_lib.adsi_tx_free)

    def __init__(self, standard=ADSI_CLASS):
        self.standard = _standard(standard)
        self._state = _lib.adsi_tx_init(_ffi.NULL, self.standard)
        if self._state == _ffi.NULL:
            raise SpanDspError("adsi_tx_init failed")

    def build_message(self, message_type: int,
                      fields: Iterable[tuple[int, bytes | str]]) -> bytes:
        """Assemble a message with adsi_add_field (type-length-value fields for the FSK
        standards; field letter + digits for CLIP-DTMF)."""
        buf = _ffi.new("uint8_t[]", 256)
        length = _lib.adsi_add_field(self._live(), buf, -1, message_type & 0xFF, _ffi.NULL, 0)
        for ftype, body in fields:
            if isinstance(body, str):
                body = body.encode("latin-1")
            if not isinstance(body, (bytes, bytearray)):
                raise SpanDspError(f"caller ID field {ftype}: body must be str or bytes")
            # Worst case a field adds type, length and a stuffed length byte (J-CLIP also
            # stuffs the body): keep the whole message inside one FSK message (255).
            if length + 3 + 2 * len(body) > 250:
                raise SpanDspError("caller ID message too long (more than 250 bytes)")
            length = _lib.adsi_add_field(self._state, buf, length, ftype & 0xFF,
                                         bytes(body), len(body))
        return _ffi.unpack(_ffi.cast("char *", buf), length)

    def callerid_message(self, number: str | None, name: str | None = None,
                         when: _dt.datetime | str | None = None,
                         absent: str | None = None) -> bytes:
        """A caller ID message for this standard: number, name and date/time (MDMF for
        CLASS/CLIP/A-CLIP; J-CLIP and CLIP-DTMF carry the number only). `absent` gives
        the reason code when there is no number ('O' unavailable, 'P' private)."""
        if number is not None and (not isinstance(number, str) or not number.isdigit()
                                   or len(number) > 32):
            raise SpanDspError(f"caller ID number must be up to 32 digits, got {number!r}")
        if name is not None and (not isinstance(name, str) or len(name) > 50):
            raise SpanDspError("caller ID name must be a string of up to 50 characters")
        stamp = _when_text(when)
        if self.standard == ADSI_CLIP_DTMF:
            fields = [(DTMF_CALLER_NUMBER, number)] if number else \
                [(DTMF_ABSENCE, "1" if absent == "P" else "3")]
            return self.build_message(DTMF_HASH_TERMINATED, fields)
        if self.standard == ADSI_JCLIP:
            fields = [(JCLIP_CALLER_NUMBER, number)] if number else \
                [(JCLIP_ABSENCE, absent or "O")]
            return self.build_message(JCLIP_MDMF_CALLERID, fields)
        fields = []
        if stamp:
            fields.append((FIELD_DATETIME, stamp))
        if number:
            fields.append((FIELD_CALLER_NUMBER, number))
        else:
            fields.append((FIELD_NUMBER_ABSENT, absent or "O"))
        if name:
            fields.append((FIELD_CALLER_NAME, name.encode("gb18030", "replace")))
        return self.build_message(MDMF_CALLERID, fields)

    def put_message(self, message: bytes) -> None:
        """Queue a message for transmission (after any message still being sent)."""
        if not isinstance(message, (bytes, bytearray)) or not message:
            raise SpanDspError("put_message: message must be non-empty bytes")
        res = _lib.adsi_tx_put_message(self._live(), bytes(message), len(message))
        if res < 0:
            raise SpanDspError("put_message: message too long for this standard")
        if res == 0:
            raise SpanDspError("put_message: a message is still being sent")

    def set_preamble(self, preamble_len: int = -1, preamble_ones_len: int = -1,
                     postamble_ones_len: int = -1, stop_bits: int = -1) -> None:
        """Channel seizure bits, mark bits before and after, stop bits (-1: standard)."""
        _lib.adsi_tx_set_preamble(self._live(), preamble_len, preamble_ones_len,
                                  postamble_ones_len, stop_bits)

    def send_alert_tone(self) -> None:
        """CAS alert tone (2130 + 2750 Hz) before the message, for caller ID on call waiting."""
        _lib.adsi_tx_send_alert_tone(self._live())

    def generate(self, n: int = 160) -> np.ndarray:
        """Up to n samples; shorter (possibly empty) once the message is complete."""
        out = np.zeros(_count(n, "AdsiTx.generate"), np.int16)
        got = _lib.adsi_tx(self._live(), _ffi.from_buffer("int16_t[]", out), out.shape[0])
        return out[:max(0, got)]

    def callerid_audio(self, number: str | None, name: str | None = None,
                       when: _dt.datetime | str | None = None,
                       absent: str | None = None) -> np.ndarray:
        """The whole caller ID spill for one call, as int16 audio."""
        self.put_message(self.callerid_message(number, name, when, absent))
        chunks = []
        while True:
            block = self.generate(160)
            chunks.append(block)
            if block.shape[0] < 160:
                break
            if len(chunks) > 60 * 50:      # a minute of signal: something is wrong
                raise SpanDspError("caller ID generation did not finish")
        return np.concatenate(chunks)


class AdsiRx(_Owned):
    """Caller ID receiver: `rx(block)` returns the messages completed in that block."""

    _free = staticmethod(_lib.hl_adsi_rx_free)
    MAX_FIELDS = 32

    def __init__(self, standard=ADSI_CLASS):
        self.standard = _standard(standard)
        self._state = _lib.hl_adsi_rx_new(self.standard)
        if self._state == _ffi.NULL:
            raise SpanDspError("adsi_rx_init failed")
        self._types = _ffi.new("uint8_t[]", self.MAX_FIELDS)
        self._offsets = _ffi.new("int[]", self.MAX_FIELDS)
        self._lengths = _ffi.new("int[]", self.MAX_FIELDS)

    @property
    def dropped(self) -> int:
        """Messages lost because more than 8 completed within one block."""
        return self._live().dropped

    def rx(self, pcm: np.ndarray) -> list[CallerIdMessage]:
        pcm = _pcm_in(pcm, "AdsiRx.rx")
        h = self._live()
        n = _lib.hl_adsi_rx(h, _ffi.from_buffer("int16_t[]", pcm), pcm.shape[0])
        return [self._parse(i) for i in range(n)]

    def _parse(self, index: int) -> CallerIdMessage:
        h = self._state
        raw = bytes(_ffi.buffer(h.msg[index], h.len[index]))
        count = _lib.hl_adsi_fields(h, index, self._types, self._offsets, self._lengths,
                                    self.MAX_FIELDS)
        if count <= 0:
            return CallerIdMessage(message_type=raw[0] if raw else 0, fields=(), raw=raw)
        fields = tuple((self._types[i], raw[self._offsets[i]:self._offsets[i] + self._lengths[i]])
                       for i in range(1, count))
        msg_type = self._types[0]
        number = name = when = absence = None
        if self.standard == ADSI_CLIP_DTMF:
            for ftype, body in fields:
                if ftype in (DTMF_CALLER_NUMBER, 0):
                    number = body.decode("ascii", "replace")
                elif ftype in (DTMF_ABSENCE, ord("B")):
                    absence = body.decode("ascii", "replace")
        elif self.standard == ADSI_JCLIP:
            for ftype, body in fields:
                if ftype == JCLIP_CALLER_NUMBER:
                    number = body.decode("ascii", "replace")
                elif ftype == JCLIP_ABSENCE:
                    absence = body.decode("ascii", "replace")
        elif msg_type & 0x80:
            for ftype, body in fields:
                if ftype == FIELD_CALLER_NUMBER:
                    number = body.decode("ascii", "replace")
                elif ftype == FIELD_CALLER_NAME:
                    name = body.decode("gb18030", "replace")
                elif ftype == FIELD_DATETIME:
                    when = body.decode("ascii", "replace")
                elif ftype in (FIELD_NUMBER_ABSENT,):
                    absence = body.decode("ascii", "replace")
        elif fields:
            # Single data message (SDMF): MMDDHHMM then the number.
            body = fields[0][1].decode("ascii", "replace")
            when, number = body[:8], body[8:]
        return CallerIdMessage(message_type=msg_type, fields=fields, number=number,
                               name=name, when=when, absence=absence, raw=raw)


# ---- echo canceller ---------------------------------------------------------------------
class EchoCanceller(_Owned):
    """Line echo canceller: SpanDSP's adaptive filter plus a non-linear processor.

    `process(tx_ref, rx)`: tx_ref is the block we sent towards the line (the echo
    reference), rx the block that came back; returns rx with the echo removed.
    `taps` is the echo tail in samples (256 = 32 ms). `nlp` mutes the residual echo while
    the far end talks alone (this binding's own NLP: SpanDSP 0.0.6's mutes near-end
    speech quieter than about -10 dBm0, so it is never used). `adaption` False freezes
    the learned echo path. `tx_hpf`/`rx_hpf` are SpanDSP's DC-blocking filters.
    """

    _free = staticmethod(_lib.hl_ec_free)

    def __init__(self, taps: int = 256, adaption: bool = True, nlp: bool = True, *,
                 tx_hpf: bool = False, rx_hpf: bool = False):
        if isinstance(taps, bool) or not isinstance(taps, int) or not 32 <= taps <= 4096:
            raise SpanDspError(f"echo canceller taps must be 32..4096, got {taps!r}")
        if taps & (taps - 1):
            raise SpanDspError(f"echo canceller taps must be a power of two, got {taps}")
        mode = 0
        for flag, bit in ((adaption, _lib.ECHO_CAN_USE_ADAPTION),
                          (tx_hpf, _lib.ECHO_CAN_USE_TX_HPF),
                          (rx_hpf, _lib.ECHO_CAN_USE_RX_HPF)):
            if flag:
                mode |= bit
        self.taps = taps
        self.mode = mode
        self.nlp = bool(nlp)
        self._state = _lib.hl_ec_new(taps, mode, 1 if nlp else 0)
        if self._state == _ffi.NULL:
            raise SpanDspError("echo_can_init failed")

    def process(self, tx_ref: np.ndarray, rx: np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
        tx_ref = _pcm_in(tx_ref, "EchoCanceller.process tx")
        rx = _pcm_in(rx, "EchoCanceller.process rx")
        n = rx.shape[0]
        if tx_ref.shape[0] != n:
            raise SpanDspError(f"EchoCanceller.process: tx has {tx_ref.shape[0]} samples, "
                               f"rx has {n}")
        if out is None:
            out = np.empty(n, np.int16)
        elif out.dtype != _I16 or out.shape != (n,) or not out.flags.c_contiguous:
            raise SpanDspError("EchoCanceller.process: out must be a contiguous int16 "
                               f"array of {n} samples")
        _lib.hl_ec_block(self._live(), _ffi.from_buffer("int16_t[]", tx_ref),
                         _ffi.from_buffer("int16_t[]", rx),
                         _ffi.from_buffer("int16_t[]", out, require_writable=True), n)
        return out

    @property
    def suppressing(self) -> bool:
        """True if the NLP muted the last block (the far end was talking alone)."""
        return bool(self._live().suppressing)

    def flush(self) -> None:
        """Forget the learned echo path (a new call on the channel)."""
        _lib.hl_ec_flush(self._live())

    def set_adaption(self, adaption: bool) -> None:
        if adaption:
            self.mode |= _lib.ECHO_CAN_USE_ADAPTION
        else:
            self.mode &= ~_lib.ECHO_CAN_USE_ADAPTION
        _lib.echo_can_adaption_mode(self._live().ec, self.mode)


# ---- fax --------------------------------------------------------------------------------
_MODEMS = {"v27ter": _lib.T30_SUPPORT_V27TER, "v29": _lib.T30_SUPPORT_V29,
           "v17": _lib.T30_SUPPORT_V17}


@dataclasses.dataclass(frozen=True)
class FaxResult:
    status: int                 # T.30 completion code, 0 = OK
    text: str                   # SpanDSP's words for it
    pages_tx: int
    pages_rx: int
    bit_rate: int
    ecm: bool
    remote_ident: str

    @property
    def ok(self) -> bool:
        return self.status == _lib.T30_ERR_OK


class FaxSession(_Owned):
    """One T.30 fax call over audio (V.17/V.29/V.27ter), sending or receiving a TIFF.

    Each 20 ms: `tx(160)` gives the audio to send, `rx(block)` takes the audio heard.
    `done` becomes true at the end of the call (phase E); `result` then tells how it went.
    `trace` (a tag) logs the T.30 exchange at DEBUG.
    """

    _free = staticmethod(_lib.hl_fax_free)

    def __init__(self, calling_party: bool, tiff_path: str | os.PathLike, receive: bool, *,
                 ident: str = "", modems: Sequence[str] = ("v27ter", "v29", "v17"),
                 ecm: bool = True, trace: str | None = None):
        path = os.fspath(tiff_path)
        if len(os.fsencode(path)) > 255:
            raise SpanDspError(f"fax: TIFF path longer than 255 bytes: {path!r}")
        if not receive and not os.path.isfile(path):
            raise SpanDspError(f"fax: no TIFF file to send at {path!r}")
        if receive and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise SpanDspError(f"fax: directory for {path!r} does not exist")
        if len(ident) > 20 or any(not 32 <= ord(c) < 127 for c in ident):
            raise SpanDspError("fax ident must be up to 20 printable ASCII characters")
        mask = 0
        for m in modems:
            try:
                mask |= _MODEMS[m]
            except KeyError:
                raise SpanDspError(f"unknown fax modem {m!r} (one of {', '.join(_MODEMS)})") \
                    from None
        if not mask:
            raise SpanDspError("fax: at least one modem is needed")
        self.calling_party = bool(calling_party)
        self.receive = bool(receive)
        self.tiff_path = path
        self._state = _lib.hl_fax_new(1 if calling_party else 0, 1 if receive else 0,
                                      os.fsencode(path), ident.encode("ascii"), mask,
                                      1 if ecm else 0)
        if self._state == _ffi.NULL:
            raise SpanDspError("fax_init failed")
        self._fax = self._state.fax
        if trace is not None:
            self.trace(trace)

    def trace(self, tag: str = "fax") -> None:
        """Log this session's T.30 and modem flow (DEBUG on drivers.native.spandsp),
        each line tagged with `tag` (e.g. the channel name)."""
        h = self._live()
        # SpanDSP keeps the tag pointer: it must live as long as the session.
        self._tag = _ffi.new("char[]", str(tag).encode("utf-8", "replace")[:40])
        level = (_lib.SPAN_LOG_SHOW_SEVERITY | _lib.SPAN_LOG_SHOW_PROTOCOL
                 | _lib.SPAN_LOG_SHOW_TAG | _lib.SPAN_LOG_FLOW)
        for state in (_lib.fax_get_logging_state(h.fax), _lib.t30_get_logging_state(h.t30)):
            _lib.span_log_set_tag(state, self._tag)
            _lib.span_log_set_level(state, level)

    def rx(self, pcm: np.ndarray) -> None:
        pcm = _pcm_in(pcm, "FaxSession.rx")
        self._live()
        _lib.fax_rx(self._fax, _ffi.from_buffer("int16_t[]", pcm), pcm.shape[0])

    def tx(self, n: int = 160) -> np.ndarray:
        n = _count(n, "FaxSession.tx")
        self._live()
        out = np.zeros(n, np.int16)
        got = _lib.fax_tx(self._fax, _ffi.from_buffer("int16_t[]", out), n)
        if got < n:
            out[max(0, got):] = 0
        return out

    @property
    def done(self) -> bool:
        return bool(self._live().done)

    @property
    def result(self) -> FaxResult | None:
        """How the call ended (None until done)."""
        h = self._live()
        if not h.done:
            return None
        st = h.final
        return FaxResult(status=h.result,
                         text=_ffi.string(_lib.t30_completion_code_to_str(h.result)).decode(),
                         pages_tx=st.pages_tx, pages_rx=st.pages_rx, bit_rate=st.bit_rate,
                         ecm=bool(st.error_correcting_mode),
                         remote_ident=self.remote_ident)

    @property
    def remote_ident(self) -> str:
        raw = _lib.t30_get_rx_ident(self._live().t30)
        return _ffi.string(raw).decode("ascii", "replace").strip() if raw != _ffi.NULL else ""

    def pages(self) -> tuple[int, int]:
        """(pages sent, pages received) so far."""
        st = _ffi.new("t30_stats_t *")
        _lib.t30_get_transfer_statistics(self._live().t30, st)
        return st.pages_tx, st.pages_rx

    def terminate(self) -> None:
        """End the T.30 session now (the line went away): phase E runs, `done` is set."""
        _lib.t30_terminate(self._live().t30)


# ---- supervisory tones ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ToneReport:
    tone: int | None            # index in the order tones were given; None: tone ended
    level: int
    delay: int                  # samples since the tone's cadence was confirmed


class SuperToneRx(_Owned):
    """SpanDSP's supervisory tone detector. `tones` is a list of cadences, each a list of
    (f1_hz, f2_hz, min_ms, max_ms) segments (f1 = 0 for silence, f2 = 0 for a single
    frequency, max_ms = 0 for no limit); for China's 450 Hz busy tone:
    [[(450, 0, 300, 400), (0, 0, 300, 400)]]."""

    _free = staticmethod(_lib.hl_tone_rx_free)

    def __init__(self, tones: Sequence[Sequence[tuple[int, int, int, int]]]):
        if not tones:
            raise SpanDspError("SuperToneRx needs at least one tone")
        self._desc = _lib.super_tone_rx_make_descriptor(_ffi.NULL)
        if self._desc == _ffi.NULL:
            raise SpanDspError("super_tone_rx_make_descriptor failed")
        try:
            for tone in tones:
                if not tone:
                    raise SpanDspError("SuperToneRx: a tone needs at least one segment")
                index = _lib.super_tone_rx_add_tone(self._desc)
                for seg in tone:
                    if len(seg) != 4 or any(not isinstance(v, int) or v < 0 for v in seg):
                        raise SpanDspError(f"SuperToneRx: bad segment {seg!r}: "
                                           "(f1_hz, f2_hz, min_ms, max_ms) ints >= 0")
                    _lib.super_tone_rx_add_element(self._desc, index, *seg)
            self._state = _lib.hl_tone_rx_new(self._desc)
            if self._state == _ffi.NULL:
                raise SpanDspError("super_tone_rx_init failed")
        except BaseException:
            _lib.super_tone_rx_free_descriptor(self._desc)
            self._desc = _ffi.NULL
            raise

    def rx(self, pcm: np.ndarray) -> list[ToneReport]:
        pcm = _pcm_in(pcm, "SuperToneRx.rx")
        h = self._live()
        n = _lib.hl_tone_rx(h, _ffi.from_buffer("int16_t[]", pcm), pcm.shape[0])
        return [ToneReport(tone=h.code[i] if h.code[i] >= 0 else None, level=h.level[i],
                           delay=h.delay[i]) for i in range(n)]

    def close(self) -> None:
        super().close()
        desc, self._desc = getattr(self, "_desc", _ffi.NULL), _ffi.NULL
        if desc != _ffi.NULL:
            _lib.super_tone_rx_free_descriptor(desc)


# ---- G3 TIFF pages ----------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class FaxPage:
    bitmap: np.ndarray          # bool (rows, width), True = black
    x_dpi: float
    y_dpi: float


def _errbuf():
    return _ffi.new("char[]", 512)


def _raise(err, fallback: str):
    text = _ffi.string(err).decode("utf-8", "replace") or fallback
    raise SpanDspError(text)


def write_fax_tiff(path: str | os.PathLike, pages: Sequence[np.ndarray],
                   x_dpi: float = 204.0, y_dpi: float = 98.0, *, group4: bool = False) -> None:
    """Write bilevel pages (bool or 0/1 arrays (rows, width), True/1 = black) as a G3
    (T.4 1-D; G4 with group4) TIFF such as fax machines exchange: 1728 pixels wide for
    A4 at 204 dpi, 98 (standard) or 196 (fine) rows per inch."""
    if not pages:
        raise SpanDspError("write_fax_tiff: no pages")
    arrays = []
    for i, page in enumerate(pages):
        page = np.asarray(page)
        if page.ndim != 2 or page.shape[0] < 1 or page.shape[1] < 8:
            raise SpanDspError(f"write_fax_tiff: page {i} must be 2-D (rows, width), "
                               f"got shape {page.shape}")
        arrays.append(page)
    width = arrays[0].shape[1]
    if any(a.shape[1] != width for a in arrays):
        raise SpanDspError("write_fax_tiff: all pages must have the same width")
    packed = np.ascontiguousarray(np.concatenate([np.packbits(a != 0, axis=1)
                                                  for a in arrays]))
    rows = _ffi.new("int[]", [a.shape[0] for a in arrays])
    err = _errbuf()
    res = _lib.hl_tiff_write(os.fsencode(path), _ffi.from_buffer("uint8_t[]", packed), width,
                             rows, len(arrays), float(x_dpi), float(y_dpi),
                             1 if group4 else 0, err, 512)
    if res != 0:
        _raise(err, f"could not write {path}")


def read_fax_tiff(path: str | os.PathLike) -> list[FaxPage]:
    """Read every page of a bilevel TIFF (any compression libtiff knows)."""
    bpath = os.fsencode(path)
    err = _errbuf()
    count = _lib.hl_tiff_count(bpath, err, 512)
    if count < 0:
        _raise(err, f"could not read {path}")
    width = _ffi.new("int *")
    rows = _ffi.new("int *")
    xres = _ffi.new("double *")
    yres = _ffi.new("double *")
    pages = []
    for page in range(count):
        if _lib.hl_tiff_info(bpath, page, width, rows, xres, yres, err, 512) != 0:
            _raise(err, f"could not read page {page} of {path}")
        row_bytes = (width[0] + 7) // 8
        buf = np.zeros((rows[0], row_bytes), np.uint8)
        if _lib.hl_tiff_read(bpath, page, _ffi.from_buffer("uint8_t[]", buf), row_bytes,
                             rows[0], err, 512) != 0:
            _raise(err, f"could not read page {page} of {path}")
        bitmap = np.unpackbits(buf, axis=1)[:, :width[0]].astype(bool)
        pages.append(FaxPage(bitmap=bitmap, x_dpi=round(xres[0], 1), y_dpi=round(yres[0], 1)))
    return pages


# ---- benchmark: python -m drivers.native.spandsp ------------------------------------------
def _benchmark(seconds: float = 1.0) -> None:
    import tempfile
    import time

    def rate(fn, n_items: int) -> float:
        """Seconds per item, best of a few runs of about `seconds` each."""
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            done = 0
            while time.perf_counter() - start < seconds / 3:
                fn()
                done += n_items
            best = min(best, (time.perf_counter() - start) / done)
        return best

    tx = DtmfTx()
    tx.put("0123456789*#")
    audio = np.concatenate([tx.generate(160) for _ in range(100)])
    blocks = [audio[i:i + 160] for i in range(0, len(audio), 160)]
    rx = DtmfRx()

    def dtmf_run():
        for b in blocks:
            rx.rx(b)
    per = rate(dtmf_run, len(blocks))
    print(f"DtmfRx.rx, 160-sample blocks: {per * 1e6:.2f} us/call, "
          f"{160 / per / 1e6:.1f} M samples/s per core")

    rng = np.random.default_rng(1)
    far = (rng.standard_normal(160 * 50) * 3000).astype(np.int16)
    echo = (np.convolve(far, [0, 0, 0.3, -0.1])[:len(far)]).astype(np.int16)
    ec = EchoCanceller(256)
    pairs = [(far[i:i + 160], echo[i:i + 160]) for i in range(0, len(far), 160)]

    def ec_run():
        for t, r in pairs:
            ec.process(t, r)
    per = rate(ec_run, len(pairs))
    print(f"EchoCanceller(256 taps).process, 160-sample blocks: {per * 1e6:.1f} us/block = "
          f"{0.02 / per:.0f} channels per core in real time")

    with tempfile.TemporaryDirectory() as tmp:
        page = np.zeros((1100, 1728), bool)
        page[80:160, 100:1600] = True         # a letterhead bar
        page[200:1000:12, 150:1500] = True    # lines of "text"
        write_fax_tiff(os.path.join(tmp, "out.tif"), [page])
        a = FaxSession(True, os.path.join(tmp, "out.tif"), receive=False)
        b = FaxSession(False, os.path.join(tmp, "in.tif"), receive=True)
        start = time.process_time()
        n = 0
        while not (a.done and b.done) and n < 3000:
            x, y = a.tx(160), b.tx(160)
            b.rx(x)
            a.rx(y)
            n += 1
        cpu = time.process_time() - start
        line = n * 0.02
        print(f"FaxSession back to back: {line:.1f} s of line time, {cpu * 1000:.0f} ms CPU = "
              f"{cpu / line / 2 * 1000:.2f} ms CPU per channel per second of audio "
              f"({a.result.text if a.result else 'unfinished'})")


if __name__ == "__main__":
    _benchmark()
