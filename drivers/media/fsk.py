"""Caller ID: FSK spill (Bell 202 / V.23, SDMF / MDMF) sent and received, and DTMF caller ID.

Sending: ``callerid_fsk`` builds the whole on-hook spill as int16 audio: channel seizure
(300 alternating bits), 180 mark bits, then the message, each byte framed as one start
bit (space), eight data bits LSB first and one stop bit (mark), and a checksum byte (the
two's complement of the sum of all message bytes, so the bytes sum to 0 mod 256). The
modulator is phase-continuous at 1200 baud: Bell 202 marks at 1200 Hz, spaces at
2200 Hz; V.23 (ETSI CLIP) at 1300/2100 Hz. China sends Bell 202-style FSK between the
first and second ring (YD/T 1277.1).

Messages: SDMF, type 0x04: MMDDHHMM then the number (or "O" out of area, "P" private).
MDMF, type 0x80: parameters 0x01 date/time (MMDDHHMM), 0x02 number, 0x04 reason for
absence of the number ("O"/"P"), 0x07 name (GB18030, so Chinese names pass as GB2312
double bytes and ASCII names as ASCII), 0x08 reason for absence of the name.

Receiving: ``CallerIdReceiver`` demodulates non-coherently. Per enabled row: a band-pass
FIR around the two tones, then two quadrature correlators (mark and space) summed over
one bit period; their power difference is the soft bit (mark > 0), their sum the carrier
detector. A UART then waits for at least ``MARKS_BEFORE_DATA`` bits of steady mark (the
seizure's alternating bits never give that), finds each start bit's falling edge and
samples the ten bits of the frame at their centres, relative to that edge (so the bit
clock is recovered from every start bit). A message ends after its length byte's count
and the checksum; a checksum or framing failure gives a ``CallerId`` with
``valid=False``. Only rows that are receiving cost anything.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import math

import numpy as np

from drivers.media.levels import dbm0_to_peak

BAUD = 1200
STANDARDS = {                      # (mark Hz, space Hz)
    "bell202": (1200.0, 2200.0),
    "v23": (1300.0, 2100.0),
}
SEIZURE_BITS = 300
MARK_BITS = 180
MARKS_BEFORE_DATA = 12             # receiver: steady mark bits needed before a start bit

SDMF = 0x04
MDMF = 0x80
SDMF_MWI = 0x06
MDMF_MWI = 0x82
P_DATETIME = 0x01
P_NUMBER = 0x02
P_NUMBER_ABSENT = 0x04
P_NAME = 0x07
P_NAME_ABSENT = 0x08
ABSENCE = {"O": "out of area", "P": "private"}
NUMBER_CHARS = set("0123456789*#")
MAX_NUMBER = 20
MAX_NAME = 50                      # bytes
NAME_ENCODING = "gb18030"


class CallerIdError(ValueError):
    """Caller ID data that cannot be sent; the message says what is wrong."""


# ---- messages ---------------------------------------------------------------------------
def format_when(when) -> str | None:
    """``when`` (a datetime, an "MMDDHHMM" string or None) as the 8 ASCII digits sent."""
    if when is None:
        return None
    if isinstance(when, _dt.datetime):
        return f"{when.month:02d}{when.day:02d}{when.hour:02d}{when.minute:02d}"
    if isinstance(when, str) and len(when) == 8 and when.isdigit():
        mo, dd, hh, mm = (int(when[i:i + 2]) for i in range(0, 8, 2))
        if 1 <= mo <= 12 and 1 <= dd <= 31 and hh <= 23 and mm <= 59:
            return when
    raise CallerIdError(f"caller ID date/time must be a datetime or 'MMDDHHMM', got {when!r}")


def _check_number(number: str) -> bytes:
    if not isinstance(number, str):
        raise CallerIdError(f"caller ID number must be a string of digits, got {number!r}")
    bad = [c for c in number if c not in NUMBER_CHARS]
    if bad:
        raise CallerIdError(f"caller ID number {number!r} has {bad[0]!r}; only 0-9 * # are sent")
    if len(number) > MAX_NUMBER:
        raise CallerIdError(f"caller ID number {number!r} is longer than {MAX_NUMBER} digits")
    return number.encode("ascii")


def _check_name(name: str) -> bytes:
    """Names are sent in GB18030 (ASCII stays ASCII; Chinese as GB2312/GBK double bytes)."""
    if not isinstance(name, str) or not name:
        raise CallerIdError(f"caller ID name must be a non-empty string, got {name!r}")
    bad = [c for c in name if ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0]
    if bad:
        raise CallerIdError(f"caller ID name {name!r} has control character {bad[0]!r}")
    text = name.encode(NAME_ENCODING)
    if len(text) > MAX_NAME:
        raise CallerIdError(f"caller ID name {name!r} is longer than {MAX_NAME} bytes "
                            f"in {NAME_ENCODING}")
    return text


def checksum(body: bytes) -> int:
    """Two's complement of the byte sum: appended, it makes the message sum to 0 mod 256."""
    return (-sum(body)) & 0xFF


