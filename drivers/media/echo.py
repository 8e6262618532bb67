"""Line echo cancelling for the rows that need it (analog ports), through SpanDSP.

One SpanDSP echo canceller per enabled row (`drivers.native.spandsp.EchoCanceller`, which
runs a whole block in one C call). The reference is what this engine sent on the row in
the *previous* tick: the audio received in tick t left the far end before our tick-t
block was even computed, so aligning rx of tick t with tx of tick t-1 keeps the echo path
causal; the card's buffering and the hybrid's response fall inside the canceller's tail
(`taps`, 128 = 16 ms beyond that one block by default).

SpanDSP's non-linear processor is off by default: measured here (speech, 8-tap echo path
at -10 dB), the adaptive filter alone takes the echo down by 35-40 dB and passes near-end
speech during double talk intact, while with the NLP on the near-end talker lost ~9 dB and
most of its waveform in double talk.

Per tick this is a Python loop over the enabled rows only (one C call each).
"""
from __future__ import annotations

import numpy as np

from drivers.native.spandsp import EchoCanceller, SpanDspError

DEFAULT_TAPS = 128


class EchoBank:
    def __init__(self, rows: int, block: int = 160, taps: int = DEFAULT_TAPS, nlp: bool = False):
        self.rows, self.block = rows, block
        self.taps, self.nlp = taps, nlp
        self._ec: dict[int, EchoCanceller] = {}
        self._rows: np.ndarray | None = np.zeros(0, dtype=np.intp)
        self.reference = np.zeros((rows, block), dtype=np.int16)  # last tx, linear

    @property
    def active(self) -> bool:
        return bool(self._ec)

    @property
    def enabled_rows(self) -> np.ndarray:
        if self._rows is None:
            self._rows = np.array(sorted(self._ec), dtype=np.intp)
        return self._rows

    def enable(self, row: int, taps: int | None = None) -> None:
        """Start cancelling on `row` (a fresh canceller: it learns the path again)."""
        try:
            ec = EchoCanceller(taps or self.taps, adaption=True, nlp=self.nlp)
        except SpanDspError as e:
            raise ValueError(f"row {row}: {e}") from None
        old = self._ec.pop(row, None)
        if old is not None:
            old.close()
        self._ec[row] = ec
        self.reference[row] = 0
        self._rows = None

    def disable(self, row: int) -> None:
        ec = self._ec.pop(row, None)
        if ec is not None:
            ec.close()
            self._rows = None

    def enabled(self, row: int) -> bool:
        return row in self._ec

    def process(self, pcm: np.ndarray) -> None:
        """Remove the echo from the enabled rows of `pcm` (int16 rows x block), in place."""
        ref = self.reference
        for row, ec in self._ec.items():
            line = pcm[row]
            ec.process(ref[row], line, out=line)

    def sent(self, tx_pcm_rows: np.ndarray) -> None:
        """Record this tick's transmitted audio (linear, rows in `enabled_rows` order)."""
        self.reference[self.enabled_rows] = tx_pcm_rows

    def close(self) -> None:
        for ec in self._ec.values():
            ec.close()
        self._ec.clear()
        self._rows = None
