"""Bridges and conferences: who hears whom, exact sums, gain, and no wrap-around."""
import numpy as np
import pytest

from drivers.media import g711
from drivers.media.engine import MediaEngine, MediaError
from drivers.media.mixer import MAX_PARTIES, Limiter, Mixer, MixerError, soft_limit

BLOCK = 160


def voices(rows: int) -> np.ndarray:
    """Row r says a small integer pattern (1..7, periodic) times r+1: sums stay exact."""
    ramp = np.arange(1, BLOCK + 1, dtype=np.int16) % 7 + 1
    return np.stack([(r + 1) * ramp for r in range(rows)]).astype(np.int16)


def mixed(m: Mixer, pcm: np.ndarray) -> np.ndarray:
    out = np.zeros(pcm.shape, dtype=np.float32)
    m.mix(pcm, out)
    return out


def test_bridge_each_row_hears_the_other_only():
    m = Mixer(6, BLOCK)
    m.bridge(1, 4)
    pcm = voices(6)
    out = mixed(m, pcm)
    assert np.array_equal(out[1], pcm[4])
    assert np.array_equal(out[4], pcm[1])
    for r in (0, 2, 3, 5):
        assert not out[r].any()


def test_bridge_through_the_engine_is_bit_exact_both_ways():
    eng = MediaEngine(4, BLOCK)
    eng.bridge(0, 3)
    rng = np.random.default_rng(3)
    for _ in range(5):
        rx = rng.integers(0, 256, size=(4, BLOCK), dtype=np.uint8)
        tx, _ = eng.tick(rx)
        assert np.array_equal(tx[0], rx[3])
        assert np.array_equal(tx[3], rx[0])
        assert (tx[1] == g711.ALAW_SILENCE).all()
    eng.unbridge(3)
    tx, _ = eng.tick(rx)
    assert (tx == g711.ALAW_SILENCE).all()


def test_conference_talkers_hear_the_exact_sum_of_all_others():
    m = Mixer(12, BLOCK)
    talkers = [0, 2, 3, 7, 11]
    for r in talkers:
        m.join("sales", r)
    pcm = voices(12)
    out = mixed(m, pcm)
    total = pcm[talkers].astype(np.int64).sum(axis=0)
    for r in talkers:
        assert np.array_equal(out[r], (total - pcm[r]).astype(np.float32)), r
    for r in set(range(12)) - set(talkers):
        assert not out[r].any()


def test_several_conferences_at_once_do_not_leak():
    m = Mixer(10, BLOCK)
    for r in (0, 1, 2):
        m.join("a", r)
    for r in (5, 6):
        m.join("b", r)
    m.bridge(8, 9)
    pcm = voices(10)
    out = mixed(m, pcm)
    assert np.array_equal(out[0], pcm[1] + pcm[2])
    assert np.array_equal(out[5], pcm[6].astype(np.float32))
    assert np.array_equal(out[6], pcm[5].astype(np.float32))
    assert np.array_equal(out[8], pcm[9])


def test_listen_only_member_hears_everyone_and_is_heard_by_nobody():
    m = Mixer(5, BLOCK)
    for r in (0, 1, 2):
        m.join("c", r)
    m.join("c", 3, mode="listen")
    pcm = voices(5)
    out = mixed(m, pcm)
    assert np.array_equal(out[3], pcm[0] + pcm[1] + pcm[2])
    assert np.array_equal(out[0], pcm[1] + pcm[2])          # row 3 not in it
    assert np.array_equal(out[1], pcm[0] + pcm[2])


def test_whisper_heard_only_by_the_agent_not_by_the_caller():
    m = Mixer(5, BLOCK)
    caller, agent, supervisor, monitor = 0, 1, 2, 3
    m.join("call", caller)
    m.join("call", agent)
    m.join("call", monitor, mode="listen")
    m.join("call", supervisor, mode="whisper", whisper_to=agent)
    pcm = voices(5)
    out = mixed(m, pcm)
    assert np.array_equal(out[agent], pcm[caller] + pcm[supervisor])
    assert np.array_equal(out[caller], pcm[agent].astype(np.float32))
    assert np.array_equal(out[monitor], pcm[caller] + pcm[agent])
    assert np.array_equal(out[supervisor], pcm[caller] + pcm[agent])


def test_gain_scales_the_members_voice_as_others_hear_it():
    m = Mixer(3, BLOCK)
    m.join("g", 0, gain_db=-6.0)
    m.join("g", 1)
    m.join("g", 2, mode="listen")
    pcm = voices(3) * 100
    out = mixed(m, pcm)
    g = 10 ** (-6 / 20)
    np.testing.assert_allclose(out[1], pcm[0] * g, rtol=1e-5)
    np.testing.assert_allclose(out[2], pcm[0] * g + pcm[1], rtol=1e-5)
    np.testing.assert_allclose(out[0], pcm[1], rtol=1e-6)      # own gain: not on what it hears


