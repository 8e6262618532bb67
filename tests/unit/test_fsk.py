"""Caller ID: messages, FSK modulation, the FSK receiver, and DTMF caller ID."""
import datetime

import numpy as np
import pytest

from drivers.media import g711
from drivers.media.dtmf import detect_digits
from drivers.media.fsk import (
    CallerId, CallerIdError, CallerIdReceiver, MARK_BITS, SEIZURE_BITS, callerid_bits,
    callerid_dtmf, callerid_fsk, callerid_message, checksum, decode_callerid, frame_bytes,
    fsk_modulate, parse_dtmf_callerid,
)
from drivers.media.levels import dbm0_to_rms, rms_to_dbm0
from drivers.native import spandsp

RATE = 8000
BLOCK = 160


def receive(x, standard="bell202", rows=3, row=1, lead=800):
    """Feed `x` to a receiver on `row` in blocks, with silence before and after."""
    x = np.concatenate([np.zeros(lead), np.asarray(x, dtype=np.float64), np.zeros(1600)])
    x = np.concatenate([x, np.zeros((-len(x)) % BLOCK)])
    rx = CallerIdReceiver(rows, standard)
    rx.enable(row)
    out = []
    for i in range(0, len(x), BLOCK):
        block = np.zeros((rows, BLOCK))
        block[row] = x[i:i + BLOCK]
        out += rx.process(block)
    return out


def impair(x, snr_db, level_dbm0, seed):
    """White noise at `snr_db` below the signal, then through the A-law codec."""
    rng = np.random.default_rng(seed)
    y = x + rng.normal(0, dbm0_to_rms(level_dbm0 - snr_db), len(x))
    return g711.alaw_decode(g711.alaw_encode(np.clip(np.round(y), -32768, 32767)))


# ---- messages -------------------------------------------------------------------------------
def test_sdmf_matches_the_bellcore_example():
    msg = callerid_message("6095551212", when="09301224", fmt="sdmf")
    assert msg.hex(" ") == "04 12 30 39 33 30 31 32 32 34 36 30 39 35 35 35 31 32 31 32 51"
    assert sum(msg) % 256 == 0


def test_mdmf_parameters():
    when = datetime.datetime(2024, 3, 7, 9, 5)
    msg = callerid_message("13800138000", "WANG WU", when)
    body = bytes([0x01, 8]) + b"03070905" + bytes([0x02, 11]) + b"13800138000" + bytes([0x07, 7]) + b"WANG WU"
    assert msg == bytes([0x80, len(body)]) + body + bytes([checksum(bytes([0x80, len(body)]) + body)])
    # a withheld number is sent as its reason for absence
    assert callerid_message(None, absence="P") == bytes([0x80, 3, 0x04, 1, ord("P"), (-(0x80 + 3 + 4 + 1 + 80)) & 0xFF])
    assert callerid_message("", when="12312359", fmt="sdmf")[2:-1] == b"12312359O"


@pytest.mark.parametrize("kwargs, match", [
    (dict(number="138-0013"), "'-'"),
    (dict(number="1" * 21), "longer than 20"),
    (dict(number="110", name="ZHANG\x07"), "control character"),
    (dict(number="110", name="张" * 26), "longer than 50 bytes"),
    (dict(number="110", fmt="sdmf"), "needs a date/time"),
    (dict(number="110", name="A", when="01010000", fmt="sdmf"), "no name field"),
    (dict(number="110", when="13010000"), "MMDDHHMM"),
    (dict(number="110", fmt="xdmf"), "'mdmf' or 'sdmf'"),
    (dict(number=None, absence="X"), "reason for absence"),
])
def test_bad_caller_id_data_is_refused(kwargs, match):
    with pytest.raises(CallerIdError, match=match):
        callerid_message(**kwargs)


def test_bad_standard_and_level_are_refused():
    with pytest.raises(CallerIdError, match="bell202"):
        callerid_fsk("110", standard="v21")
    with pytest.raises(CallerIdError, match="level"):
        callerid_fsk("110", level_dbm0=10)


# ---- modulation -----------------------------------------------------------------------------
def tone_power(x, f):
    n = np.arange(len(x))
    return abs(np.sum(x * np.exp(-2j * np.pi * f * n / RATE))) ** 2


