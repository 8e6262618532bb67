"""One PRI span's settings: which side we are, the switch type, and the call handling
choices (overlap receiving, channel selection, timers), all in milliseconds here and
turned into ticks by the span.

`PriConfig.from_span(span_cfg, tick_ms)` reads a `drivers.config.SpanConfig`: its
signaling (pri_cpe / pri_net), switchtype and options (`pcap`, and any PriConfig field
name the span's options carry). Defaults follow Chinese carrier practice: EuroISDN E1,
A-law, en-bloc or overlap receiving as the network sends it.
"""
from __future__ import annotations

import dataclasses

from drivers.native import libpri

NODES = {"pri_cpe": "cpe", "pri_net": "network"}
CHANNEL_MODES = ("preferred", "exclusive")
HUNT_ORDERS = ("ascending", "descending")
# Switch types whose Q.931 carries SERVICE messages (B-channel maintenance); on the
# others (EuroISDN among them) maintenance is done with RESTART.
SERVICE_SWITCHES = frozenset({"ni2", "dms100", "lucent5e", "att4ess"})


@dataclasses.dataclass(frozen=True)
class PriConfig:
    node: str = "cpe"                       # cpe | network
    switchtype: str = "euroisdn_e1"
    tick_ms: int = 20
    sample_rate: int = 8000
    # Outgoing calls: the channel the dial command names is asked for as preferred (the
    # far end may give another) or exclusive. Empty: exclusive on the network side,
    # preferred on the CPE side (as Q.931 usage and most switches have it).
    channel_mode: str = ""
    # Which free channel an incoming call for "any channel" gets, and which one an
    # outgoing call gets when the command does not name one: the network side hunts
    # from the bottom and the CPE from the top, so that the two rarely collide.
    hunt: str = ""
    # Overlap receiving: a SETUP without Sending Complete is answered with SETUP
    # ACKNOWLEDGE and digits are collected from INFORMATION messages until Sending
    # Complete, `dnis_digits` digits, or `interdigit_ms` without one. Off: every SETUP
    # is taken as complete (en bloc).
    overlap_receiving: bool = True
    interdigit_ms: int = 3000
    dnis_digits: int = 0                    # 0: no fixed length
    # Overlap sending: dial(overlap=true) sends the number's first digits in SETUP and
    # the rest with send_digits (INFORMATION).
    overlap_sending: bool = True
    # An offered call is answered with CALL PROCEEDING, then ALERTING at once (the far
    # end's T310 is only 10 s), unless alert_on_offer is off.
    alert_on_offer: bool = True
    # A channel that stays in a clearing state this long (the far end never completes
    # the release), or in a RESTART without acknowledgement this long, is restarted.
    stuck_clearing_ms: int = 30000
    restart_ack_ms: int = 10000
    restart_attempts: int = 3               # then the channel stays out of service
    # After the span recovers (alarm cleared, D-channel up again) every channel is
    # restarted (RESTART, one at a time) before it takes calls again.
    restart_on_recovery: bool = True
    # At start-up the D-channel has this long to come up before the channels are
    # reported out of service.
    dchannel_grace_ms: int = 5000
    # Return to service after an outage: after base_ms, doubled for each outage that
    # came within stable_ms of the previous recovery, at most cap_ms, plus a jitter of
    # up to jitter (fraction of the delay) fixed by the span number.
    recovery_base_ms: int = 2000
    recovery_cap_ms: int = 60000
    recovery_stable_ms: int = 60000
    recovery_jitter: float = 0.25
    # Channels: echo cancelling while connected.
    echo_cancel: bool = True
    law: str = "alaw"
    pcap: str = ""

    def __post_init__(self):
        problems = []
        if self.node not in libpri.NODE_TYPES:
            problems.append(f"node must be cpe or network, not {self.node!r}")
        if self.switchtype not in libpri.SWITCH_TYPES:
            problems.append(f"switchtype must be one of {', '.join(libpri.SWITCH_TYPES)}, "
                            f"not {self.switchtype!r}")
        if self.channel_mode not in CHANNEL_MODES + ("",):
            problems.append(f"channel_mode must be preferred or exclusive, not "
                            f"{self.channel_mode!r}")
        if self.hunt not in HUNT_ORDERS + ("",):
            problems.append(f"hunt must be ascending or descending, not {self.hunt!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("int", int):
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    problems.append(f"{f.name} must be a whole number >= 0, not {value!r}")
            elif f.type in ("bool", bool) and not isinstance(value, bool):
                problems.append(f"{f.name} must be true or false, not {value!r}")
        if isinstance(self.tick_ms, int) and self.tick_ms <= 0:
            problems.append("tick_ms must be positive")
        if not isinstance(self.recovery_jitter, (int, float)) or \
                not 0 <= self.recovery_jitter <= 1:
            problems.append(f"recovery_jitter must be 0..1, not {self.recovery_jitter!r}")
        if isinstance(self.restart_attempts, int) and self.restart_attempts < 1:
            problems.append("restart_attempts must be at least 1")
        if problems:
            raise ValueError("PRI span settings: " + "; ".join(problems))

    @property
    def network(self) -> bool:
        return self.node == "network"

    @property
    def exclusive_default(self) -> bool:
        mode = self.channel_mode or ("exclusive" if self.network else "preferred")
        return mode == "exclusive"

    @property
    def hunt_descending(self) -> bool:
        return (self.hunt or ("ascending" if self.network else "descending")) == "descending"

    @property
    def service_messages(self) -> bool:
        return self.switchtype in SERVICE_SWITCHES

    @classmethod
    def from_span(cls, span, tick_ms: int = 20, law: str = "alaw") -> "PriConfig":
        """Settings for a drivers.config.SpanConfig with signaling pri_cpe or pri_net."""
        if span.signaling not in NODES:
            raise ValueError(f"span {span.span}: signaling {span.signaling!r} is not PRI "
                             f"(pri_cpe or pri_net)")
        names = {f.name for f in dataclasses.fields(cls)}
        extra = {k: v for k, v in (span.options or {}).items() if k in names}
        return cls(node=NODES[span.signaling], switchtype=span.switchtype or "euroisdn_e1",
                   tick_ms=tick_ms, law=law, **extra)
