"""IVR load: 120 callers in the IVR at once, every key press handled.

cardd and ctid run as processes on four simulated PRI spans (120 B-channels, the IvrStack of
the functional tests); every B-channel gets a 170 bill-query caller within the same tick.
Each caller has an account of its own (phone number and PIN added to the demo database),
hears the welcome prompt (matched byte for byte), keys its phone number and PIN, hears the
menu after the balance and asks for an operator. Checked per call: it was queued with the
right attached data, ctid's IVR trail shows its keys in order (none lost, none repeated, no
wrong-PIN detour), cardd's Digit events on its channel are exactly the keys pressed. Overall:
all 120 were in the IVR at once, each on its own IVR port, and cardd's and ctid's event
sequence numbers have no gap.

With -s it prints wall time, calls per second through the IVR and the CPU time of ctid,
cardd and the test's process (from /proc)."""
import hashlib
import json
import os
import sqlite3
import time

import pytest

from tests.e2e.ivr_stack import IvrStack

WELCOME_170 = "欢迎使用话费查询服务。"
AFTER_BALANCE = "重听请按1，人工服务请按0，结束请按9。"
SPANS = 4
PER_SPAN = 30
CALLERS = SPANS * PER_SPAN
LIMIT_S = 120             # wall seconds allowed for the calls (about 20 s on an idle 2-core machine)


def account(i: int) -> tuple[str, str, str]:
    """Caller i's calling number, the mobile number it asks about, and that account's PIN."""
    return f"1330000{i:04d}", f"1590000{i:04d}", f"{(i * 7919 + 104729) % 1_000_000:06d}"


def add_accounts(db_path: str) -> None:
    with sqlite3.connect(db_path) as db:
        db.executemany("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?, ?)",
                       [(phone, hashlib.sha256(pin.encode()).hexdigest(), 10 + i, "2026-12-15")
                        for i, (_, phone, pin) in ((i, account(i)) for i in range(CALLERS))])


def b_channels(cfg) -> list[int]:
    chans = sorted(c.channel for c in cfg.channels)
    assert len(chans) == CALLERS, f"etc/cardd-pri4.toml has {len(chans)} B-channels, not {CALLERS}"
    return chans


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (0.0 where there is no /proc)."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def in_ivr(events) -> tuple[int, int]:
    """Calls in the IVR after `events` (CTI, in order), and the most there were at once."""
    now = peak = 0
    for e in events:
        if e.device.startswith("ivr:") and e.name in ("Established", "ConnectionCleared"):
            now += 1 if e.name == "Established" else -1
            peak = max(peak, now)
    return now, peak


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("ivr-load"))
    s = IvrStack(d, os.path.join(d, "tts-cache"))
    add_accounts(f"{d}/run/ivr-demo.db")
    try:
        s.start()
        yield s
    finally:
        s.close()


def test_120_callers_in_the_ivr_at_once_every_key_handled(stack):
    from simulators.carddclient import CarddClient
    cardd = CarddClient(f"ipc://{stack.d}/run/cardd-events.sock",
                        f"ipc://{stack.d}/run/cardd-commands.sock")
    cardd_events = []
    try:
        stack.run_until(cardd.subscribed, 30, "subscribed to cardd's events")
        stack.clock.run(max_ticks=10)        # the subscription reaches cardd's PUB
        cardd_events += cardd.poll_events()

        pids = {name: child.pid for name, child in stack.procs.children.items()}
        cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
        wall0, own0, tick0 = time.monotonic(), time.process_time(), stack.world.tick
        calls = {}
        for i, channel in enumerate(b_channels(stack.cfg)):     # all within one tick
            ani, phone, pin = account(i)
            keys = f"{phone}#{pin}#"
            calls[ani] = (channel, phone, keys + "0", stack.call(channel, "170", ani, [
                ("hear", WELCOME_170), ("keys", keys), ("hear", AFTER_BALANCE),
                ("keys", "0")]))

        def all_queued():
            cardd_events.extend(cardd.poll_events())
            return all(c.done for _, _, _, c in calls.values()) and all(
                stack.events_for(ani, "Queued") for ani in calls)
        try:
            stack.run_until(all_queued, LIMIT_S, f"{CALLERS} callers queued")
        except AssertionError as e:
            stuck = [f"{ani} on channel {c.channel} at step {c.step}/{len(c.script)}"
                     for ani, (_, _, _, c) in calls.items()
                     if not (c.done and stack.events_for(ani, "Queued"))]
            raise AssertionError(f"{len(stuck)} callers not queued: " + "; ".join(stuck[:10])
                                 + f"\n{e}") from None
        wall = time.monotonic() - wall0
        own = time.process_time() - own0
        sim = (stack.world.tick - tick0) * stack.world.tick_s
        cpu = {name: cpu_seconds(pid) - cpu0[name] for name, pid in pids.items()}
        stack.run_until(lambda: in_ivr(stack.events)[0] == 0, 30, "every caller left the IVR")
        cardd_events += cardd.poll_events()
    finally:
        cardd.close()

    print(f"\nIVR load: {CALLERS} callers at once, 170 bill query to an operator: wall {wall:.1f} s "
          f"for {sim:.1f} s simulated ({sim / wall:.2f}x real time), "
          f"{CALLERS / wall:.2f} calls/s through the IVR; CPU: ctid {cpu['ctid']:.1f} s "
          f"({cpu['ctid'] / CALLERS * 1000:.0f} ms per call), cardd {cpu['cardd']:.1f} s, "
          f"test process (exchanges, callers) {own:.1f} s")

    # all 120 were in the IVR together, each on a port of its own
    now, peak = in_ivr(stack.events)
    assert peak == CALLERS, f"at most {peak} callers were in the IVR at once"
    ports = {e.device for e in stack.events if e.name == "Established"
             and e.device.startswith("ivr:")}
    assert len(ports) == CALLERS

    # every caller queued once, with its own data and a trail of every key in order
    for ani, (channel, phone, keys, _) in calls.items():
        (e,) = stack.events_for(ani, "Queued")
        assert e.device == "queue:bill170", (ani, e.device)
        assert (e.data["ivr_flow"], e.data["service"], e.data["phone"]) == \
            ("bill170", "bill", phone), (ani, dict(e.data))
        steps = json.loads(e.data["ivr_trail_json"])
        keyed = [(s["node"], s["keys"]) for s in steps if s["keys"]]
        assert keyed == [("ask_phone", phone), ("ask_pin", "******"), ("after_balance", "0")], \
            (ani, e.data["ivr_trail"])
        assert [s["node"] for s in steps] == [
            "welcome", "ask_phone", "ask_pin", "fetch", "check", "say_balance",
            "after_balance", "to_operator"], (ani, e.data["ivr_trail"])

    # cardd: gap-free sequence numbers, and each channel's digits exactly the keys pressed
    seqs = [ev.seq for ev in cardd_events]
    assert seqs and seqs == list(range(seqs[0], seqs[0] + len(seqs))), "gap in cardd's events"
    digits = {}
    for ev in cardd_events:
        if ev.WhichOneof("kind") == "digit":
            digits[ev.channel] = digits.get(ev.channel, "") + ev.digit.digit
    for ani, (channel, _, keys, _) in calls.items():
        assert digits.get(channel, "") == keys, (ani, channel, digits.get(channel))

    # ctid: gap-free sequence numbers on the CTI events the test received
    cti = [e.seq for e in stack.events]
    assert cti == list(range(cti[0], cti[0] + len(cti))), "gap in ctid's CTI events"
