"""Signal levels: dBm0 to linear amplitude on the 16-bit scale used throughout the engine.

G.711's digital milliwatt puts a 0 dBm0 sine 3.14 dB below the codec's overload point
(A-law); we use the same reference for mu-law (3.17 dB; the 0.03 dB difference is below
what any detector here resolves).
"""
from __future__ import annotations

import math

import numpy as np

FULL_SCALE = 32767.0
DBM0_PEAK = FULL_SCALE * 10 ** (-3.14 / 20)     # peak amplitude of a 0 dBm0 sine: ~22,756


def dbm0_to_peak(dbm0: float) -> float:
    """Peak amplitude of a sine at `dbm0`."""
    return DBM0_PEAK * 10 ** (dbm0 / 20)


def dbm0_to_rms(dbm0: float) -> float:
    return dbm0_to_peak(dbm0) / math.sqrt(2)


def rms_to_dbm0(rms: np.ndarray | float) -> np.ndarray | float:
    """Level in dBm0 of a signal with this RMS (floor at -120 dBm0)."""
    rms = np.maximum(np.asarray(rms, dtype=np.float64), 1e-9)
    return 20 * np.log10(rms / dbm0_to_rms(0.0))
