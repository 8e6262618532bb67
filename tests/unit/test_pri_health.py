"""Span health (drivers.signaling.span_health): alarms, the link, backoff, stuck channels."""
import pytest

from drivers.signaling import span_health as H

RED_LOS = H.alarm_bits("red,los")


def started(span=1, **kw) -> H.SpanHealth:
    h = H.SpanHealth(span, **kw)
    assert h.tick(0) == []
    assert h.link(True, 1) == [H.Up("D-channel up", 0)]
    return h


def run_until_up(h: H.SpanHealth, start: int, limit: int = 100000) -> int:
    for t in range(start, start + limit):
        for change in h.tick(t):
            if isinstance(change, H.Up):
                return t
    raise AssertionError(f"no Up within {limit} ticks; state {h.state}")


def test_alarm_names_and_bits():
    assert H.alarm_names(RED_LOS) == ["red", "los"]
    assert H.alarm_bits("rai") == H.alarm_bits("yellow") == 4
    assert H.alarm_bits(["ais", "lof"]) == 16 | 512
    with pytest.raises(ValueError, match="unknown span alarm 'smoke'"):
        H.alarm_bits("smoke")


def test_alarm_takes_the_span_down_and_it_returns_after_the_backoff():
    h = started()
    down = h.alarm(RED_LOS, 100)
    assert down == [H.Down("span alarm red+los", alarm=True)] and not h.in_service
    assert h.alarm(RED_LOS | 4, 120) == []               # more bits: still the same outage
    assert h.alarm(0, 200) == [] and h.state == H.Health.RECOVERING
    delay = 100 + round(100 * H.span_jitter(1) * 0.25)   # 2 s base at 20 ms ticks
    assert h.backoff_ticks() == delay
    assert run_until_up(h, 201) == 200 + delay
    assert h.in_service


def test_flapping_span_backs_off_doubling_up_to_the_cap():
    h = started(base_ms=1000, cap_ms=8000, stable_ms=60000, jitter=0.0)
    t = 10
    waits = []
    for _ in range(6):
        h.alarm(8, t)
        h.alarm(0, t + 5)
        up = run_until_up(h, t + 6)
        waits.append(up - (t + 5))
        t = up + 10                                       # fails again soon after
    assert waits == [50, 100, 200, 400, 400, 400]
    # A long quiet spell resets the count.
    h.alarm(8, t + 60000 // 20 + 100)
    h.alarm(0, t + 60000 // 20 + 105)
    assert run_until_up(h, t + 60000 // 20 + 106) - (t + 60000 // 20 + 105) == 50


def test_jitter_is_fixed_by_the_span_number_and_spreads_spans():
    delays = [H.SpanHealth(span).backoff_ticks() for span in range(1, 9)]
    assert delays == [H.SpanHealth(span).backoff_ticks() for span in range(1, 9)]
    assert len(set(delays)) >= 6 and all(100 <= d <= 125 for d in delays)


def test_link_drop_while_recovering_does_not_restart_the_delay():
    h = started(jitter=0.0)
    h.alarm(8, 100)
    h.alarm(0, 200)
    assert h.link(False, 230) == [] and h.link(True, 231) == []
    assert run_until_up(h, 232) == 300
    # Delay over with the link down: up as soon as the link is.
    h.alarm(8, 400)
    h.link(False, 401)
    h.alarm(0, 500)
    assert h.tick(700) == [] and h.state == H.Health.AWAIT_LINK
    assert h.link(True, 750) == [H.Up("recovered after 5 s", 250)]


def test_link_loss_and_startup_grace():
    h = H.SpanHealth(3, grace_ms=1000)
    h.tick(0)
    assert h.tick(49) == []
    assert h.tick(50) == [H.Down("D-channel not established", alarm=False)]
    assert h.link(True, 60) == [] and h.state == H.Health.RECOVERING
    up = run_until_up(h, 61)
    assert h.link(False, up + 5) == [H.Down("D-channel down", alarm=False)]
    assert h.outages == 1


def test_counters_report_increases_only():
    h = started()
    assert h.counts({"slips": 0, "crc4_errors": 0}, 1) == []
    (c,) = h.counts({"slips": 2, "crc4_errors": 5}, 2)
    assert c.increases == {"slips": 2, "crc4_errors": 5} and c.totals["slips"] == 2
    assert h.counts({"slips": 2, "crc4_errors": 5}, 3) == []
    assert h.counts({"slips": 3}, 4)[0].increases == {"slips": 1}


def test_stuck_channels():
    s = H.StuckChannels()
    s.watch(5, 100, 50, "clearing")
    s.watch(6, 100, 80, "restarting")
    s.watch(7, 100, 10, "clearing")
    s.clear(7)
    assert s.due(149) == []
    assert s.due(150) == [(5, "clearing")]
    assert s.due(1000) == [(6, "restarting")] and s.resets == 2
