"""`cardctl dtmf FILE...` on real WAV files, and the WAV reader's errors."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from drivers.media import g711
from drivers.media.audiofile import AudioFileError, read_8k_mono, write_wav
from drivers.media.dtmf import dtmf_tone
from drivers.tools import dtmf_cli


def riff(*chunks: tuple[bytes, bytes], declared: int | None = None) -> bytes:
    body = b"WAVE"
    for cid, data in chunks:
        body += cid + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) & 1 else b"")
    return b"RIFF" + struct.pack("<I", declared if declared is not None else len(body)) + body


def fmt(code=1, channels=1, rate=8000, bits=16, extra=b"") -> bytes:
    width = bits // 8
    return struct.pack("<HHIIHH", code, channels, rate, rate * width * channels,
                       width * channels, bits) + extra


def test_digits_from_linear_and_alaw_and_ulaw_files(tmp_path, capsys):
    speech_then_digits = np.concatenate([np.zeros(800, dtype=np.int16),
                                         dtmf_tone("95511", 80, 80, (-12.0, -14.0))])
    lin, alaw, ulaw, quiet = (tmp_path / n for n in ("lin.wav", "alaw.wav", "ulaw.wav",
                                                      "quiet.wav"))
    write_wav(lin, speech_then_digits)
    write_wav(alaw, dtmf_tone("*0#", 60, 60), law="alaw")
    write_wav(ulaw, dtmf_tone("ABCD", 100, 100), law="ulaw")
    write_wav(quiet, np.zeros(4000, dtype=np.int16))
    assert dtmf_cli.main([str(lin), str(alaw), str(ulaw), str(quiet)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == [f"{lin}\t95511", f"{alaw}\t*0#", f"{ulaw}\tABCD",
                                    f"{quiet}\t"]
    assert out.err == ""


def test_a_bad_file_is_named_on_stderr_and_the_others_still_run(tmp_path, capsys):
    good = tmp_path / "good.wav"
    write_wav(good, dtmf_tone("123", 70, 70), law="alaw")
    stereo = tmp_path / "stereo.wav"
    stereo.write_bytes(riff((b"fmt ", fmt(channels=2)), (b"data", b"\x00" * 64)))
    missing = tmp_path / "missing.wav"
    status = dtmf_cli.main([str(stereo), str(good), str(missing)])
    out = capsys.readouterr()
    assert status == 1
    assert out.out.splitlines() == [f"{good}\t123"]
    errors = out.err.splitlines()
    assert len(errors) == 2
    assert str(stereo) in errors[0] and "2 channels" in errors[0]
    assert str(missing) in errors[1] and "cannot read" in errors[1]


def test_cardctl_dtmf_runs_this_tool(tmp_path, capsys):
    from drivers import cardctl
    f = tmp_path / "menu.wav"
    write_wav(f, dtmf_tone("0", 90, 90))
    assert cardctl.main(["dtmf", str(f)]) == 0
    assert capsys.readouterr().out == f"{f}\t0\n"


# ---- the reader -------------------------------------------------------------------------------
def test_reader_skips_extra_and_odd_sized_chunks(tmp_path):
    pcm = np.array([0, 1000, -1000, 32767, -32768], dtype=np.int16)
    data = pcm.astype("<i2").tobytes()
    f = tmp_path / "chunks.wav"
    f.write_bytes(riff((b"LIST", b"INFOabc"), (b"fmt ", fmt()), (b"fact", b"\x05\x00\x00\x00"),
                       (b"junk", b"x"), (b"data", data), (b"cue ", b"")))
    assert read_8k_mono(f).tolist() == pcm.tolist()


def test_reader_decodes_alaw_ulaw_and_extensible(tmp_path):
    pcm = np.arange(-30000, 30000, 997, dtype=np.int16)
    f = tmp_path / "a.wav"
    write_wav(f, pcm, law="alaw")
    assert (read_8k_mono(f) == g711.alaw_decode(g711.alaw_encode(pcm))).all()
    write_wav(f, pcm, law="ulaw")
    assert (read_8k_mono(f) == g711.ulaw_decode(g711.ulaw_encode(pcm))).all()
    guid = struct.pack("<H", 6) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    ext = fmt(code=0xFFFE, bits=8, extra=struct.pack("<HHI", 22, 8, 4) + guid)
    f.write_bytes(riff((b"fmt ", ext), (b"data", g711.alaw_encode(pcm).tobytes())))
    assert (read_8k_mono(f) == g711.alaw_decode(g711.alaw_encode(pcm))).all()


@pytest.mark.parametrize("content,message", [
    (b"ID3\x03\x00 not audio at all", "not a WAV file"),
    (riff((b"fmt ", fmt(rate=16000)), (b"data", b"\x00" * 8)), "16000 Hz; expected 8000"),
    (riff((b"fmt ", fmt(channels=2)), (b"data", b"\x00" * 8)), "2 channels; expected mono"),
    (riff((b"fmt ", fmt(code=3, bits=32)), (b"data", b"\x00" * 8)), "unsupported format 0x0003"),
    (riff((b"fmt ", fmt(bits=8)), (b"data", b"\x00" * 8)), "8 bits per sample"),
    (riff((b"fmt ", fmt(code=6, bits=16)), (b"data", b"\x00" * 8)), "A-law with 16 bits"),
    (riff((b"fmt ", fmt()),), "no data chunk"),
    (riff((b"data", b"\x00" * 8), (b"fmt ", fmt())), "data chunk comes before the fmt"),
    (riff((b"fmt ", b"\x01\x00")), "fmt chunk too short"),
    (riff((b"fmt ", fmt()), (b"data", b"\x00" * 7)), "not a whole number of 2-byte"),
    (b"RIFX" + b"\x00" * 40, "big-endian"),
])
def test_reader_errors_name_the_file_and_the_problem(tmp_path, content, message):
    f = tmp_path / "bad.wav"
    f.write_bytes(content)
    with pytest.raises(AudioFileError) as err:
        read_8k_mono(f)
    assert str(f) in str(err.value) and message in str(err.value)


def test_reader_takes_a_streamed_data_chunk_to_the_end_of_the_file(tmp_path):
    """What espeak-ng --stdout or sox writing to a pipe leave: placeholder lengths."""
    pcm = np.array([5, -5, 300, -300], dtype=np.int16)
    f = tmp_path / "streamed.wav"
    f.write_bytes(b"RIFF" + struct.pack("<I", 0x7FFFF024) + b"WAVE"
                  + b"fmt " + struct.pack("<I", 16) + fmt()
                  + b"data" + struct.pack("<I", 0x7FFFF000) + pcm.astype("<i2").tobytes())
    assert read_8k_mono(f).tolist() == pcm.tolist()


def test_reader_reports_a_truncated_data_chunk(tmp_path):
    f = tmp_path / "cut.wav"
    whole = riff((b"fmt ", fmt()), (b"data", b"\x01\x02" * 400))
    f.write_bytes(whole[:-100])
    with pytest.raises(AudioFileError, match=r"cut\.wav: truncated: the data chunk declares 800 "
                                             r"bytes but only 700 follow"):
        read_8k_mono(f)
    f.write_bytes(whole[:30])
    with pytest.raises(AudioFileError, match="truncated"):
        read_8k_mono(f)