def test_loud_conference_is_limited_not_wrapped_nor_clipped():
    """Three talkers near full scale in phase: the sum is ~2.7x full scale. The listener
    hears the sum's waveform made quieter: same sign and shape, no wrap-around (which
    flips the sign) and no flat tops (hard clipping would hold ~75% of samples at the
    top code)."""
    eng = MediaEngine(4, BLOCK)
    for r in (0, 1, 2):
        eng.conf_join("loud", r)
    eng.conf_join("loud", 3, mode="listen")
    ticks = 10
    t = np.arange(BLOCK * ticks)
    wave = (30000 * np.sin(2 * np.pi * 300 * t / 8000)).astype(np.int16)
    heard = []
    for k in range(ticks):
        rx = np.full((4, BLOCK), g711.ALAW_SILENCE, dtype=np.uint8)
        rx[:3] = g711.encode("alaw", wave[k * BLOCK:(k + 1) * BLOCK])
        tx, _ = eng.tick(rx)
        heard.append(g711.decode("alaw", tx[3]).astype(np.float64))
    heard = np.concatenate(heard)
    want = 3.0 * g711.decode("alaw", g711.encode("alaw", wave))
    loud = np.abs(want) > 2000
    assert np.all(np.sign(heard[loud]) == np.sign(want[loud]))
    assert np.abs(heard).max() <= 32767
    steady = heard[BLOCK:]
    assert 20000 < np.abs(steady).max() <= 29000           # limited to the ceiling
    at_top = np.mean(np.abs(steady) >= np.abs(steady).max() - 1)
    assert at_top < 0.3
    corr = np.corrcoef(steady, want[BLOCK:])[0, 1]
    assert corr > 0.995                                      # the shape is kept


def test_limiter_leaves_quiet_sums_exact_and_recovers_after_a_loud_burst():
    lim = Limiter(2, BLOCK)
    rows = np.array([0, 1])
    quiet = np.tile(np.arange(BLOCK, dtype=np.float32) * 10, (2, 1))
    assert np.array_equal(lim.process(quiet.copy(), rows), quiet)
    lim.process(quiet.copy() * 20, rows)                    # peak 31,800: gain drops
    assert lim.gain[0] < 0.9
    for _ in range(100):                                     # 2 s of quiet audio
        y = lim.process(quiet.copy(), rows)
    assert lim.gain[0] == 1.0 and np.array_equal(y, quiet)


def test_soft_limiter_is_identity_below_knee_and_bounded_above():
    x = np.array([[-20000.0, 0.0, 123.0, 27999.0, 28001.0, 60000.0, -1e6]], dtype=np.float32)
    y = soft_limit(x.copy())
    assert np.array_equal(y[0, :4], x[0, :4])
    assert 28000 < y[0, 4] < 28002
    assert 28001 < y[0, 5] <= 32767
    assert -32767 <= y[0, 6] < -32000


def test_joining_moves_a_row_and_bridging_leaves_the_conference():
    m = Mixer(4, BLOCK)
    m.join("x", 0)
    m.join("x", 1)
    m.join("y", 0)                      # moves from x to y
    assert [mm.row for mm in m.members("x")] == [1]
    m.bridge(0, 2)
    assert m.members("y") == [] and "y" not in m.conferences()
    assert m.partner(2) == 0
    m.join("x", 2)                      # leaves the bridge: row 0 goes silent
    assert m.partner(0) is None


def test_bad_requests_are_refused_with_the_reason():
    m = Mixer(70, BLOCK)
    with pytest.raises(MixerError, match="itself"):
        m.bridge(3, 3)
    with pytest.raises(MixerError, match="out of range"):
        m.bridge(0, 70)
    with pytest.raises(MixerError, match="unknown conference mode"):
        m.join("c", 1, mode="shout")
    with pytest.raises(MixerError, match="whisper_to"):
        m.join("c", 1, mode="whisper")
    with pytest.raises(MixerError, match="not a member"):
        m.join("c", 1, mode="whisper", whisper_to=2)
    with pytest.raises(MixerError, match="gain_db"):
        m.join("c", 1, gain_db=float("nan"))
    for r in range(MAX_PARTIES):
        m.join("big", r)
    with pytest.raises(MixerError, match="full"):
        m.join("big", MAX_PARTIES)
    eng = MediaEngine(2, BLOCK)
    with pytest.raises(MediaError, match="row 5 is out of range"):
        eng.conf_join("c", 5)


def test_sixty_party_conference_sum_is_exact():
    m = Mixer(MAX_PARTIES, BLOCK)
    for r in range(MAX_PARTIES):
        m.join("all", r)
    pcm = voices(MAX_PARTIES)
    out = mixed(m, pcm)
    total = pcm.astype(np.int64).sum(axis=0)
    assert np.array_equal(out, (total[None, :] - pcm).astype(np.float32))
