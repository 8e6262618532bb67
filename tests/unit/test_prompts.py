"""Prompt files: conversion to 8 kHz law-coded audio, caching, refusals, and playback."""
import os
import time

import numpy as np
import pytest
import soundfile

from drivers.media import g711
from drivers.media.engine import MediaEngine, PlayDone
from drivers.media.levels import rms_to_dbm0
from drivers.media.prompts import PromptCache, PromptError, resample

BLOCK = 160


def tone(rate: int, seconds: float, freq: float, amp: float = 0.25) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def peak_hz(x: np.ndarray, rate: int = 8000) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(x.size)))
    return float(np.argmax(spec) * rate / x.size)


def level_db(x: np.ndarray) -> float:
    return float(rms_to_dbm0(np.sqrt(np.mean(np.asarray(x, dtype=np.float64) ** 2))))


@pytest.mark.parametrize("rate,channels,fmt,subtype", [
    (44100, 2, "WAV", "PCM_16"),
    (16000, 1, "FLAC", "PCM_16"),
    (48000, 1, "WAV", "PCM_24"),
    (22050, 2, "WAV", "PCM_U8"),
    (11025, 1, "WAV", "FLOAT"),
])
def test_files_convert_to_8k_keeping_length_frequency_and_level(tmp_path, rate, channels, fmt,
                                                                 subtype):
    x = tone(rate, 1.5, 1000.0)
    data = np.stack([x] * channels, axis=1) if channels > 1 else x
    path = tmp_path / f"p.{fmt.lower()}"
    soundfile.write(path, data, rate, format=fmt, subtype=subtype)
    codes = PromptCache("alaw").load(path)
    assert codes.dtype == np.uint8
    assert abs(codes.size - 1.5 * 8000) <= 1
    pcm = g711.decode("alaw", codes).astype(np.float64)
    mid = pcm[1000:-1000]
    assert abs(peak_hz(mid) - 1000.0) <= 2.0
    want = level_db(tone(8000, 1.0, 1000.0) * 32768)
    assert abs(level_db(mid) - want) < 0.3


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(44100, 1.0, 500.0, 0.4), tone(44100, 1.0, 1500.0, 0.4)
    path = tmp_path / "st.wav"
    soundfile.write(path, np.stack([left, right], axis=1), 44100)
    pcm = g711.decode("alaw", PromptCache("alaw").load(path)).astype(np.float64)[800:-800]
    spec = np.abs(np.fft.rfft(pcm))
    f = np.fft.rfftfreq(pcm.size, 1 / 8000)
    a500 = spec[np.argmin(abs(f - 500))]
    a1500 = spec[np.argmin(abs(f - 1500))]
    assert 0.9 < a500 / a1500 < 1.1                     # both channels, same weight


def test_resampler_removes_what_8k_cannot_carry():
    x = tone(44100, 1.0, 5000.0) * 32768                # would alias to 3000 Hz
    y = resample(x, 44100, 8000)[400:-400]
    assert level_db(y) < level_db(x) - 70


def test_mu_law_and_raw_telephony_files(tmp_path):
    pcm = (tone(8000, 0.5, 800.0) * 32768).astype(np.int16)
    (tmp_path / "a.ulaw").write_bytes(g711.encode("ulaw", pcm).tobytes())
    (tmp_path / "b.sln").write_bytes(pcm.astype("<i2").tobytes())
    cache = PromptCache("ulaw")
    assert np.array_equal(cache.load(tmp_path / "a.ulaw"), g711.encode("ulaw", pcm))
    assert np.array_equal(cache.load(tmp_path / "b.sln"), g711.encode("ulaw", pcm))


