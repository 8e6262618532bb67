"""Analog line signaling: FXS (our port feeds a phone) and FXO (our port is on a CO line).

Pure state machines: no sockets, no clock. cardd feeds them hardware events, media-engine
events, commands and tick numbers, and carries out the actions they return.
"""
from drivers.signaling.analog.config import AnalogConfig, SignalingError
from drivers.signaling.analog.fxo import FxoLine, FxoState
from drivers.signaling.analog.fxs import FxsLine, FxsState

__all__ = ["AnalogConfig", "SignalingError", "FxsLine", "FxsState", "FxoLine", "FxoState"]
