"""drivers/recording.py: per-channel recorders fed like media taps, written by a thread."""
import threading

import numpy as np
import pytest

from drivers.media import g711
from drivers.media.audiofile import read_8k_mono
from drivers.media.levels import dbm0_to_peak
from drivers.recording import (RecordError, Recordings, RecordSpec, beep_pcm, check_spec,
                               resolve_path)

BLOCK = 160


def tone_blocks(seconds: float, dbm0: float, hz: float = 440.0) -> np.ndarray:
    n = int(seconds * 8000)
    pcm = dbm0_to_peak(dbm0) * np.sin(2 * np.pi * hz * np.arange(n) / 8000)
    return g711.encode("alaw", np.round(pcm).astype(np.int16)).reshape(-1, BLOCK)


def silence_blocks(seconds: float) -> np.ndarray:
    return np.full((int(seconds * 50), BLOCK), g711.silence_byte("alaw"), dtype=np.uint8)


def feed(recs: Recordings, row: int, blocks: np.ndarray, rows: int = 4) -> None:
    """Blocks for `row` as the engine's tap hands them (other rows carry noise)."""
    for b in blocks:
        rx = np.full((rows, BLOCK), 0x55, dtype=np.uint8)
        rx[row] = b
        tapped = np.array(sorted(recs.active) or [row])
        recs.put_batch(0, tapped, rx[tapped], rx[tapped])


def wait_done(recs: Recordings, timeout_s: float = 5.0):
    done = []
    ev = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        done = recs.step()
        if done:
            return done
        ev.wait(0.01)
    raise AssertionError("the writer never reported the recording closed")


def wav_codes(path: str) -> np.ndarray:
    data = open(path, "rb").read()
    at = data.index(b"data") + 8
    return np.frombuffer(data[at:], dtype=np.uint8)


@pytest.fixture
def recs():
    r = Recordings("alaw", BLOCK)
    yield r
    r.close()


def test_the_file_holds_exactly_the_audio_fed_and_ends_on_silence(recs, tmp_path):
    path = str(tmp_path / "vm.wav")
    speech = tone_blocks(1.0, -20.0)
    assert recs.start(2, RecordSpec(path, max_s=30, silence_s=1.0, beep=False)) is None
    feed(recs, 2, speech)
    feed(recs, 2, silence_blocks(0.5))
    assert recs.recording(2)
    feed(recs, 2, silence_blocks(0.5))           # 1 s below -45 dBm0 after speech: the end
    assert not recs.recording(2) and recs.released() == [2]
    (done,) = wait_done(recs)
    assert done.ok and done.reason == "silence" and done.row == 2
    assert done.duration_s == pytest.approx(1.0)             # the trailing silence is left out
    assert np.array_equal(wav_codes(path), speech.ravel())
    pcm = read_8k_mono(path)                                 # a WAV our own reader accepts
    assert np.array_equal(pcm, g711.decode("alaw", speech.ravel()))


def test_a_pause_shorter_than_silence_s_is_kept(recs, tmp_path):
    path = str(tmp_path / "vm.wav")
    recs.start(0, RecordSpec(path, max_s=30, silence_s=1.0, beep=False))
    parts = [tone_blocks(0.4, -30.0), silence_blocks(0.6), tone_blocks(0.4, -30.0)]
    for p in parts:
        feed(recs, 0, p)
    feed(recs, 0, silence_blocks(1.0))
    (done,) = wait_done(recs)
    assert done.ok and done.duration_s == pytest.approx(1.4)
    assert np.array_equal(wav_codes(path), np.concatenate(parts).ravel())


def test_max_length_cuts_a_long_message(recs, tmp_path):
    path = str(tmp_path / "long.wav")
    recs.start(1, RecordSpec(path, max_s=2.0, silence_s=3.0, beep=False))
    speech = tone_blocks(3.0, -20.0)
    feed(recs, 1, speech[:100])
    assert not recs.recording(1)
    (done,) = wait_done(recs)
    assert done.ok and done.reason == "max_length" and done.duration_s == pytest.approx(2.0)
    assert np.array_equal(wav_codes(path), speech[:100].ravel())


