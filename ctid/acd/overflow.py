"""Overflow rules: when a call leaves its queue for somewhere else.

- ``wait``: the call has waited ``threshold`` seconds in this queue (checked by timer).
- ``length``: on entry, ``threshold`` or more entries (callers and callback places)
  are already waiting and no agent is free: the new call goes at once.

Targets: another queue (the call keeps its arrival time, so its seniority and priority
head start carry over; wait timers restart in the new queue), voicemail, a callback
(the call becomes a virtual entry holding its place in this queue), or hangup.
``max_wait_s`` on the queue is the last word: the call leaves for ``max_wait_target``.
"""
from __future__ import annotations

import dataclasses

from .actions import AcdError, Target

MAX_HOPS = 4        # overflow chains longer than this stop (loops in configuration)


@dataclasses.dataclass(frozen=True)
class OverflowRule:
    when: str           # "wait" or "length"
    threshold: float    # seconds (wait) or entries (length)
    target: Target

    def __post_init__(self):
        if self.when not in ("wait", "length"):
            raise AcdError(f"overflow rule: 'when' must be 'wait' or 'length', got {self.when!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, (int, float)) \
                or self.threshold < 0:
            raise AcdError(f"overflow rule: threshold must be a number >= 0, got {self.threshold!r}")
        if self.when == "length" and self.threshold < 1:
            raise AcdError("overflow rule: a length threshold must be at least 1")
        object.__setattr__(self, "target", Target.parse(self.target))

    @classmethod
    def parse(cls, spec) -> "OverflowRule":
        """From a rule, a dict {when, threshold, target} or text 'wait>=120:queue:sales'."""
        if isinstance(spec, OverflowRule):
            return spec
        if isinstance(spec, dict):
            unknown = set(spec) - {"when", "threshold", "target"}
            if unknown:
                raise AcdError(f"overflow rule: unknown keys {sorted(unknown)}")
            try:
                return cls(spec["when"], spec["threshold"], spec["target"])
            except KeyError as e:
                raise AcdError(f"overflow rule: missing {e.args[0]!r}") from None
        if isinstance(spec, str) and ">=" in spec and ":" in spec:
            cond, _, target = spec.partition(":")
            when, _, value = cond.partition(">=")
            try:
                threshold = float(value)
            except ValueError:
                raise AcdError(f"overflow rule {spec!r}: threshold is not a number") from None
            return cls(when.strip(), threshold, target)
        raise AcdError(f"overflow rule must be a dict or 'wait>=SECONDS:target' / "
                       f"'length>=N:target', got {spec!r}")
