"""SpanDSP binding: DTMF, caller ID, echo cancelling, fax back to back, tones, TIFF pages."""
from __future__ import annotations

import datetime
import logging
import time

import numpy as np
import pytest

from drivers.native import spandsp as S

FS = 8000
BLOCK = 160


def blocks(pcm: np.ndarray, size: int = BLOCK):
    for i in range(0, len(pcm), size):
        yield pcm[i:i + size]


def db(a: np.ndarray, b: np.ndarray) -> float:
    """Power of a over power of b, in dB."""
    pa = np.mean(a.astype(float) ** 2)
    pb = np.mean(b.astype(float) ** 2) + 1e-9
    return 10 * np.log10(pa / pb)


def speechlike(rng: np.random.Generator, n: int, rms: float) -> np.ndarray:
    """Band-limited noise with a syllable-rate envelope: a stand-in for speech."""
    x = np.convolve(rng.standard_normal(n), np.ones(4) / 4, mode="same")
    x *= 0.5 + 0.5 * np.sin(2 * np.pi * 3 * np.arange(n) / FS) ** 2
    return x / np.std(x) * rms


# ---- DTMF -------------------------------------------------------------------------------
def test_dtmf_generated_digits_are_received_in_160_sample_blocks():
    tx = S.DtmfTx()
    tx.put("0123456789*#ABCD")
    audio = np.concatenate([tx.generate(BLOCK) for _ in range(250)])
    rx = S.DtmfRx()
    assert "".join(rx.rx(b) for b in blocks(audio)) == "0123456789*#ABCD"
    # Silence and a 450 Hz dial tone are not digits.
    tone = (8000 * np.sin(2 * np.pi * 450 * np.arange(FS) / FS)).astype(np.int16)
    assert "".join(rx.rx(b) for b in blocks(tone)) == ""


def test_dtmf_rx_takes_views_and_rejects_wrong_types():
    tx = S.DtmfTx(on_ms=60, off_ms=60)
    tx.put("95")
    audio = np.concatenate([tx.generate(BLOCK) for _ in range(20)])
    stereo = np.repeat(audio, 2)                 # every other sample: a strided view
    rx = S.DtmfRx()
    assert "".join(rx.rx(b) for b in blocks(stereo[::2])) == "95"
    with pytest.raises(S.SpanDspError, match="int16"):
        rx.rx(audio.astype(np.float32))
    with pytest.raises(S.SpanDspError, match="DTMF digits"):
        tx.put("12x")


# ---- caller ID --------------------------------------------------------------------------
def run_adsi(rx: S.AdsiRx, audio: np.ndarray) -> list[S.CallerIdMessage]:
    line = np.concatenate([np.zeros(800, np.int16), audio, np.zeros(4000, np.int16)])
    out: list[S.CallerIdMessage] = []
    for b in blocks(line):
        out += rx.rx(b)
    return out


def test_callerid_class_mdmf_round_trip():
    tx = S.AdsiTx(S.ADSI_CLASS)
    audio = tx.callerid_audio("13800138000", "ZHANG SAN", datetime.datetime(2024, 5, 21, 9, 30))
    # ~0.5 s of Bell 202 FSK at about -13 dBm0, not clipped.
    assert 0.3 * FS < len(audio) < 1.0 * FS
    assert 2000 < np.abs(audio).max() < 10000
    [msg] = run_adsi(S.AdsiRx(S.ADSI_CLASS), audio)
    assert (msg.number, msg.name, msg.when) == ("13800138000", "ZHANG SAN", "05210930")
    assert msg.message_type == S.MDMF_CALLERID


@pytest.mark.parametrize("standard", ["clip", "clip_dtmf", "jclip"])
def test_callerid_other_standards_round_trip(standard):
    tx = S.AdsiTx(standard)
    [msg] = run_adsi(S.AdsiRx(standard), tx.callerid_audio("02161234567"))
    assert msg.number == "02161234567"


def test_callerid_private_number_and_corrupted_spill():
    tx = S.AdsiTx(S.ADSI_CLASS)
    [msg] = run_adsi(S.AdsiRx(S.ADSI_CLASS), tx.callerid_audio(None, absent="P"))
    assert msg.number is None and msg.absence == "P"
    # A spill with its end cut off fails the checksum: nothing is reported.
    audio = S.AdsiTx(S.ADSI_CLASS).callerid_audio("13800138000", "ZHANG SAN")
    assert run_adsi(S.AdsiRx(S.ADSI_CLASS), audio[:len(audio) - 300]) == []
    with pytest.raises(S.SpanDspError, match="digits"):
        tx.callerid_message("138-0013")
    with pytest.raises(S.SpanDspError, match="standard"):
        S.AdsiTx("bellcore")


