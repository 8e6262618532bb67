"""D-channel captures: pcap files with link type LINUX_LAPD (177).

Each record is the 16-byte LINUX_LAPD pseudo-header (big-endian: packet type 0 for a
frame we received, 4 for one we sent; hatype 0; halen 0; 8 address bytes whose first is
1 when we are the network side; protocol 0x0030) followed by the Q.921 frame without its
FCS. `tshark -r FILE` shows each frame's direction and full Q.921/Q.931 decode.

Timestamps are the caller's (cardd passes the tick's time, so a capture lines up with
the events of the same ticks).
"""
from __future__ import annotations

import struct
from typing import BinaryIO, Iterator

LINKTYPE_LINUX_LAPD = 177
PCAP_MAGIC = 0xA1B2C3D4
SNAPLEN = 65535
RECEIVED = 0            # LINUX_SLL packet types: addressed to us
SENT = 4                # sent by us
_GLOBAL = struct.Struct("<IHHiIII")
_RECORD = struct.Struct("<IIII")
_LAPD = struct.Struct(">HHH8sH")
_PROTO_LAPD = 0x0030


class PcapError(Exception):
    pass


class PcapWriter:
    """Writes D-channel frames to a pcap file as they pass (buffered; close() flushes)."""

    def __init__(self, path: str, network_side: bool, *, buffering: int = 64 * 1024):
        self.path = path
        self.network_side = bool(network_side)
        try:
            self._f: BinaryIO | None = open(path, "wb", buffering=buffering)
        except OSError as e:
            raise PcapError(f"cannot write capture {path}: {e.strerror}") from None
        self._f.write(_GLOBAL.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_LINUX_LAPD))
        self.frames = 0
        self._addr = bytes([1 if self.network_side else 0]) + bytes(7)

    @property
    def closed(self) -> bool:
        return self._f is None

    def write(self, frame: bytes, sent: bool, when: float) -> None:
        if self._f is None:
            return
        header = _LAPD.pack(SENT if sent else RECEIVED, 0, 0, self._addr, _PROTO_LAPD)
        data = header + bytes(frame[:SNAPLEN - len(header)])
        sec = int(when)
        usec = min(999_999, int(round((when - sec) * 1e6)))
        self._f.write(_RECORD.pack(sec, usec, len(data), len(header) + len(frame)))
        self._f.write(data)
        self.frames += 1

    def flush(self) -> None:
        if self._f is not None:
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def read_pcap(path: str) -> Iterator[tuple[float, bool, bool, bytes]]:
    """(time, sent, network_side, frame) for each record of a LINUX_LAPD capture."""
    with open(path, "rb") as f:
        head = f.read(_GLOBAL.size)
        if len(head) < _GLOBAL.size:
            raise PcapError(f"{path}: too short for a pcap header")
        magic, _, _, _, _, _, linktype = _GLOBAL.unpack(head)
        if magic != PCAP_MAGIC:
            raise PcapError(f"{path}: not a little-endian microsecond pcap file")
        if linktype != LINKTYPE_LINUX_LAPD:
            raise PcapError(f"{path}: link type {linktype}, not LINUX_LAPD ({LINKTYPE_LINUX_LAPD})")
        while True:
            rec = f.read(_RECORD.size)
            if not rec:
                return
            if len(rec) < _RECORD.size:
                raise PcapError(f"{path}: truncated record header")
            sec, usec, incl, _ = _RECORD.unpack(rec)
            data = f.read(incl)
            if len(data) < max(incl, _LAPD.size):
                raise PcapError(f"{path}: truncated record")
            pkttype, _, _, addr, _ = _LAPD.unpack(data[:_LAPD.size])
            yield sec + usec / 1e6, pkttype == SENT, addr[0] == 1, data[_LAPD.size:]


class Captures:
    """The D-channel captures cardd is writing, per span: started by a command (until a
    tick) or by configuration (for the whole run)."""

    def __init__(self):
        self._open: dict[int, tuple[PcapWriter, int | None]] = {}

    def start(self, span: int, path: str, network_side: bool, until: int | None) -> None:
        self.stop(span)
        self._open[span] = (PcapWriter(path, network_side), until)

    def stop(self, span: int) -> bool:
        entry = self._open.pop(span, None)
        if entry is not None:
            entry[0].close()
        return entry is not None

    def path(self, span: int) -> str | None:
        entry = self._open.get(span)
        return entry[0].path if entry else None

    def write(self, span: int, frame: bytes, sent: bool, when: float) -> None:
        entry = self._open.get(span)
        if entry is not None:
            entry[0].write(frame, sent, when)

    def expire(self, tick: int) -> list[int]:
        """Close the captures whose time is up; the spans they were on."""
        done = [span for span, (_, until) in self._open.items()
                if until is not None and tick >= until]
        for span in done:
            self.stop(span)
        return done

    def close(self) -> None:
        for span in list(self._open):
            self.stop(span)
