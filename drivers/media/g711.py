"""G.711 A-law and mu-law, bit-exact with ITU-T G.711, as numpy table look-ups.

Decoding indexes a 256-entry table; encoding indexes a 65,536-entry table built once from
the standard's segment rules (the reference algorithm, as in ITU-T G.191's g711.c), so a
whole tick of every channel converts in one vectorised operation.
"""
from __future__ import annotations

import numpy as np

ALAW_SILENCE = 0xD5
ULAW_SILENCE = 0xFF
LAWS = ("alaw", "ulaw")


def _alaw_decode_one(a: int) -> int:
    a ^= 0x55
    seg = (a >> 4) & 0x07
    mant = a & 0x0F
    if seg == 0:
        mag = (mant << 4) + 8
    else:
        mag = ((mant << 4) + 0x108) << (seg - 1)
    return mag if a & 0x80 else -mag


def _ulaw_decode_one(u: int) -> int:
    u = ~u & 0xFF
    seg = (u >> 4) & 0x07
    mag = (((u & 0x0F) << 3) + 0x84) << seg
    mag -= 0x84
    return -mag if u & 0x80 else mag


def _alaw_encode_one(pcm: int) -> int:
    # ITU-T G.191 alaw_compress on the 12 most significant magnitude bits.
    ix = pcm >> 4 if pcm >= 0 else (~pcm) >> 4   # 1's complement for negatives
    if ix > 15:
        iexp = 1
        while ix > 16 + 15:
            ix >>= 1
            iexp += 1
        ix -= 16
        ix += iexp << 4
    if pcm >= 0:
        ix |= 0x80
    return ix ^ 0x55


def _ulaw_encode_one(pcm: int) -> int:
    # ITU-T G.191 ulaw_compress on the 14 most significant bits.
    lin = pcm >> 2
    absno = (~lin if lin < 0 else lin) + 33
    if absno > 0x1FFF:
        absno = 0x1FFF
    i = absno >> 6
    segno = 1
    while i != 0:
        segno += 1
        i >>= 1
    high_nibble = 0x08 - segno
    low_nibble = 0x0F - ((absno >> segno) & 0x0F)
    out = (high_nibble << 4) | low_nibble
    if lin >= 0:
        out |= 0x80
    return out


ALAW_TO_LINEAR = np.array([_alaw_decode_one(i) for i in range(256)], dtype=np.int16)
ULAW_TO_LINEAR = np.array([_ulaw_decode_one(i) for i in range(256)], dtype=np.int16)
_PCM = np.arange(-32768, 32768, dtype=np.int32)
LINEAR_TO_ALAW = np.array([_alaw_encode_one(int(v)) for v in _PCM], dtype=np.uint8)
LINEAR_TO_ULAW = np.array([_ulaw_encode_one(int(v)) for v in _PCM], dtype=np.uint8)
del _PCM


def alaw_decode(codes: np.ndarray) -> np.ndarray:
    return ALAW_TO_LINEAR[np.asarray(codes, dtype=np.uint8)]


def ulaw_decode(codes: np.ndarray) -> np.ndarray:
    return ULAW_TO_LINEAR[np.asarray(codes, dtype=np.uint8)]


def alaw_encode(pcm: np.ndarray) -> np.ndarray:
    return LINEAR_TO_ALAW[np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768]


def ulaw_encode(pcm: np.ndarray) -> np.ndarray:
    return LINEAR_TO_ULAW[np.asarray(pcm, dtype=np.int16).astype(np.int32) + 32768]


def decode(law: str, codes: np.ndarray) -> np.ndarray:
    return alaw_decode(codes) if law == "alaw" else ulaw_decode(codes)


def encode(law: str, pcm: np.ndarray) -> np.ndarray:
    return alaw_encode(pcm) if law == "alaw" else ulaw_encode(pcm)


def decode_table(law: str) -> np.ndarray:
    return ALAW_TO_LINEAR if law == "alaw" else ULAW_TO_LINEAR


def encode_table(law: str) -> np.ndarray:
    """65,536 entries indexed by int16 sample + 32768."""
    return LINEAR_TO_ALAW if law == "alaw" else LINEAR_TO_ULAW


def silence_byte(law: str) -> int:
    if law not in LAWS:
        raise ValueError(f"unknown law {law!r}; expected one of {LAWS}")
    return ALAW_SILENCE if law == "alaw" else ULAW_SILENCE