@pytest.mark.parametrize("standard, mark, space", [("bell202", 1200, 2200), ("v23", 1300, 2100)])
def test_spill_layout_and_frequencies(standard, mark, space):
    msg = callerid_message("13812345678", "LI", "11231530")
    bits = callerid_bits(msg)
    assert bits[:8] == [1, 0, 1, 0, 1, 0, 1, 0] and len(set(bits[:SEIZURE_BITS])) == 2
    assert bits[SEIZURE_BITS:SEIZURE_BITS + MARK_BITS] == [1] * MARK_BITS
    framed = bits[SEIZURE_BITS + MARK_BITS:SEIZURE_BITS + MARK_BITS + 10 * len(msg)]
    assert framed == frame_bytes(msg)
    assert framed[:10] == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]          # 0x80: start, LSB first, stop
    x = callerid_fsk("13812345678", "LI", "11231530", standard=standard).astype(np.float64)
    assert len(x) == int(np.ceil(len(bits) * RATE / 1200))
    # the mark section is the mark tone alone; the seizure holds both tones
    s0 = int(SEIZURE_BITS * RATE / 1200) + 40
    marks = x[s0:s0 + 800]
    assert tone_power(marks, mark) > 100 * tone_power(marks, space)
    spectrum = np.abs(np.fft.rfft(x[:1600])) ** 2
    freqs = np.fft.rfftfreq(1600, 1 / RATE)
    centroid = np.sum(freqs * spectrum) / np.sum(spectrum)
    assert abs(centroid - (mark + space) / 2) < 100          # alternating: both tones, evenly
    # level: -13 dBm0 by default, phase-continuous (no jump larger than one step of a sine)
    assert abs(rms_to_dbm0(np.sqrt(np.mean(x ** 2))) - (-13.0)) < 0.1
    peak = dbm0_to_rms(-13.0) * np.sqrt(2)
    assert np.max(np.abs(np.diff(x))) <= peak * 2 * np.sin(np.pi * space / RATE) + 2


# ---- reception ------------------------------------------------------------------------------
@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("fmt", ["sdmf", "mdmf"])
def test_round_trip(standard, fmt):
    name = None if fmt == "sdmf" else "ZHANG SAN"
    x = callerid_fsk("13812345678", name, "11231530", standard=standard, fmt=fmt)
    assert receive(x, standard) == [CallerId(1, "13812345678", name, "11231530", True)]


@pytest.mark.parametrize("standard", ["bell202", "v23"])
@pytest.mark.parametrize("fmt", ["sdmf", "mdmf"])
def test_round_trip_through_a_poor_line(standard, fmt):
    """S/N 20 dB, levels from -8 to -32 dBm0, +-10 Hz offset, A-law, any block alignment."""
    rng = np.random.default_rng(11)
    name = None if fmt == "sdmf" else "LI SI"
    for trial, (level, shift) in enumerate([(-8, 10), (-20, -10), (-30, 10), (-32, -10), (-26, 0)]):
        number = "0" + str(rng.integers(10 ** 9, 10 ** 10))
        msg = callerid_message(number, name, "02291845", fmt)
        x = fsk_modulate(callerid_bits(msg), standard, level, shift_hz=shift).astype(np.float64)
        got = receive(impair(x, 20, level, trial), standard, lead=int(rng.integers(0, 1000)))
        assert got == [CallerId(1, number, name, "02291845", True)], (level, shift)


def test_withheld_number():
    got = receive(callerid_fsk(None, when="01010101", absence="P"))
    assert got == [CallerId(1, None, None, "01010101", True, "P")]
    got = receive(callerid_fsk("", when="01010101", fmt="sdmf", absence="O"))
    assert got == [CallerId(1, None, None, "01010101", True, "O")]


def test_checksum_error_is_reported_invalid():
    msg = bytearray(callerid_message("13812345678", "WANG", "11231530"))
    msg[-1] ^= 0x01                                   # wrong checksum
    x = fsk_modulate(callerid_bits(bytes(msg)))
    got = receive(x)
    assert len(got) == 1 and not got[0].valid
    msg = bytearray(callerid_message("13812345678", "WANG", "11231530"))
    msg[12] ^= 0x04                                   # a digit changed in transit
    got = receive(fsk_modulate(callerid_bits(bytes(msg))))
    assert len(got) == 1 and not got[0].valid


def test_spill_cut_short_is_invalid():
    x = callerid_fsk("13812345678", "WANG", "11231530")
    got = receive(x[:len(x) - 400])                  # the last ~60 bits never arrive
    assert len(got) == 1 and not got[0].valid


def test_two_spills_on_two_rows_at_once():
    rows = 6
    rx = CallerIdReceiver(rows, "bell202")
    spills = {2: callerid_fsk("110", "POLICE", "05050505"), 4: callerid_fsk("02085557777", None, "05050506")}
    for r in (0, 2, 4):
        rx.enable(r)
    n = max(len(s) for s in spills.values()) + 2000
    n += (-n) % BLOCK
    pcm = np.zeros((rows, n))
    for r, s in spills.items():
        pcm[r, 300:300 + len(s)] = s
    pcm[5, 300:300 + len(spills[2])] = spills[2]      # not enabled: ignored
    got = []
    for i in range(0, n, BLOCK):
        got += rx.process(pcm[:, i:i + BLOCK])
    assert sorted(got, key=lambda c: c.row) == [CallerId(2, "110", "POLICE", "05050505", True),
                                                CallerId(4, "02085557777", None, "05050506", True)]
    assert rx.enabled.tolist() == [True, False, True, False, True, False]


