"""Reading 8 kHz mono telephony WAV files: 16-bit linear, A-law or mu-law.

The RIFF chunks are walked by hand (``struct``) so that the errors can say exactly what is
wrong with a file: unknown chunks are skipped, odd-sized chunks keep their pad byte,
WAVE_FORMAT_EXTENSIBLE is accepted when its sub-format is one of the three above, and a
data chunk with a streaming placeholder length runs to the end of the file.
"""
from __future__ import annotations

import os
import struct

import numpy as np

from drivers.media import g711

WAVE_FORMAT_PCM = 0x0001
WAVE_FORMAT_ALAW = 0x0006
WAVE_FORMAT_MULAW = 0x0007
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
_FORMAT_NAMES = {WAVE_FORMAT_PCM: "16-bit linear PCM", WAVE_FORMAT_ALAW: "A-law",
                 WAVE_FORMAT_MULAW: "mu-law"}
# A data chunk this long was written by a program streaming to a pipe (espeak-ng --stdout,
# sox -t wav -): the length is a placeholder and the samples run to the end of the file.
_STREAMED = 0x7FFF0000
# Sub-format GUIDs of WAVE_FORMAT_EXTENSIBLE end with this suffix after the 16-bit code.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"


class AudioFileError(Exception):
    """A file that is not an 8 kHz mono WAV we can read; the message names the file."""


def read_8k_mono(path: str | os.PathLike) -> np.ndarray:
    """The samples of an 8 kHz mono WAV file as int16 (A-law and mu-law decoded)."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read()
    except OSError as e:
        raise AudioFileError(f"{name}: cannot read: {e.strerror or e}") from None
    return parse_8k_mono(data, name)


def parse_8k_mono(data: bytes, name: str = "<bytes>") -> np.ndarray:
    def fail(why: str) -> AudioFileError:
        return AudioFileError(f"{name}: {why}")

    if len(data) < 12 or data[0:4] != b"RIFF" or data[8:12] != b"WAVE":
        if data[0:4] == b"RIFX":
            raise fail("big-endian WAV (RIFX) is not supported")
        raise fail("not a WAV file (no RIFF/WAVE header)")
    fmt = None
    samples = None
    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        if body + size > len(data):
            if chunk_id == b"data" and fmt is not None and size >= _STREAMED:
                size = len(data) - body          # written while streaming: no length known
            elif chunk_id == b"data" and fmt is not None:
                raise fail(f"truncated: the data chunk declares {size} bytes but only "
                           f"{len(data) - body} follow")
            else:
                raise fail(f"truncated: chunk {_chunk_name(chunk_id)} declares {size} bytes "
                           f"but only {len(data) - body} follow")
        if chunk_id == b"fmt ":
            fmt = _parse_fmt(data[body:body + size], fail)
        elif chunk_id == b"data":
            if fmt is None:
                raise fail("data chunk comes before the fmt chunk")
            samples = data[body:body + size]
            break
        pos = body + size + (size & 1)                   # chunks are padded to even sizes
    if fmt is None:
        raise fail("no fmt chunk")
    if samples is None:
        raise fail("no data chunk")
    code, width = fmt
    if len(samples) % width:
        raise fail(f"truncated: data is {len(samples)} bytes, not a whole number of "
                   f"{width}-byte samples")
    if code == WAVE_FORMAT_PCM:
        return np.frombuffer(samples, dtype="<i2").astype(np.int16)
    codes = np.frombuffer(samples, dtype=np.uint8)
    return g711.decode("alaw" if code == WAVE_FORMAT_ALAW else "ulaw", codes)


def _parse_fmt(body: bytes, fail) -> tuple[int, int]:
    if len(body) < 16:
        raise fail(f"fmt chunk too short ({len(body)} bytes)")
    code, channels, rate, _byte_rate, _align, bits = struct.unpack_from("<HHIIHH", body)
    if code == WAVE_FORMAT_EXTENSIBLE:
        if len(body) < 40:
            raise fail("WAVE_FORMAT_EXTENSIBLE fmt chunk too short")
        sub = body[24:40]
        if sub[2:] != _GUID_TAIL:
            raise fail("unsupported WAVE_FORMAT_EXTENSIBLE sub-format")
        code = struct.unpack_from("<H", sub)[0]
    if code not in _FORMAT_NAMES:
        raise fail(f"unsupported format {code:#06x} (expected 16-bit linear PCM, A-law "
                   f"or mu-law)")
    if channels != 1:
        raise fail(f"{channels} channels; expected mono")
    if rate != 8000:
        raise fail(f"sample rate {rate} Hz; expected 8000 Hz")
    width = 2 if code == WAVE_FORMAT_PCM else 1
    if bits != 8 * width:
        raise fail(f"{_FORMAT_NAMES[code]} with {bits} bits per sample; expected "
                   f"{8 * width}")
    return code, width


def _chunk_name(chunk_id: bytes) -> str:
    return repr(chunk_id.decode("latin-1"))


def write_wav(path: str | os.PathLike, pcm: np.ndarray, law: str | None = None) -> None:
    """Write int16 samples as an 8 kHz mono WAV: linear, or A-law/mu-law (`law`)."""
    pcm = np.asarray(pcm, dtype=np.int16)
    if law is None:
        code, width, payload = WAVE_FORMAT_PCM, 2, pcm.astype("<i2").tobytes()
    elif law in g711.LAWS:
        code = WAVE_FORMAT_ALAW if law == "alaw" else WAVE_FORMAT_MULAW
        width, payload = 1, g711.encode(law, pcm).tobytes()
    else:
        raise ValueError(f"law must be None, 'alaw' or 'ulaw', not {law!r}")
    fmt = struct.pack("<HHIIHH", code, 1, 8000, 8000 * width, width, 8 * width)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    chunks += b"data" + struct.pack("<I", len(payload)) + payload
    if len(payload) & 1:
        chunks += b"\x00"
    with open(path, "wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
