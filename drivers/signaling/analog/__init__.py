"""Analog line signaling: FXS (our port feeds a phone) and FXO (our port is on a CO line).

Pure state machines: no sockets, no clock. cardd feeds them hardware events, media-engine
events, commands and tick numbers, and carries out the actions they return.

Names are loaded on first use, so that `python -m drivers.signaling.analog.timers` (the
on_tick benchmark) runs its module only once.
"""
import importlib

_EXPORTS = {
    "AnalogConfig": "config", "SignalingError": "config",
    "FxsLine": "fxs", "FxsState": "fxs",
    "FxoLine": "fxo", "FxoState": "fxo",
}
__all__ = list(_EXPORTS)


def __getattr__(name):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
