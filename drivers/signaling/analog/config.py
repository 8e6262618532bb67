"""Per-channel analog line settings, and the error a line raises when it refuses a command.

Every timing is in milliseconds here and turned into ticks by the lines (rounded up, so a
timer never fires early). Defaults follow Chinese practice (1 s on / 4 s off ring, FSK
caller ID between the first and second ring).
"""
from __future__ import annotations

import dataclasses

CALLERID_MODES = ("fsk", "dtmf", "none")
DTMF_DIGITS = frozenset("0123456789*#ABCD")


class SignalingError(Exception):
    """A command the line cannot carry out in its current state (cardd replies with the text)."""


@dataclasses.dataclass(frozen=True)
class AnalogConfig:
    # The audio clock: one tick per block (160 samples at 8 kHz = 20 ms).
    tick_ms: int = 20
    sample_rate: int = 8000             # turns the DTMF detector's sample counts into ms

    # --- FXS: a phone on our port --------------------------------------------------------
    # Off-hook with no digit for this long: congestion tone, call cleared (cause 28).
    first_digit_timeout_ms: int = 10000
    # While the line itself collects digits (no application command yet), a pause this
    # long after a digit: congestion tone, call cleared (cause 28). Once the application
    # has acted on the call (any media command or answer), digits keep flowing as events
    # and no digit timer runs.
    interdigit_timeout_ms: int = 4000
    # Ring cadence as on/off pairs in ms; (400, 200, 400, 2000) would be a double ring.
    ring_cadence_ms: tuple[int, ...] = (1000, 4000)
    # Ringing this long without answer: ring stopped, call cleared (cause 19).
    max_ring_ms: int = 60000
    # Caller ID to the phone: "fsk" (spill after the first ring), "dtmf" (digits before
    # the first ring), "none". On FXO the same setting says what to expect from the CO.
    callerid: str = "fsk"
    # FSK spill starts this long after the first ring (the first cadence cycle's last
    # "on" segment) ends. Must leave room for the spill before the next ring.
    callerid_delay_ms: int = 500
    # DTMF caller ID framing sent to a phone (ETSI EN 300 659-1 style: A<number>C) and
    # the pause between its last digit and the first ring. (FXO reception understands
    # every common framing: drivers.media.fsk.parse_dtmf_callerid.)
    callerid_dtmf_start: str = "A"
    callerid_dtmf_end: str = "C"
    callerid_dtmf_gap_ms: int = 500
    # Tone played to an off-hook phone once its call is cleared by the other side or the
    # application, and the tone for a dialling timeout (both until the phone hangs up).
    clear_tone: str = "busy"
    timeout_tone: str = "congestion"
    # Hook-flash window. DAHDI already turns a short on-hook into WINKFLASH, so these
    # only document the expected timing (and are checked for sense).
    flash_min_ms: int = 50
    flash_max_ms: int = 750

    # --- FXO: our port on a CO line --------------------------------------------------------
    # No ring edge for this long while a call is being offered: the caller gave up.
    ring_timeout_ms: int = 6000
    # Ring-on reports closer together than this with no ring-off between are one ring
    # (DAHDI reports RINGBEGIN and then RINGOFFHOOK for the same ring).
    ring_debounce_ms: int = 2000
    # DTMF caller ID digits heard while idle count only if the first ring follows
    # within this window.
    callerid_dtmf_window_ms: int = 5000
    # Outbound: wait this long for dial tone after seizing the line, then dial anyway.
    dialtone_wait_ms: int = 1000
    # How long the media engine takes to send one DTMF digit (tone + pause); used to
    # know when dialling is over if no PlayDone arrives first.
    dtmf_on_ms: int = 100
    dtmf_off_ms: int = 100
    # Disconnect supervision on a connected call: busy/congestion tone from the CO,
    # battery polarity reversal, loss of loop current (HwEvent.ONHOOK on an FXO port).
    busy_detect: bool = True
    polarity_disconnect: bool = True
    loop_disconnect: bool = True
    # Outbound: a polarity reversal while waiting means the far end answered.
    answer_on_polarity: bool = False

    # --- both -------------------------------------------------------------------------------
    # Echo canceller on while a call is connected (and off again when it ends, so each
    # call converges afresh).
    echo_cancel: bool = True

    def __post_init__(self):
        problems = []
        ints = [f.name for f in dataclasses.fields(self) if f.type in ("int", int)]
        for name in ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be a whole number of ms, not {value!r}")
            elif value < 0 or (value == 0 and name in ("tick_ms", "sample_rate", "dtmf_on_ms")):
                problems.append(f"{name} must be positive, not {value!r}")
        for name in ("busy_detect", "polarity_disconnect", "loop_disconnect",
                     "answer_on_polarity", "echo_cancel"):
            if not isinstance(getattr(self, name), bool):
                problems.append(f"{name} must be true or false, not {getattr(self, name)!r}")
        if self.callerid not in CALLERID_MODES:
            problems.append(f"callerid must be one of {', '.join(CALLERID_MODES)}, "
                            f"not {self.callerid!r}")
        for name in ("callerid_dtmf_start", "callerid_dtmf_end"):
            value = getattr(self, name)
            if not (isinstance(value, str) and len(value) == 1 and value in "ABCD"):
                problems.append(f"{name} must be one of the DTMF letters A-D, not {value!r}")
        for name in ("clear_tone", "timeout_tone"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                problems.append(f"{name} must name a tone of the tone plan")
        cadence = self.ring_cadence_ms
        if isinstance(cadence, list):
            cadence = tuple(cadence)
            object.__setattr__(self, "ring_cadence_ms", cadence)
        if (not isinstance(cadence, tuple) or not cadence or len(cadence) % 2
                or any(isinstance(x, bool) or not isinstance(x, int) or x <= 0 for x in cadence)):
            problems.append(f"ring_cadence_ms must be on/off pairs of positive ms, "
                            f"not {self.ring_cadence_ms!r}")
        elif (self.callerid == "fsk" and isinstance(self.callerid_delay_ms, int)
              and self.callerid_delay_ms >= cadence[-1]):
            problems.append(f"callerid_delay_ms ({self.callerid_delay_ms}) must be shorter than "
                            f"the silence after the first ring ({cadence[-1]} ms)")
        if (isinstance(self.flash_min_ms, int) and isinstance(self.flash_max_ms, int)
                and self.flash_min_ms >= self.flash_max_ms):
            problems.append(f"flash_min_ms ({self.flash_min_ms}) must be below "
                            f"flash_max_ms ({self.flash_max_ms})")
        if problems:
            raise ValueError("analog line settings: " + "; ".join(problems))