def test_nothing_said_ends_after_silence_s_and_leaves_no_file(recs, tmp_path):
    path = tmp_path / "quiet.wav"
    recs.start(0, RecordSpec(str(path), max_s=60, silence_s=2.0, beep=False))
    feed(recs, 0, tone_blocks(1.9, -50.0))      # line noise below the speech threshold
    assert recs.recording(0)
    feed(recs, 0, silence_blocks(0.1))
    (done,) = wait_done(recs)
    assert not done.ok and done.reason == "silence" and done.duration_s == 0
    assert not path.exists()


def test_the_beep_comes_first_and_nothing_is_recorded_while_it_plays(recs, tmp_path):
    path = str(tmp_path / "b.wav")
    beep = recs.start(3, RecordSpec(path, max_s=10, silence_s=0.5, beep=True))
    assert len(beep) == 3200 and np.abs(beep).max() > 5000
    spectrum = np.abs(np.fft.rfft(beep))
    assert np.argmax(spectrum) * 8000 / len(beep) == pytest.approx(1000, abs=5)
    feed(recs, 3, tone_blocks(0.4, -10.0, hz=1000))  # the beep's echo
    recs.beep_done(3)
    speech = tone_blocks(0.6, -25.0)
    feed(recs, 3, speech)
    recs.stop(3)                                 # StopRecord (the caller pressed #)
    (done,) = wait_done(recs)
    assert done.ok and done.reason == "stopped"
    assert np.array_equal(wav_codes(path), speech.ravel())


def test_a_stalled_disk_never_blocks_the_audio_loop(tmp_path):
    gate = threading.Event()

    def slow_open(path, mode):
        gate.wait(30)                            # the disk hangs until the test lets go
        return open(path, mode)

    recs = Recordings("alaw", BLOCK, opener=slow_open)
    try:
        path = str(tmp_path / "slow.wav")
        recs.start(0, RecordSpec(path, max_s=4.0, beep=False))
        speech = tone_blocks(4.0, -20.0)
        feed(recs, 0, speech)                    # returns although nothing reached the disk
        assert not recs.recording(0)
        assert recs.step() == []                 # not done until the file is closed
        gate.set()
        (done,) = wait_done(recs)
        assert done.ok and done.reason == "max_length"
        assert np.array_equal(wav_codes(path), speech.ravel())
    finally:
        gate.set()
        recs.close()


def test_an_unwritable_file_is_reported_not_raised(recs, tmp_path):
    (tmp_path / "x").write_text("a file where a directory should be")
    recs.start(0, RecordSpec(str(tmp_path / "x" / "vm.wav"), max_s=1.0, beep=False))
    feed(recs, 0, tone_blocks(1.0, -20.0))
    (done,) = wait_done(recs)
    assert not done.ok and done.reason.startswith("error:")


def test_requests_are_checked(recs, tmp_path):
    with pytest.raises(RecordError, match="max_s"):
        check_spec(0, 1)
    with pytest.raises(RecordError, match="max_s"):
        check_spec(4000, 1)
    with pytest.raises(RecordError, match="silence_s"):
        check_spec(10, -1)
    with pytest.raises(RecordError, match=r"\.\."):
        resolve_path(str(tmp_path), "voicemail/../../etc/x.wav")
    with pytest.raises(RecordError, match="does not exist"):
        resolve_path(str(tmp_path), str(tmp_path / "nowhere" / "x.wav"))
    with pytest.raises(RecordError, match=r"\.wav"):
        resolve_path(str(tmp_path), "x.mp3")
    assert resolve_path("run", "voicemail/a.wav") == "run/voicemail/a.wav"
    recs.start(1, RecordSpec(str(tmp_path / "a.wav"), max_s=5))
    with pytest.raises(RecordError, match="already recording"):
        recs.start(1, RecordSpec(str(tmp_path / "b.wav"), max_s=5))
