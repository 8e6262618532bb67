"""Text-to-speech prompts: rendered once by espeak-ng, cached by content, 8 kHz WAV."""
import wave

import numpy as np
import pytest

from ivr.tts import Tts, TtsError


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getnchannels(), w.getsampwidth(), \
            np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")


def test_render_is_8khz_speech_and_cached_by_content(tmp_path):
    tts = Tts(tmp_path)
    path = tts.render("您的话费余额为十二元三角")
    rate, channels, width, pcm = read_wav(path)
    assert (rate, channels, width) == (8000, 1, 2)
    assert 1.0 < pcm.size / rate < 10.0                  # a phrase, not a click
    assert np.sqrt(np.mean(pcm.astype(float) ** 2)) > 300  # audible
    assert tts.renders == 1

    assert tts.render("您的话费余额为十二元三角") == path
    assert tts.renders == 1                               # no second espeak-ng run

    # another process (here: another cache object) with no espeak-ng at all finds it too
    other = Tts(tmp_path, espeak="/nonexistent/espeak-ng")
    assert other.render("您的话费余额为十二元三角") == path
    assert other.renders == 0

    # different text, voice or speed is a different file
    assert tts.render("您的话费余额为十二元") != path
    assert tts.path_for("您的话费余额为十二元三角", "en") != path
    assert Tts(tmp_path, speed=120).path_for("您的话费余额为十二元三角") != path


def test_english_voice(tmp_path):
    rate, _, _, pcm = read_wav(Tts(tmp_path).render("Thank you for calling.", "en"))
    assert rate == 8000 and pcm.size > 4000


def test_missing_voice_is_a_clear_error(tmp_path):
    tts = Tts(tmp_path, voices={"zh": "no-such-voice"})
    with pytest.raises(TtsError, match="no voice 'no-such-voice'"):
        tts.render("你好")
    assert not list(tmp_path.rglob("*.wav"))


def test_missing_espeak_and_empty_text(tmp_path):
    with pytest.raises(TtsError, match="not installed"):
        Tts(tmp_path, espeak="/nonexistent/espeak-ng").render("你好")
    with pytest.raises(TtsError, match="empty"):
        Tts(tmp_path).render("   ")


def test_text_starting_with_a_dash_is_spoken_not_an_option(tmp_path):
    path = Tts(tmp_path).render("-5")
    assert read_wav(path)[3].size > 800