# ---- echo canceller ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def echo_scene():
    """Far-end speech, its echo through a hybrid (about 8 dB return loss, 5 ms delay,
    a few reflections), and separate near-end speech."""
    rng = np.random.default_rng(7)
    far = speechlike(rng, 4 * FS, 3000)
    path = np.zeros(200)
    path[[40, 41, 47, 90]] = [0.35, -0.2, 0.1, -0.05]
    echo = np.convolve(far, path)[:len(far)]
    near = speechlike(rng, 2 * FS, 1500)
    return far.astype(np.int16), echo.round().astype(np.int16), near.astype(np.int16)


def cancel(ec: S.EchoCanceller, tx: np.ndarray, rx: np.ndarray) -> np.ndarray:
    return np.concatenate([ec.process(t, r) for t, r in zip(blocks(tx), blocks(rx))])


def test_echo_canceller_removes_more_than_20_db_after_convergence(echo_scene):
    far, echo, _ = echo_scene
    ec = S.EchoCanceller(256, adaption=True, nlp=False)
    out = cancel(ec, far, echo)
    converged = slice(3 * FS, 4 * FS)
    erle = db(echo[converged], out[converged])
    print(f"\necho canceller (no NLP): {erle:.1f} dB echo return loss enhancement")
    assert erle > 20.0
    # Without adaption there is no cancellation at all.
    frozen = cancel(S.EchoCanceller(256, adaption=False, nlp=False), far, echo)
    assert abs(db(echo[converged], frozen[converged])) < 1.0


def test_echo_canceller_nlp_mutes_echo_but_not_the_near_end(echo_scene):
    far, echo, near = echo_scene
    ec = S.EchoCanceller(256)
    out = cancel(ec, far, echo)
    assert db(echo[3 * FS:], out[3 * FS:]) > 40.0
    assert ec.suppressing
    # Far end silent, near end talking: passed unchanged.
    alone = cancel(ec, np.zeros_like(near), near)
    assert abs(db(near, alone)) < 0.5
    # Both talking: the near end still comes through, the echo stays well below it.
    both_rx = (echo[:2 * FS].astype(np.int32) + near).clip(-32768, 32767).astype(np.int16)
    both = cancel(ec, far[:2 * FS], both_rx)
    gain = np.dot(both.astype(float), near) / np.dot(near.astype(float), near)
    assert gain > 0.8
    assert db(near, both - gain * near) > 8.0


def test_spandsp_writes_nothing_on_stdout(capfd, echo_scene):
    """Debian's SpanDSP build prints debug lines for every echo-cancelled sample: the
    binding links it so that they are dropped."""
    far, echo, _ = echo_scene
    cancel(S.EchoCanceller(128), far[:FS], echo[:FS])
    captured = capfd.readouterr()
    assert captured.out == ""


def test_echo_canceller_argument_errors():
    with pytest.raises(S.SpanDspError, match="power of two"):
        S.EchoCanceller(300)
    ec = S.EchoCanceller(64)
    with pytest.raises(S.SpanDspError, match="samples"):
        ec.process(np.zeros(160, np.int16), np.zeros(80, np.int16))


# ---- fax --------------------------------------------------------------------------------
def fax_page() -> np.ndarray:
    """One A4 page at 204x98 dpi: bars, rules and a block of speckle (hard to compress)."""
    page = np.zeros((1100, 1728), bool)
    page[80:160, 100:1600] = True
    page[::37, :] = True
    page[:, 864:868] = True
    rng = np.random.default_rng(3)
    page[500:700, 200:700] = rng.random((200, 500)) < 0.08
    return page