def test_cache_in_memory_and_on_disk_across_instances(tmp_path):
    path = tmp_path / "hello.wav"
    soundfile.write(path, tone(16000, 0.5, 700.0), 16000)
    cache_dir = tmp_path / "cache"
    first = PromptCache("alaw", cache_dir=str(cache_dir))
    a = first.load(path)
    assert first.load(path) is a                         # memory
    assert first.conversions == 1
    second = PromptCache("alaw", cache_dir=str(cache_dir))   # as another process would
    b = second.load(path)
    assert second.conversions == 0 and second.disk_hits == 1
    assert np.array_equal(a, b)
    # a changed file is converted again
    soundfile.write(path, tone(16000, 0.25, 700.0), 16000)
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    c = second.load(path)
    assert second.conversions == 1 and c.size == 2000


def test_bad_files_are_refused_naming_file_and_problem(tmp_path):
    cache = PromptCache("alaw")
    with pytest.raises(PromptError, match=r"nothere\.wav: file not found"):
        cache.load(tmp_path / "nothere.wav")
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all\n" * 20)
    with pytest.raises(PromptError, match=r"notes\.wav: not an audio file"):
        cache.load(text)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 8000)
    with pytest.raises(PromptError, match=r"empty\.wav: empty"):
        cache.load(empty)
    with pytest.raises(PromptError, match="is a directory"):
        cache.load(tmp_path)
    odd = tmp_path / "odd.sln"
    odd.write_bytes(b"\x01\x02\x03")
    with pytest.raises(PromptError, match=r"odd\.sln: odd length"):
        cache.load(odd)
    zero = tmp_path / "zero.alaw"
    zero.write_bytes(b"")
    with pytest.raises(PromptError, match="empty"):
        cache.load(zero)


def run_until(eng, row, ticks, rows=2):
    rx = np.full((rows, BLOCK), g711.ALAW_SILENCE, dtype=np.uint8)
    out, events = [], []
    for _ in range(ticks):
        tx, ev = eng.tick(rx)
        out.append(tx[row].copy())
        events += ev
    return g711.decode("alaw", np.concatenate(out)).astype(np.float64), events


def test_prompt_queue_plays_files_in_order_then_one_play_done(tmp_path):
    p1, p2 = tmp_path / "one.wav", tmp_path / "two.flac"
    soundfile.write(p1, tone(44100, 0.4, 500.0), 44100)
    soundfile.write(p2, tone(16000, 0.3, 1500.0), 16000, format="FLAC")
    eng = MediaEngine(2, BLOCK, load_prompts="inline")
    eng.play_prompts(1, [p1, p2], tag="menu")
    audio, events = run_until(eng, 1, 60)
    done = [e for e in events if isinstance(e, PlayDone)]
    assert done == [PlayDone(1, "menu", False, None, None)]
    first, second = audio[400:2800], audio[3600:5400]
    assert abs(peak_hz(first) - 500) < 5 and abs(peak_hz(second) - 1500) < 5
    # the first file ends at 0.4 s (3200 samples); the second follows within one block
    on = np.abs(audio) > 1000
    assert not on[6000:].any()
    active = np.flatnonzero(on)
    assert active[0] < 10 and 5600 - BLOCK <= active[-1] < 5600 + BLOCK


def test_threaded_loading_plays_when_ready_and_reports_conversion_errors(tmp_path):
    good = tmp_path / "good.wav"
    soundfile.write(good, tone(22050, 0.2, 900.0), 22050)
    bad = tmp_path / "bad.ogg"
    bad.write_bytes(b"OggS but not really" * 10)
    eng = MediaEngine(2, BLOCK, load_prompts="thread")
    eng.play_prompts(0, [good], tag="g")
    eng.play_prompts(1, [bad], tag="b")
    assert eng.wait_loading(timeout=30)              # the loader thread converts them
    audio, events = run_until(eng, 0, 20)
    done = {e.row: e for e in events if isinstance(e, PlayDone)}
    assert done[0].tag == "g" and not done[0].interrupted and done[0].error is None
    assert abs(peak_hz(audio[:1600]) - 900) < 10
    assert done[1].interrupted and "bad.ogg" in done[1].error
    eng.close()
    with pytest.raises(PromptError, match="file not found"):
        eng.play_prompts(0, [tmp_path / "missing.wav"])   # refused at once, even threaded