def callerid_message(number: str | None, name: str | None = None, when=None,
                     fmt: str = "mdmf", absence: str = "O") -> bytes:
    """The message bytes, checksum included: type, length, body, checksum.

    A missing number (None or "") is sent as its reason for absence, `absence` "O" (out of
    area) or "P" (private). SDMF has no name and needs `when`.
    """
    if absence not in ABSENCE:
        raise CallerIdError(f"reason for absence must be one of {sorted(ABSENCE)}, got {absence!r}")
    stamp = format_when(when)
    if fmt == "sdmf":
        if stamp is None:
            raise CallerIdError("SDMF caller ID needs a date/time (when=...)")
        if name is not None:
            raise CallerIdError("SDMF caller ID has no name field; use fmt='mdmf'")
        body = stamp.encode("ascii") + (_check_number(number) if number else absence.encode())
        mtype = SDMF
    elif fmt == "mdmf":
        body = b""
        if stamp is not None:
            body += bytes([P_DATETIME, 8]) + stamp.encode("ascii")
        if number:
            digits = _check_number(number)
            body += bytes([P_NUMBER, len(digits)]) + digits
        else:
            body += bytes([P_NUMBER_ABSENT, 1]) + absence.encode()
        if name is not None:
            text = _check_name(name)
            body += bytes([P_NAME, len(text)]) + text
        mtype = MDMF
    else:
        raise CallerIdError(f"caller ID format must be 'mdmf' or 'sdmf', got {fmt!r}")
    msg = bytes([mtype, len(body)]) + body
    return msg + bytes([checksum(msg)])


# ---- modulator --------------------------------------------------------------------------
def _standard(standard: str) -> tuple[float, float]:
    try:
        return STANDARDS[standard]
    except KeyError:
        raise CallerIdError(f"FSK standard must be one of {sorted(STANDARDS)}, "
                            f"got {standard!r}") from None


def frame_bytes(data: bytes) -> list[int]:
    """Asynchronous framing: start bit 0, eight data bits LSB first, stop bit 1."""
    bits = []
    for byte in data:
        bits.append(0)
        bits += [(byte >> i) & 1 for i in range(8)]
        bits.append(1)
    return bits


