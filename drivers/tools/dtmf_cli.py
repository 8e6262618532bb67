"""`cardctl dtmf FILE...`: print the DTMF digits found in 8 kHz mono WAV files.

One line per file, in order: the path, a tab, the digits (nothing after the tab when
there are none). A file that cannot be read is reported on stderr with what is wrong
with it, the others are still processed, and the exit status is 1.
"""
from __future__ import annotations

import sys

from drivers.media.audiofile import AudioFileError, read_8k_mono
from drivers.media.dtmf import detect_digits


def digits_in(path: str) -> str:
    return "".join(d.digit for d in detect_digits(read_8k_mono(path)))


def main(paths: list[str]) -> int:
    status = 0
    for path in paths:
        try:
            digits = digits_in(path)
        except AudioFileError as e:
            print(f"cardctl dtmf: {e}", file=sys.stderr)
            status = 1
            continue
        print(f"{path}\t{digits}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
