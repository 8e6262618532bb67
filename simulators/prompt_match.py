"""Did a caller hear a prompt? The law-coded audio a far end captured against a prompt file.

cardd passes a channel that hears one source (a prompt, nothing mixed in) through without
touching its codes, so a prompt played to a caller arrives byte for byte as
`PromptCache(law).load(file)` gives it. The search is exact first; a small tolerance
(a fraction of codes that may differ, for a tone that overlapped the prompt's edge) is
allowed by aligning on short anchors taken along the prompt.
"""
from __future__ import annotations

import functools
import os

import numpy as np

ANCHOR = 32                     # codes in an anchor
ANCHORS = 12                    # anchors tried along the prompt


class PromptMatchError(ValueError):
    """No prompt to compare with (no text or file, a file that does not exist)."""


@functools.lru_cache(maxsize=256)
def _expected(path: str, law: str, mtime: float) -> bytes:
    from drivers.media.prompts import PromptCache
    return bytes(PromptCache(law).load(path))


def expected_codes(*, text: str = "", file: str = "", lang: str = "zh",
                   tts_cache: str = "run/tts-cache", law: str = "alaw") -> bytes:
    """The codes a prompt puts on the wire: a recording, or a text as the IVR's TTS cache
    renders it (the same cache key ctid uses)."""
    if bool(text) == bool(file):
        raise PromptMatchError("name the prompt by its text or by its file (one of them)")
    if text:
        from ivr.tts import Tts
        file = str(Tts(tts_cache).path_for(text, lang))
    if not os.path.isfile(file):
        raise PromptMatchError(f"prompt file {file!r} does not exist"
                               + (" (not rendered into that TTS cache)" if text else ""))
    return _expected(file, law, os.path.getmtime(file))


def find_prompt(heard: np.ndarray | bytes, expected: bytes, tolerance: float = 0.02) -> int:
    """Where `expected` starts in `heard` (-1: not there). With `tolerance` > 0, a stretch
    differing in at most that fraction of codes counts."""
    hay = bytes(heard)
    if not expected or len(hay) < len(expected):
        return -1
    at = hay.find(expected)
    if at >= 0 or tolerance <= 0:
        return at
    n = len(expected)
    want = np.frombuffer(expected, dtype=np.uint8)
    got = np.frombuffer(hay, dtype=np.uint8)
    tried: set[int] = set()
    for k in range(ANCHORS):
        off = (n - ANCHOR) * k // max(1, ANCHORS - 1)
        anchor = expected[off:off + ANCHOR]
        pos = hay.find(anchor)
        while pos >= 0:
            start = pos - off
            if start not in tried and 0 <= start <= len(hay) - n:
                tried.add(start)
                if np.count_nonzero(got[start:start + n] != want) <= tolerance * n:
                    return start
            pos = hay.find(anchor, pos + 1)
    return -1
