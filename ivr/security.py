"""PIN checks with lockout: after N failures in a row the account, the calling number, or
both are locked for a while (or until an administrator unlocks them). Every check,
refusal and unlock is written to the audit sink; the PIN itself never is.

`PinGuard` is shared by all IVR sessions of a ctid and is a plain object: time is passed
in, the audit sink is a callable (ctid hands rows to its storage queue).
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Callable, Iterable

LOCK_KEYS = ("account", "caller")


class PinPolicyError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class PinPolicy:
    max_failures: int = 3               # failures in a row that lock
    lock_s: float | None = 1800.0       # lock duration; None = until unlocked by hand
    lock_on: tuple[str, ...] = ("account", "caller")

    def __post_init__(self):
        if not isinstance(self.max_failures, int) or self.max_failures < 1:
            raise PinPolicyError(f"max_failures must be a whole number >= 1, got {self.max_failures!r}")
        if self.lock_s is not None and not self.lock_s > 0:
            raise PinPolicyError(f"lock_s must be > 0 or None, got {self.lock_s!r}")
        bad = [k for k in self.lock_on if k not in LOCK_KEYS]
        if bad or not self.lock_on:
            raise PinPolicyError(f"lock_on takes {' and/or '.join(LOCK_KEYS)}, got {self.lock_on!r}")


@dataclasses.dataclass(frozen=True)
class PinVerdict:
    result: str                         # "ok", "failed", "locked"
    failures: int                       # failures in a row (after this check)
    remaining: int                      # failures left before a lock
    locked_key: str = ""                # "account:..." or "caller:..." when locked
    locked_until: float | None = None


@dataclasses.dataclass
class _Counter:
    failures: int = 0
    locked_at: float | None = None


def pin_matches(entered: str, expected: str, scheme: str = "none") -> bool:
    """Constant-time comparison; scheme sha256 compares the hex digest of the entry."""
    if not expected:
        return False                    # unknown account: a failure, told apart from nothing
    if scheme == "sha256":
        entered = hashlib.sha256(entered.encode()).hexdigest()
        expected = expected.lower()
    return hmac.compare_digest(entered.encode(), expected.encode())


class PinGuard:
    def __init__(self, policy: PinPolicy | None = None,
                 audit: Callable[[dict], None] | None = None):
        self.policy = policy or PinPolicy()
        self.audit_log: list[dict] = []
        self._audit = audit or self.audit_log.append
        self._counters: dict[str, _Counter] = {}

    def _keys(self, account: str, caller: str) -> list[str]:
        keys = []
        if "account" in self.policy.lock_on and account:
            keys.append(f"account:{account}")
        if "caller" in self.policy.lock_on and caller:
            keys.append(f"caller:{caller}")
        return keys

    def _locked(self, key: str, now: float) -> float | None:
        """The time the lock on `key` ends (inf for a lock by hand), or None."""
        c = self._counters.get(key)
        if c is None or c.locked_at is None:
            return None
        if self.policy.lock_s is None:
            return float("inf")
        until = c.locked_at + self.policy.lock_s
        if now >= until:                # lock over: start counting afresh
            c.locked_at, c.failures = None, 0
            return None
        return until

    def locked(self, account: str, caller: str, now: float) -> str:
        for key in self._keys(account, caller):
            if self._locked(key, now) is not None:
                return key
        return ""

    def check(self, account: str, caller: str, ok: bool, now: float, *,
              call_id: str = "", flow: str = "") -> PinVerdict:
        """Record one PIN attempt. A locked account or caller is refused without looking at
        the PIN (`ok` is ignored), so guessing on during a lock gains nothing."""
        keys = self._keys(account, caller)
        row = {"time": now, "call_id": call_id, "flow": flow, "account": account,
               "caller": caller}
        for key in keys:
            until = self._locked(key, now)
            if until is not None:
                v = PinVerdict("locked", self._counters[key].failures, 0, key,
                               None if until == float("inf") else until)
                self._audit({**row, "result": "refused_locked", "failures": v.failures,
                             "locked_key": key, "locked_until": v.locked_until})
                return v
        if ok:
            for key in keys:
                self._counters.pop(key, None)
            self._audit({**row, "result": "ok", "failures": 0, "locked_key": "",
                         "locked_until": None})
            return PinVerdict("ok", 0, self.policy.max_failures)
        failures, locked_key = 0, ""
        for key in keys:
            c = self._counters.setdefault(key, _Counter())
            c.failures += 1
            failures = max(failures, c.failures)
            if c.failures >= self.policy.max_failures and not locked_key:
                locked_key = key
        if locked_key:
            for key in keys:                  # lock every key the policy names
                self._counters[key].locked_at = now
            until = None if self.policy.lock_s is None else now + self.policy.lock_s
            self._audit({**row, "result": "locked", "failures": failures,
                         "locked_key": locked_key, "locked_until": until})
            return PinVerdict("locked", failures, 0, locked_key, until)
        self._audit({**row, "result": "failed", "failures": failures, "locked_key": "",
                     "locked_until": None})
        return PinVerdict("failed", failures, self.policy.max_failures - failures)

    def unlock(self, key: str, now: float, by: str) -> bool:
        """Lift a lock ('account:NUMBER' or 'caller:NUMBER'); audited with who did it."""
        kind = key.partition(":")[0]
        if kind not in LOCK_KEYS:
            raise PinPolicyError(f"lock key must be account:NUMBER or caller:NUMBER, got {key!r}")
        had = self._counters.pop(key, None) is not None
        self._audit({"time": now, "call_id": "", "flow": "", "account": "", "caller": "",
                     "result": "unlocked", "failures": 0, "locked_key": key,
                     "locked_until": None, "by": by})
        return had

    def locks(self, now: float) -> list[str]:
        return sorted(k for k in list(self._counters) if self._locked(k, now) is not None)


def storage_audit_row(row: dict) -> dict:
    """A PIN audit row in the shape of ctid's audit table (time, client, role, request,
    allowed, reason), for `Store.submit_audit`."""
    return {"time": row["time"], "client": f"caller:{row.get('caller', '')}", "role": "ivr",
            "request": f"pin account={row.get('account', '')} call={row.get('call_id', '')}",
            "allowed": row["result"] in ("ok", "unlocked"),
            "reason": row["result"] + (f" ({row['locked_key']})" if row.get("locked_key") else "")}


def guard_from_config(cfg: dict | None) -> PinPolicy:
    """PinPolicy from a config table {max_failures, lock_minutes (0 = until unlocked), lock_on}."""
    cfg = dict(cfg or {})
    unknown = set(cfg) - {"max_failures", "lock_minutes", "lock_on"}
    if unknown:
        raise PinPolicyError(f"unknown PIN setting {sorted(unknown)[0]!r} "
                             f"(expected max_failures, lock_minutes, lock_on)")
    minutes = cfg.get("lock_minutes", 30)
    lock_on: Iterable[str] = cfg.get("lock_on", ("account", "caller"))
    if isinstance(lock_on, str):
        lock_on = (lock_on,)
    return PinPolicy(max_failures=cfg.get("max_failures", 3),
                     lock_s=None if minutes == 0 else float(minutes) * 60.0,
                     lock_on=tuple(lock_on))