def test_nothing_from_noise_speechlike_tones_or_dtmf():
    rng = np.random.default_rng(3)
    noise = rng.normal(0, dbm0_to_rms(-20), 4 * RATE)
    n = np.arange(2 * RATE)
    warble = dbm0_to_rms(-15) * np.sqrt(2) * np.sin(2 * np.pi * (1700 + 500 * np.sin(2 * np.pi * 3 * n / RATE)) * n / RATE)
    from drivers.media.dtmf import dtmf_tone
    for x in (noise, warble, dtmf_tone("0123456789*#", 50, 50)):
        assert receive(x) == []


def test_decode_whole_recording_and_bad_shape():
    x = np.concatenate([callerid_fsk("123", when="01020304"), np.zeros(4000, np.int16),
                        callerid_fsk("456", when="01020305", standard="bell202")])
    assert [c.number for c in decode_callerid(x)] == ["123", "456"]
    with pytest.raises(ValueError, match=r"shape \(2, 160\)"):
        CallerIdReceiver(2).process(np.zeros((2, 80)))


# ---- DTMF caller ID -------------------------------------------------------------------------
def test_dtmf_caller_id_round_trip():
    x = callerid_dtmf("13812345678")
    digits = "".join(d.digit for d in detect_digits(x))
    assert digits == "A13812345678C"
    assert parse_dtmf_callerid(digits) == "13812345678"
    x = callerid_dtmf("02087654321", start="D", end="C", on_ms=60, off_ms=60)
    assert parse_dtmf_callerid("".join(d.digit for d in detect_digits(x))) == "02087654321"


@pytest.mark.parametrize("digits, number", [
    ("A13812345678C", "13812345678"),
    ("A02012345678#", "02012345678"),
    ("A1234D5678B10C", "1234"),
    ("D0755123456C", "0755123456"),               # Taiwan
    ("0755123456#", "0755123456"),                # no start code
    ("A12345", "12345"),                          # end code lost
    ("D1#", None), ("D2#", None), ("D3#", None),  # withheld, international, unavailable
    ("B00C", None), ("B10C", None),
    ("", None), ("C", None), ("A#", None), ("12345", None), ("*12#", None),
])
def test_parse_dtmf_caller_id(digits, number):
    assert parse_dtmf_callerid(digits) == number


def test_dtmf_caller_id_refuses_bad_numbers():
    with pytest.raises(CallerIdError, match="digits"):
        callerid_dtmf("12A4")
    with pytest.raises(CallerIdError, match="start"):
        callerid_dtmf("1234", start="*")


def test_chinese_name_in_gb18030():
    msg = callerid_message("13812345678", "张三", "11231530")
    assert "张三".encode("gb18030") in msg               # GB2312 double bytes
    got = receive(callerid_fsk("13812345678", "张三", "11231530"))
    assert got == [CallerId(1, "13812345678", "张三", "11231530", True)]


# ---- interoperability with SpanDSP's ADSI (CLASS = Bell 202, CLIP = V.23) -------------------
PAIRS = [("bell202", "ADSI_CLASS"), ("v23", "ADSI_CLIP")]


@pytest.mark.parametrize("standard, theirs", PAIRS)
@pytest.mark.parametrize("fmt", ["mdmf", "sdmf"])
def test_spandsp_decodes_our_spill(standard, theirs, fmt):
    name = None if fmt == "sdmf" else "张三 ZHANG"
    x = callerid_fsk("13812345678", name, "11231530", standard=standard, fmt=fmt, level_dbm0=-25)
    x = np.concatenate([np.zeros(800, np.int16), x, np.zeros(1600, np.int16)])
    rx = spandsp.AdsiRx(getattr(spandsp, theirs))
    got = []
    for i in range(0, len(x) - BLOCK + 1, BLOCK):
        got += rx.rx(x[i:i + BLOCK])
    assert [(m.number, m.name, m.when) for m in got] == [("13812345678", name, "11231530")]


@pytest.mark.parametrize("standard, theirs", PAIRS)
def test_we_decode_spandsp_spill(standard, theirs):
    tx = spandsp.AdsiTx(getattr(spandsp, theirs))
    x = tx.callerid_audio("02012345678", "李四", "12251830").astype(np.float64)
    got = receive(impair(x, 20, -13, 9), standard)
    assert got == [CallerId(1, "02012345678", "李四", "12251830", True)]
    tx = spandsp.AdsiTx(getattr(spandsp, theirs))
    got = receive(tx.callerid_audio(None, None, "12251830", absent="P"), standard)
    assert got == [CallerId(1, None, None, "12251830", True, "P")]
