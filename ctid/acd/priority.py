"""Caller priority: classes, how a call gets one, and ageing.

Priority classes are levels 0..MAX_LEVEL (higher is served first). A call gets the
highest level among the rules that apply to it:

- an explicit level (or class name) given by the IVR or the integration wins outright;
- VIP list: the caller's number is listed -> ``vip``;
- customer tier from the call data (``data["tier"]``, e.g. gold, silver);
- on care lines only (a queue with ``care_line=True`` or ``data["care_line"]`` true):
  elderly callers (``data["elderly"]`` true or ``data["age"] >= elderly_age``, 60 by
  default as in China) and repeat callers (the same number reached this queue within
  ``repeat_window_s``).

Ageing, so low priority never starves: a call of level L is filed as if it had arrived
``L * priority_step_s`` seconds earlier than it did (a head start). Its place is a
fixed sort key, so queues stay sorted lists; and a level-0 call can only be overtaken
by a level-L call that arrives less than ``L * priority_step_s`` after it. Put the
other way: every ``priority_step_s`` of waiting is worth one priority level against
newcomers. With ``priority_step_s=None`` the classes are strict (a higher class always
goes first) and starvation is possible; that is the operator's explicit choice.
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Optional

from .actions import AcdError

MAX_LEVEL = 9

DEFAULT_CLASSES = {"normal": 0, "repeat": 3, "silver": 2, "gold": 4, "platinum": 6,
                   "elderly": 5, "vip": 8, "emergency": 9}


@dataclasses.dataclass
class PriorityPolicy:
    classes: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_CLASSES))
    vip_numbers: frozenset = frozenset()
    tier_field: str = "tier"          # data key holding the customer tier (a class name)
    elderly_age: int = 60
    repeat_window_s: float = 24 * 3600.0

    def __post_init__(self):
        for name, level in self.classes.items():
            if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
                raise AcdError(f"priority class {name!r}: level must be an integer "
                               f"0..{MAX_LEVEL}, got {level!r}")
        self.vip_numbers = frozenset(self.vip_numbers)
        if self.repeat_window_s <= 0:
            raise AcdError("repeat_window_s must be positive")
        self._recent = RecentCallers(self.repeat_window_s)

    def level_of(self, value) -> int:
        """An explicit priority: an int level or a class name."""
        if isinstance(value, str):
            if value not in self.classes:
                raise AcdError(f"unknown priority class {value!r}; known: "
                               f"{', '.join(sorted(self.classes))}")
            return self.classes[value]
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_LEVEL:
            raise AcdError(f"priority must be a class name or an integer 0..{MAX_LEVEL}, got {value!r}")
        return value

    def classify(self, caller: str, data: Optional[dict], queue: str, care_line: bool,
                 explicit, now: float) -> tuple[int, str]:
        """(level, class name) for a new call; also remembers the caller for repeats."""
        repeat = False
        if caller:
            repeat = self._recent.seen(caller, queue, now)
        if explicit is not None:
            level = self.level_of(explicit)
            return level, explicit if isinstance(explicit, str) else "explicit"
        best, name = 0, "normal"
        cls = self.classes

        def consider(cname):
            nonlocal best, name
            lv = cls.get(cname)
            if lv is not None and lv > best:
                best, name = lv, cname

        if caller and caller in self.vip_numbers:
            consider("vip")
        if data:
            tier = data.get(self.tier_field)
            if isinstance(tier, str):
                consider(tier)
            care_line = care_line or bool(data.get("care_line"))
        if care_line:
            if data and (data.get("elderly") or _age(data) >= self.elderly_age):
                consider("elderly")
            if repeat:
                consider("repeat")
        return best, name


def _age(data: dict) -> int:
    age = data.get("age")
    return age if isinstance(age, int) and not isinstance(age, bool) else -1


class RecentCallers:
    """Who called which queue within the window (expiry in arrival order, O(1) amortized)."""

    def __init__(self, window_s: float):
        self.window_s = window_s
        self.last: dict[tuple[str, str], float] = {}
        self.order: collections.deque = collections.deque()

    def seen(self, caller: str, queue: str, now: float) -> bool:
        """True if (caller, queue) was seen within the window; then records this call."""
        horizon = now - self.window_s
        order, last = self.order, self.last
        while order and order[0][0] < horizon:
            t, key = order.popleft()
            if last.get(key) == t:
                del last[key]
        key = (caller, queue)
        prev = last.get(key)
        last[key] = now
        order.append((now, key))
        return prev is not None and prev >= horizon


def queue_key(level: int, arrived: float, step_s: Optional[float], boost_s: float,
              seq: int, call_id: str, front: bool = False) -> tuple:
    """The sort key of a waiting call: smaller is served first.

    ``front`` (tier 0) files calls returned after ring-no-answer ahead of everyone.
    """
    if step_s is None:
        return (0 if front else 1, -level, arrived - boost_s, seq, call_id)
    return (0 if front else 1, 0, arrived - level * step_s - boost_s, seq, call_id)