@pytest.mark.parametrize("ecm", [True, False])
def test_fax_one_page_back_to_back(tmp_path, ecm, caplog, capfd):
    page = fax_page()
    sent = tmp_path / "out.tif"
    got = tmp_path / "in.tif"
    S.write_fax_tiff(sent, [page], 204, 98)
    caplog.set_level(logging.DEBUG, logger="drivers.native.spandsp")
    caller = S.FaxSession(True, sent, receive=False, ident="+86 10 12345678", ecm=ecm,
                          trace="span1/1")
    answerer = S.FaxSession(False, got, receive=True, ident="+86 21 87654321", ecm=ecm)
    cpu = time.process_time()
    blocks_run = 0
    while not (caller.done and answerer.done) and blocks_run < 60 * FS // BLOCK:
        a = caller.tx(BLOCK)
        b = answerer.tx(BLOCK)
        answerer.rx(a)
        caller.rx(b)
        blocks_run += 1
    cpu = time.process_time() - cpu
    # The traced side's T.30 exchange goes to the log only, nothing to the terminal.
    assert capfd.readouterr() == ("", "")
    line_s = blocks_run * BLOCK / FS
    print(f"\nfax back to back (ECM {ecm}): {line_s:.1f} s of line time, "
          f"{cpu * 1000:.0f} ms CPU for both ends")
    sender, receiver = caller.result, answerer.result
    assert sender is not None and receiver is not None, "fax call did not finish"
    assert sender.ok and receiver.ok, (sender, receiver)
    assert (sender.pages_tx, receiver.pages_rx) == (1, 1)
    assert sender.remote_ident == "+86 21 87654321"
    assert receiver.remote_ident == "+86 10 12345678"
    assert sender.bit_rate == 14400 and sender.ecm == ecm      # V.17
    [received] = S.read_fax_tiff(got)
    assert (received.x_dpi, received.y_dpi) == (204.0, 98.0)
    assert received.bitmap.shape == page.shape
    assert np.array_equal(received.bitmap, page)
    trace = [r.getMessage() for r in caplog.records if "span1/1" in r.getMessage()]
    assert any("DIS" in line for line in trace) and any("MCF" in line for line in trace)


def test_fax_session_errors(tmp_path):
    with pytest.raises(S.SpanDspError, match="no TIFF file"):
        S.FaxSession(True, tmp_path / "missing.tif", receive=False)
    with pytest.raises(S.SpanDspError, match="modem"):
        S.FaxSession(False, tmp_path / "in.tif", receive=True, modems=["v34"])


def test_fax_session_without_a_peer_ends_with_a_failure(tmp_path):
    S.write_fax_tiff(tmp_path / "out.tif", [fax_page()[:200]])
    fax = S.FaxSession(True, tmp_path / "out.tif", receive=False)
    silence = np.zeros(BLOCK, np.int16)
    for _ in range(3 * FS // BLOCK):
        fax.tx(BLOCK)
        fax.rx(silence)
    assert not fax.done
    fax.terminate()           # the line went away
    assert fax.done and not fax.result.ok and fax.result.pages_tx == 0


# ---- TIFF pages -------------------------------------------------------------------------
def test_tiff_pages_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(5)
    pages = [rng.random((50, 1728)) < 0.3, rng.random((70, 1728)) < 0.01]
    S.write_fax_tiff(tmp_path / "two.tif", pages, 204, 196, group4=True)
    back = S.read_fax_tiff(tmp_path / "two.tif")
    assert [p.bitmap.shape for p in back] == [(50, 1728), (70, 1728)]
    assert all(np.array_equal(a, b.bitmap) for a, b in zip(pages, back))
    assert back[1].y_dpi == 196.0
    with pytest.raises(S.SpanDspError, match="missing.tif.*No such file"):
        S.read_fax_tiff(tmp_path / "missing.tif")
    with pytest.raises(S.SpanDspError, match="same width"):
        S.write_fax_tiff(tmp_path / "bad.tif", [pages[0], pages[0][:, :800]])


# ---- supervisory tones ------------------------------------------------------------------
def test_supervisory_tone_detector_finds_the_china_busy_cadence():
    t = np.arange(int(0.35 * FS)) / FS
    on = (6000 * np.sin(2 * np.pi * 450 * t)).astype(np.int16)
    busy = np.tile(np.concatenate([on, np.zeros_like(on)]), 5)
    rx = S.SuperToneRx([[(450, 0, 300, 400), (0, 0, 300, 400)],   # busy
                        [(450, 0, 1000, 0)]])                       # dial tone
    reports = [r for b in blocks(busy) for r in rx.rx(b)]
    assert [r.tone for r in reports] == [0]
    # When the cadence stops, the end of the tone is reported.
    assert [r.tone for b in blocks(np.zeros(2 * FS, np.int16)) for r in rx.rx(b)] == [None]
    fresh = S.SuperToneRx([[(450, 0, 300, 400), (0, 0, 300, 400)]])
    assert [r for b in blocks(np.zeros(2 * FS, np.int16)) for r in fresh.rx(b)] == []