def fsk_modulate(bits, standard: str = "bell202", level_dbm0: float = -13.0,
                 rate: int = 8000, shift_hz: float = 0.0) -> np.ndarray:
    """Phase-continuous FSK of `bits` (1 = mark) at 1200 baud, int16. `shift_hz` moves both
    tones, as a line with a frequency offset would (a simulator impairment)."""
    mark, space = _standard(standard)
    mark, space = mark + shift_hz, space + shift_hz
    bits = np.asarray(bits, dtype=np.int8)
    n = int(math.ceil(len(bits) * rate / BAUD))
    bit_of = np.minimum(np.arange(n) * BAUD // rate, len(bits) - 1)
    freq = np.where(bits[bit_of] == 1, mark, space)
    phase = np.cumsum(2 * np.pi * freq / rate) - 2 * np.pi * freq[0] / rate
    return np.round(dbm0_to_peak(level_dbm0) * np.sin(phase)).astype(np.int16)


def callerid_fsk(number: str | None, name: str | None = None, when=None,
                 standard: str = "bell202", fmt: str = "mdmf", level_dbm0: float = -13.0,
                 rate: int = 8000, absence: str = "O") -> np.ndarray:
    """A complete FSK caller ID spill as int16 audio (seizure, marks, message, checksum)."""
    if not -60.0 <= level_dbm0 <= 3.0:
        raise CallerIdError(f"caller ID level {level_dbm0} dBm0 is outside -60..3")
    msg = callerid_message(number, name, when, fmt, absence)
    return fsk_modulate(callerid_bits(msg), standard, level_dbm0, rate)


def callerid_bits(msg: bytes) -> list[int]:
    """The spill's bits for message `msg`: seizure, marks, framed bytes, a few marks after
    (so the last stop bit is heard whole)."""
    seizure = [(0x55 >> (i % 8)) & 1 for i in range(SEIZURE_BITS)]
    return seizure + [1] * MARK_BITS + frame_bytes(msg) + [1] * 4


# ---- demodulator ------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class CallerId:
    row: int
    number: str | None          # None when absent (see `absence`) or unreadable
    name: str | None
    when: str | None            # "MMDDHHMM" as sent
    valid: bool                 # checksum and framing good, message parsed
    absence: str | None = None  # "O" / "P" when the number was withheld


def parse_message(msg: bytes) -> tuple[str | None, str | None, str | None, str | None]:
    """(number, name, when, absence) from a whole message (type, length, body; checksum
    already checked). Raises ValueError on a malformed message."""
    if len(msg) < 2 or len(msg) != msg[1] + 2:
        raise ValueError("length byte does not match the message")
    mtype, body = msg[0], msg[2:]
    number = name = when = absence = None
    if mtype == SDMF:
        if len(body) < 9:
            raise ValueError("SDMF message too short")
        when = body[:8].decode("ascii", "replace")
        rest = body[8:].decode("ascii", "replace")
        if rest in ABSENCE:
            absence = rest
        else:
            number = rest
        return number, name, when, absence
    if mtype != MDMF:
        raise ValueError(f"message type 0x{mtype:02x} is not caller ID")
    i = 0
    while i < len(body):
        if i + 2 > len(body) or i + 2 + body[i + 1] > len(body):
            raise ValueError("MDMF parameter runs past the message")
        ptype, plen = body[i], body[i + 1]
        value = body[i + 2:i + 2 + plen].decode(NAME_ENCODING if ptype == P_NAME else "ascii",
                                                "replace")
        if ptype == P_DATETIME:
            when = value
        elif ptype == P_NUMBER:
            number = value
        elif ptype == P_NUMBER_ABSENT:
            absence = value
        elif ptype == P_NAME:
            name = value
        i += 2 + plen                    # other parameters (0x08, 0x03...) are skipped
    return number, name, when, absence


def _bandpass(lo: float, hi: float, taps: int, rate: int) -> np.ndarray:
    """Windowed-sinc band-pass FIR (difference of two low-passes, Blackman window)."""
    n = np.arange(taps) - (taps - 1) / 2
    lp = lambda fc: 2 * fc / rate * np.sinc(2 * fc / rate * n)
    return (lp(hi) - lp(lo)) * np.blackman(taps)


class _Uart:
    HUNT, ARMED = 0, 1


def _run_end(mask: np.ndarray, k: int) -> int:
    """Index just past the first run of at least `k` True values in `mask`, or -1."""
    if k <= 0 or mask.size < k:
        return -1
    c = np.concatenate([[0], np.cumsum(mask)])
    hit = np.flatnonzero(c[k:] - c[:-k] == k)
    return int(hit[0]) + k if hit.size else -1


class _Demod:
    """The batched front end: band-pass, mark/space correlators, carrier detect.

    State is kept for every row; only the rows given to ``soft`` are computed."""

    def __init__(self, rows: int, mark: float, space: float, rate: int, block: int,
                 min_level_dbm0: float):
        self.block = block
        self.win = int(round(rate / BAUD))           # correlator length: one bit
        self.fir = _bandpass(min(mark, space) - 400, max(mark, space) + 400, 31, rate)
        self.w = np.array([mark, space]) * 2 * np.pi / rate
        # a tone of peak A gives correlator power (A * win / 2)^2
        self.carrier_min = (dbm0_to_peak(min_level_dbm0) * self.win / 2) ** 2
        self.n = 0                                   # samples seen: the mixers' clock
        self.fir_hist = np.zeros((rows, len(self.fir) - 1))
        self.z_hist = np.zeros((rows, 2, self.win - 1), dtype=complex)

    def reset(self, row: int) -> None:
        self.fir_hist[row] = 0.0
        self.z_hist[row] = 0.0

    def soft(self, idx: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Soft bits (k, block) in [-1, 1] for rows `idx`: > 0 mark, < 0 space, 0 no carrier."""
        xx = np.concatenate([self.fir_hist[idx], x], axis=1)
        self.fir_hist[idx] = xx[:, -(len(self.fir) - 1):]
        y = np.lib.stride_tricks.sliding_window_view(xx, len(self.fir), axis=1) @ self.fir[::-1]
        t = self.n + np.arange(self.block)
        self.n += self.block
        lo = np.exp(-1j * self.w[:, None] * t)                  # (2, block)
        z = np.concatenate([self.z_hist[idx], y[:, None, :] * lo], axis=2)
        self.z_hist[idx] = z[:, :, -(self.win - 1):]
        c = np.cumsum(z, axis=2)
        c = np.concatenate([np.zeros(c.shape[:2] + (1,), dtype=complex), c], axis=2)
        p = np.abs(c[:, :, self.win:] - c[:, :, :-self.win]) ** 2   # (k, 2, block)
        pm, ps = p[:, 0], p[:, 1]
        total = pm + ps
        return np.where(total >= self.carrier_min, (pm - ps) / np.maximum(total, 1e-9), 0.0)


class _FskRx:
    """One row's UART over the soft bits; fed one block at a time."""

    def __init__(self, row: int, rate: int):
        self.row = row
        self.spb = rate / BAUD                       # samples per bit (6.67 at 8 kHz)
        self.soft = np.zeros(0)                      # soft bits not yet consumed
        self.state = _Uart.HUNT
        self.mark_run = 0
        self.msg = bytearray()

    def feed(self, soft: np.ndarray) -> list[CallerId]:
        self.soft = np.concatenate([self.soft, soft])
        return self._uart()

    # -- UART: positions are indices into self.soft
    def _uart(self) -> list[CallerId]:
        out: list[CallerId] = []
        s = self.soft
        smooth = np.convolve(s, np.ones(3), mode="same")  # a bit is judged on 3 samples
        offsets = (np.arange(10) + 0.5) * self.spb        # bit centres from the start edge
        pos = 0
        frame = int(math.ceil(9.5 * self.spb)) + 2       # samples from the edge to the stop bit
        gap = int(3 * self.spb)                           # carrier lost for 3 bits ends a message
        while pos < len(s):
            if self.state == _Uart.HUNT:
                pos = self._hunt(s, pos)
                continue
            # ARMED: the next start bit's falling edge, unless the carrier goes first
            space = np.flatnonzero(s[pos:] < 0)
            limit = pos + int(space[0]) if space.size else len(s)
            lost = _run_end(s[pos:limit] == 0, gap)
            if lost >= 0:
                out += self._finish(truncated=True) if self.msg else []
                self.state, self.mark_run = _Uart.HUNT, 0
                pos += lost
                continue
            if not space.size:
                pos = max(pos, len(s) - gap)              # keep a tail to measure a gap
                break
            edge = limit
            if edge + frame > len(s):
                pos = edge
                break                                     # wait for the whole frame
            bits = smooth[np.rint(edge + offsets).astype(np.int64)] > 0
            if bits[0]:                                   # a glitch, not a start bit
                pos = edge + 1
                continue
            if not bits[9]:                               # framing error
                out += self._finish(truncated=True) if self.msg else []
                self.state, self.mark_run = _Uart.HUNT, 0
                pos = edge + 1
                continue
            out += self._byte(int(np.dot(bits[1:9], 1 << np.arange(8))))
            pos = int(edge + 9.5 * self.spb)
        self.soft = s[pos:]
        return out

    def _hunt(self, s: np.ndarray, pos: int) -> int:
        """Count steady mark; arm the UART once MARKS_BEFORE_DATA bits of it were seen."""
        need = int(math.ceil(MARKS_BEFORE_DATA * self.spb))
        mark = s[pos:] > 0
        if not mark.size:
            return len(s)
        at = np.arange(len(mark))
        last_space = np.maximum.accumulate(np.where(mark, -1, at))
        run = at - last_space + np.where(last_space < 0, self.mark_run, 0)
        hit = np.flatnonzero(run >= need)
        if hit.size:
            self.state, self.mark_run = _Uart.ARMED, 0
            return pos + int(hit[0]) + 1
        self.mark_run = int(run[-1])
        return len(s)

    def _byte(self, byte: int) -> list[CallerId]:
        if not self.msg and byte not in (SDMF, MDMF, SDMF_MWI, MDMF_MWI):
            self.state = _Uart.HUNT             # not a caller ID message: hunt again
            return []
        self.msg.append(byte)
        if len(self.msg) >= 2 and len(self.msg) == self.msg[1] + 3:
            return self._finish(truncated=False)
        return []

    def _finish(self, truncated: bool) -> list[CallerId]:
        msg, self.msg = bytes(self.msg), bytearray()
        self.state, self.mark_run = _Uart.HUNT, 0
        if msg and msg[0] in (SDMF_MWI, MDMF_MWI):
            return []                            # message waiting: not caller ID
        if truncated or sum(msg) & 0xFF:
            fields = (None, None, None, None)
            if not truncated:
                try:
                    fields = parse_message(msg[:-1])
                except ValueError:
                    pass
            return [CallerId(self.row, fields[0], fields[1], fields[2], False, fields[3])]
        try:
            number, name, when, absence = parse_message(msg[:-1])
        except ValueError:
            return [CallerId(self.row, None, None, None, False)]
        return [CallerId(self.row, number, name, when, True, absence)]


class CallerIdReceiver:
    """FSK caller ID receiver on the rows where it is enabled (only a few at a time)."""

    def __init__(self, rows: int, standard: str = "bell202", block: int = 160,
                 rate: int = 8000, min_level_dbm0: float = -40.0):
        self.rows, self.block, self.rate = rows, block, rate
        self.mark, self.space = _standard(standard)
        self.standard = standard
        self._demod = _Demod(rows, self.mark, self.space, rate, block, min_level_dbm0)
        self._rx: dict[int, _FskRx] = {}
        self._idx = np.zeros(0, dtype=np.int64)

    @property
    def enabled(self) -> np.ndarray:
        on = np.zeros(self.rows, dtype=bool)
        on[self._idx] = True
        return on

    def enable(self, row: int) -> None:
        """Start (or restart) receiving on `row`."""
        if not 0 <= row < self.rows:
            raise IndexError(f"row {row} out of range 0..{self.rows - 1}")
        self._demod.reset(row)
        self._rx[row] = _FskRx(row, self.rate)
        self._idx = np.array(sorted(self._rx), dtype=np.int64)

    def disable(self, row: int) -> None:
        if self._rx.pop(row, None) is not None:
            self._idx = np.array(sorted(self._rx), dtype=np.int64)

    def process(self, pcm: np.ndarray) -> list[CallerId]:
        pcm = np.asarray(pcm)
        if pcm.shape != (self.rows, self.block):
            raise ValueError(f"caller ID receiver expects pcm of shape {(self.rows, self.block)}, "
                             f"got {pcm.shape}")
        if not self._rx:
            self._demod.n += self.block
            return []
        soft = self._demod.soft(self._idx, pcm[self._idx].astype(np.float64))
        out: list[CallerId] = []
        for k, row in enumerate(self._idx):
            out += self._rx[int(row)].feed(soft[k])
        return out


def decode_callerid(pcm, standard: str = "bell202", rate: int = 8000) -> list[CallerId]:
    """Every caller ID message in a whole recording (reported as row 0)."""
    x = np.asarray(pcm, dtype=np.float64)
    x = np.concatenate([x, np.zeros(int(rate * 0.05))])
    demod = _Demod(1, *_standard(standard), rate, len(x), -40.0)
    return _FskRx(0, rate).feed(demod.soft(np.array([0]), x[None, :])[0])


# ---- DTMF caller ID -----------------------------------------------------------------------
def callerid_dtmf(number: str, start: str = "A", end: str = "C", on_ms: int = 70,
                  off_ms: int = 70) -> np.ndarray:
    """DTMF caller ID sent before the first ring: `start` + digits + `end` ("A...C" by
    default; "D...C" in Taiwan, end "#" elsewhere), int16."""
    if not isinstance(number, str) or not number or not number.isdigit() or len(number) > MAX_NUMBER:
        raise CallerIdError(f"DTMF caller ID number must be 1 to {MAX_NUMBER} digits, got {number!r}")
    if start not in ("A", "B", "D", "") or end not in ("C", "#"):
        raise CallerIdError(f"DTMF caller ID start must be A, B, D or empty and end C or #, "
                            f"got {start!r}/{end!r}")
    from drivers.media.dtmf import dtmf_tone       # written alongside; imported when used
    return dtmf_tone(start + number + end, on_ms=on_ms, off_ms=off_ms)


def parse_dtmf_callerid(digits: str) -> str | None:
    """The calling number in a DTMF caller ID string, or None when it is withheld or the
    string is not caller ID. Understands A<number>[D<redirect>][B<info>]C, A<number>#,
    D<number>C (Taiwan), <number># and the absence codes D1# D2# D3#, B00C, B10C."""
    s = (digits or "").strip().upper()
    if len(s) < 2:
        return None
    end = s[-1]
    if end not in "C#":
        if s[0] in "AD" and s[1:].isdigit():
            end, s = "", s              # terminator lost: accept a marked number
        else:
            return None
    body = s[:-1] if end else s
    if not body:
        return None
    head = body[0]
    if head == "A":
        number = ""
        for c in body[1:]:
            if not c.isdigit():
                break
            number += c
        return number or None
    if head == "D":
        rest = body[1:]
        if end == "#" or not rest.isdigit() or (end == "" and len(rest) <= 1):
            return None                 # D1# / D2# / D3#: withheld, international, unavailable
        return rest
    if head == "B":
        return None                     # B00C / B10C: number unavailable or restricted
    if end == "#" and body.isdigit():
        return body
    return None


def _bench(argv=None) -> None:
    import argparse
    import time
    ap = argparse.ArgumentParser(prog="python -m drivers.media.fsk",
                                 description="Benchmark the FSK caller ID receiver.")
    ap.add_argument("--rows", type=int, default=960)
    ap.add_argument("--receiving", type=int, default=32, help="rows with the receiver on")
    ap.add_argument("--spills", type=int, default=5)
    a = ap.parse_args(argv)
    spill = callerid_fsk("13812345678", "ZHANG SAN", "11231530").astype(np.float64)
    x = np.tile(np.concatenate([spill, np.zeros(2400)]), a.spills)
    x = np.concatenate([x, np.zeros((-len(x)) % 160)])
    rx = CallerIdReceiver(a.rows)
    for r in range(a.receiving):
        rx.enable(r)
    pcm = np.zeros((a.rows, 160))
    got = 0
    t0 = time.perf_counter()
    ticks = len(x) // 160
    for i in range(ticks):
        pcm[:a.receiving] = x[i * 160:(i + 1) * 160]
        got += sum(c.valid for c in rx.process(pcm))
    dt = time.perf_counter() - t0
    print(f"{a.receiving} of {a.rows} rows receiving, {ticks} ticks: {dt / ticks * 1e3:.3f} ms/tick "
          f"({dt / ticks / a.receiving * 1e6:.1f} us per receiving row per tick); "
          f"{got}/{a.receiving * a.spills} messages decoded")


if __name__ == "__main__":
    _bench()
