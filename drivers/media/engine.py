"""The media engine: one tick per audio block for every row (channel) at once.

Per tick, in this order:

1. decode the received law codes (one table look-up for all rows);
2. echo cancelling on enabled rows (analog ports), with the audio this engine sent on
   that row in the previous tick as reference: rx of tick t cannot contain echo of tx of
   tick t, which leaves the card after it; the canceller's tail covers the rest of the
   round trip. Detection and mixing then see the cleaned audio;
3. DTMF detection on every row; barge-in on rows whose playback allows it;
4. tone, caller-ID and R2 MF detection on the rows where each is enabled (the detectors
   cost nothing for rows that are not enabled);
5. transmit audio = bridges and conferences (``mixer``) + tones + R2 MF + clips
   (``prompts.Player``: prompt queues and one-shot PCM: played files, DTMF, caller ID),
   summed in float32; rows hearing a sum (a conference, or several sources) pass once
   through ``mixer.Limiter`` (per-row gain, then a soft knee: loud sums get quieter, never
   wrap around or flat-top), single sources pass untouched (a bridge alone is
   bit-transparent);
6. encode (one table look-up), feed taps (one call per consumer), count the tick.

Python work per tick grows with the number of active features (distinct clips playing,
tap consumers, rows with events), never with the number of rows.

Control calls take effect at the next tick. Rows are checked; bad arguments raise
`MediaError` (a ValueError) naming what is wrong, and leave the engine as it was.

Two playback slots per row are summed: the *prompt* slot (`play`, `play_prompts`; a new
request replaces the current one, which reports PlayDone(interrupted=True)) and the
*signal* slot (`send_dtmf`, `send_callerid`; reported with tag "dtmf" / "callerid" unless
given another). One tone per row plays alongside both.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as futures_wait
from typing import Any, Hashable, Iterable

import numpy as np

from drivers.media import g711
from drivers.media.dtmf import DtmfDetector, dtmf_tone
from drivers.media.mixer import Limiter, Mixer, MixerError
from drivers.media.prompts import Finished, Player, PromptCache, PromptError
from drivers.media.taps import TapBank
from drivers.media.tones import ToneDetector, ToneGenerator, TonePlan

log = logging.getLogger(__name__)


# ---- events -----------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DigitEvent:
    row: int
    digit: str
    start: int           # absolute sample index of key-down
    duration: int        # samples


@dataclasses.dataclass(frozen=True)
class ToneEvent:
    row: int
    tone: str
    sample: int


@dataclasses.dataclass(frozen=True)
class PlayDone:
    row: int
    tag: Any
    interrupted: bool = False
    digit: str | None = None      # the DTMF digit that barged in
    error: str | None = None      # a prompt that could not be loaded (playback ended)


@dataclasses.dataclass(frozen=True)
class CallerIdEvent:
    row: int
    number: str | None            # None when withheld (see absence)
    name: str | None = None
    when: Any = None              # "MMDDHHMM" as sent, or None
    absence: str | None = None    # "O" out of area / "P" private, when no number


@dataclasses.dataclass(frozen=True)
class R2Event:
    row: int
    signal: int          # 1..15 at tone start, 0 at tone end
    sample: int


class MediaError(ValueError):
    """A media request that cannot be carried out; the message says why."""


# ---- the engine -------------------------------------------------------------------------
class MediaEngine:
    def __init__(self, rows: int, block: int = 160, law: str = "alaw",
                 plan: str | TonePlan = "cn", prompts: PromptCache | None = None,
                 cache_dir: str | None = None, load_prompts: str = "thread"):
        """`load_prompts`: "thread" converts uncached prompt files in a worker thread
        (the tick never waits on disk; the row stays silent until its file is ready),
        "inline" converts them inside the control call (tests, tools)."""
        if rows < 1 or block < 1:
            raise MediaError(f"rows and block must be positive (rows={rows}, block={block})")
        try:
            g711.silence_byte(law)
        except ValueError as e:
            raise MediaError(str(e)) from None
        if load_prompts not in ("thread", "inline"):
            raise MediaError(f"load_prompts must be 'thread' or 'inline', not {load_prompts!r}")
        self.rows, self.block, self.law = rows, block, law
        self.plan = plan if isinstance(plan, TonePlan) else TonePlan.load(plan)
        self.tick_count = 0
        self.sample = 0                               # absolute index of the next rx sample
        self._dec = g711.decode_table(law)
        self._enc = g711.encode_table(law)
        self._out = np.zeros((rows, block), dtype=np.float32)
        self._sources = np.zeros(rows, dtype=np.int8)
        self._limiter = Limiter(rows, block)
        self._limited = False
        self.dtmf = DtmfDetector(rows, block=block)
        self.tones = ToneGenerator(rows, self.plan, block)
        self.tone_detector = ToneDetector(rows, self.plan, block)
        self.mixer = Mixer(rows, block)
        self.prompt_player = Player(rows, block)
        self.signal_player = Player(rows, block)
        self.taps = TapBank(rows)
        self.prompts = prompts or PromptCache(law, cache_dir=cache_dir)
        self.load_prompts = load_prompts
        self._loader: ThreadPoolExecutor | None = None
        self._loading: set[Future] = set()
        self._cid = None                  # CallerIdReceiver, made on first use
        self._cid_rows: set[int] = set()
        self._r2_detect: dict[str, Any] = {}          # direction -> R2MfDetector
        self._r2_gen: dict[str, Any] = {}             # direction -> R2MfGenerator
        self._r2_dir: dict[int, str] = {}             # row -> direction it detects
        self._r2_sending: dict[int, str] = {}         # row -> direction it sends
        self._echo = None                             # echo.EchoBank, made on first use
        self._barge_pending: dict[int, Finished] = {}  # row -> barged playback, digit awaited
        self._pending_done: list[PlayDone] = []        # from control calls, out next tick
        self.stats = {"ticks": 0, "digits": 0, "callerid_invalid": 0}

    # ---- argument checks ----------------------------------------------------------------
    def _row(self, row) -> int:
        if isinstance(row, bool) or not isinstance(row, (int, np.integer)):
            raise MediaError(f"row must be an integer, got {row!r}")
        if not 0 <= row < self.rows:
            raise MediaError(f"row {row} is out of range (0..{self.rows - 1})")
        return int(row)

    # ---- playback control ---------------------------------------------------------------
    def play_tone(self, row: int, name: str) -> None:
        row = self._row(row)
        if name not in self.plan:
            raise MediaError(f"tone plan {self.plan.name!r} has no tone {name!r}; "
                             f"it has {self.plan.names()}")
        self.tones.start(row, name)

    def play(self, row: int, pcm, tag: Any = None, barge_in: bool = False) -> None:
        """Play 16-bit linear 8 kHz audio (1-D) once on `row`."""
        row = self._row(row)
        clip = _as_clip(pcm)
        self._replace(self.prompt_player.play(row, [clip], tag, barge_in))

    def play_prompts(self, row: int, paths: Iterable[str | os.PathLike], tag: Any = None,
                     barge_in: bool = False) -> None:
        """Play files in order, then report one PlayDone. Missing/unreadable files are
        refused here (PromptError); a file that fails to convert in the loader thread ends
        the playback with PlayDone(interrupted=True, error=...)."""
        row = self._row(row)
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        paths = list(paths)
        if not paths:
            raise MediaError("play_prompts needs at least one file")
        items = []
        for path in paths:
            if self.load_prompts == "inline" or self.prompts.cached(path):
                items.append(self.prompts.load_pcm(path))
            else:
                self.prompts.check(path)
                items.append(self._load_async(path))
        self._replace(self.prompt_player.play(row, items, tag, barge_in))

    def preload(self, paths: Iterable[str | os.PathLike]) -> None:
        """Convert prompt files now (at start-up), so later plays never wait."""
        for path in paths:
            self.prompts.load_pcm(path)

    def _load_async(self, path) -> Future:
        if self._loader is None:
            self._loader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prompts")
        future = self._loader.submit(self.prompts.load_pcm, path)
        self._loading.add(future)
        future.add_done_callback(self._loading.discard)
        return future

    def wait_loading(self, timeout: float | None = None) -> bool:
        """Block until prompt files queued for conversion are ready (tools and tests;
        never from the tick loop). True if none is left."""
        futures_wait(list(self._loading), timeout=timeout)
        return not self._loading

    def send_dtmf(self, row: int, digits: str, tag: Any = "dtmf") -> None:
        row = self._row(row)
        digits = str(digits)
        bad = [d for d in digits if d.upper() not in "0123456789*#ABCD"]
        if not digits or bad:
            raise MediaError(f"cannot send DTMF {digits!r}: digits are 0-9 * # A-D")
        self._replace(self.signal_player.play(row, [dtmf_tone(digits)], tag))

    def send_callerid(self, row: int, number: str | None, name: str | None = None,
                      when: Any = None, tag: Any = "callerid") -> None:
        """Send an FSK caller ID spill (Bell 202, MDMF); number None = withheld."""
        from drivers.media.fsk import callerid_fsk
        row = self._row(row)
        try:
            clip = callerid_fsk(number, name=name, when=when)
        except ValueError as e:
            raise MediaError(f"cannot send caller ID {number!r}: {e}") from None
        self._replace(self.signal_player.play(row, [clip], tag))

    def stop(self, row: int) -> None:
        """Stop all playback on `row`: tone, prompts, DTMF/caller-ID sending."""
        row = self._row(row)
        self.tones.stop(row)
        self._replace(self.prompt_player.stop(row))
        self._replace(self.signal_player.stop(row))

    def _replace(self, finished: Finished | None) -> None:
        if finished is not None:
            self._pending_done.append(PlayDone(finished.row, finished.tag, True))

    # ---- mixing control -----------------------------------------------------------------
    def bridge(self, a: int, b: int) -> None:
        self._mix_call(self.mixer.bridge, self._row(a), self._row(b))

    def unbridge(self, row: int) -> None:
        self._mix_call(self.mixer.unbridge, self._row(row))

    def conf_join(self, conf: Hashable, row: int, mode: str = "talk", gain_db: float = 0.0,
                  whisper_to: int | None = None) -> None:
        self._mix_call(self.mixer.join, conf, self._row(row), mode, gain_db, whisper_to)

    def conf_leave(self, row: int) -> None:
        self._mix_call(self.mixer.leave, self._row(row))

    @staticmethod
    def _mix_call(fn, *args) -> None:
        try:
            fn(*args)
        except MixerError as e:
            raise MediaError(str(e)) from None

    # ---- detection control --------------------------------------------------------------
    def detect_tones(self, row: int, on: bool = True, names: Iterable[str] | None = None) -> None:
        row = self._row(row)
        if on:
            try:
                self.tone_detector.enable(row, names)
            except KeyError as e:
                raise MediaError(str(e.args[0])) from None
        else:
            self.tone_detector.disable(row)

    def receive_callerid(self, row: int, on: bool = True) -> None:
        row = self._row(row)
        if on:
            if self._cid is None:
                from drivers.media.fsk import CallerIdReceiver
                self._cid = CallerIdReceiver(self.rows, block=self.block)
            self._cid.enable(row)
            self._cid_rows.add(row)
        elif row in self._cid_rows:
            self._cid.disable(row)
            self._cid_rows.discard(row)

    def r2_detect(self, row: int, direction: str | None) -> None:
        """Detect R2 MF signals of `direction` ("forward": we are the incoming side and
        send backward signals; "backward": the outgoing side), or stop (None)."""
        row = self._row(row)
        if direction is not None:
            direction = _r2_direction(direction)
        old = self._r2_dir.get(row)
        if old is not None:
            self._r2_sender_set(row, None)
            self._r2_detector(old).disable(row)
            del self._r2_dir[row]
        if direction is None:
            return
        self._r2_detector(direction).enable(row)
        self._r2_dir[row] = direction

    def r2_send(self, row: int, signal: int | None) -> None:
        """Send R2 MF `signal` (1..15) continuously in the direction opposite to the one
        detected on `row` (compelled signalling), or stop sending (None)."""
        row = self._row(row)
        if signal is not None:
            if isinstance(signal, bool) or not isinstance(signal, (int, np.integer)) \
                    or not 1 <= signal <= 15:
                raise MediaError(f"R2 MF signal must be 1..15 or None, got {signal!r}")
            if row not in self._r2_dir:
                raise MediaError(f"row {row}: call r2_detect(row, direction) before r2_send")
        self._r2_sender_set(row, None if signal is None else int(signal))

    def _r2_sender_set(self, row: int, signal: int | None) -> None:
        old = self._r2_sending.pop(row, None)
        if old is not None:
            self._r2_generator(old).set(row, None)
        if signal is not None:
            direction = _R2_OPPOSITE[self._r2_dir[row]]
            self._r2_generator(direction).set(row, signal)
            self._r2_sending[row] = direction

    def _r2_detector(self, direction: str):
        det = self._r2_detect.get(direction)
        if det is None:
            from drivers.media.r2mf import R2MfDetector
            det = self._r2_detect[direction] = R2MfDetector(self.rows, direction, block=self.block)
        return det

    def _r2_generator(self, direction: str):
        gen = self._r2_gen.get(direction)
        if gen is None:
            from drivers.media.r2mf import R2MfGenerator
            gen = self._r2_gen[direction] = R2MfGenerator(self.rows, direction, block=self.block)
        return gen

    # ---- echo and taps ------------------------------------------------------------------
    def echo_cancel(self, row: int, on: bool = True, taps: int | None = None) -> None:
        """Cancel line echo on `row` (analog ports). Turning it on again on a row that
        has it keeps what the canceller learned; `taps` (a power of two, default 128)
        sets the tail beyond the one-block reference delay."""
        row = self._row(row)
        if self._echo is None:
            if not on:
                return
            from drivers.media.echo import EchoBank
            self._echo = EchoBank(self.rows, self.block)
        if not on:
            self._echo.disable(row)
        elif not self._echo.enabled(row) or taps is not None:
            try:
                self._echo.enable(row, taps)
            except ValueError as e:
                raise MediaError(str(e)) from None

    def tap(self, row: int, consumer) -> None:
        row = self._row(row)
        try:
            self.taps.tap(row, consumer)
        except TypeError as e:
            raise MediaError(str(e)) from None

    def untap(self, row: int) -> None:
        self.taps.untap(self._row(row))

    # ---- the tick -----------------------------------------------------------------------
    def tick(self, rx_codes: np.ndarray) -> tuple[np.ndarray, list]:
        """Process one block of every row: (tx codes (rows, block) uint8, events)."""
        rx = np.asarray(rx_codes)
        if rx.shape != (self.rows, self.block) or rx.dtype != np.uint8:
            raise MediaError(f"rx block must be uint8 of shape {(self.rows, self.block)}, "
                             f"got {rx.dtype} {rx.shape}")
        events: list = self._pending_done
        self._pending_done = []
        s0 = self.sample
        pcm = np.take(self._dec, rx)                       # int16 (rows, block)
        if self._echo is not None and self._echo.active:
            self._echo.process(pcm)                        # in place, enabled rows only

        for d in self.dtmf.process(pcm, s0):
            barged = self._barge_pending.pop(d.row, None)
            if barged is not None:
                events.append(PlayDone(d.row, barged.tag, True, d.digit))
            events.append(DigitEvent(d.row, d.digit, d.start, d.duration))
            self.stats["digits"] += 1
        if self.prompt_player.active:
            self._barge_in(events)

        events.extend(ToneEvent(e.row, e.tone, e.sample)
                      for e in self.tone_detector.process(pcm))
        if self._cid_rows:
            for c in self._cid.process(pcm):
                if c.valid:
                    events.append(CallerIdEvent(c.row, c.number, c.name, c.when,
                                                getattr(c, "absence", None)))
                else:
                    self.stats["callerid_invalid"] += 1
                    log.info("row %d: caller ID with a bad checksum ignored", c.row)
        for det in self._r2_detect.values():
            events.extend(R2Event(s.row, s.signal, s.sample) for s in det.process(pcm, s0))

        out = self._out
        out.fill(0.0)
        sources = self._sources                            # per row: sources summed
        sources.fill(0)
        if self.mixer.active:
            self.mixer.mix(pcm, out)
            sources[self.mixer.bridged_rows] += 1
            sources[self.mixer.conference_rows] += 2       # a sum: always limited
        if self.tones.active.any():
            out += self.tones.generate()
            sources += self.tones.active
        for direction, gen in self._r2_gen.items():
            if direction in self._r2_sending.values():
                out += gen.generate()
                sources += gen.signal != 0
        for player in (self.prompt_player, self.signal_player):
            if player.active:
                for f in player.mix_into(out):
                    events.append(PlayDone(f.row, f.tag, f.interrupted, None, f.error))
                sources += player.busy
        summed = np.flatnonzero(sources >= 2)
        if summed.size or self._limited:                   # single sources pass untouched
            out[summed] = self._limiter.process(out[summed], summed)
            self._limited = bool(summed.size)
        np.clip(out, -32768.0, 32767.0, out=out)
        out += 32768.5                                     # to table index, rounded
        tx = np.take(self._enc, out.astype(np.uint16))

        if self._echo is not None and self._echo.active:
            self._echo.sent(np.take(self._dec, tx[self._echo.enabled_rows]))
        if self.taps.active:
            self.taps.feed(self.tick_count, rx, tx)
        self.tick_count += 1
        self.sample = s0 + self.block
        self.stats["ticks"] = self.tick_count
        return tx, events

    def _barge_in(self, events: list) -> None:
        """Stop barge-in playback at key-down; its PlayDone names the digit, which the
        DTMF detector reports at key-up (just before that DigitEvent)."""
        hit = np.flatnonzero(self.dtmf.keydown & self.prompt_player.barge_in)
        for row in hit.tolist():
            finished = self.prompt_player.stop(row)
            if finished is not None:
                self._barge_pending[row] = finished

    def close(self) -> None:
        if self._loader is not None:
            self._loader.shutdown(wait=False, cancel_futures=True)
            self._loader = None
        if self._echo is not None:
            self._echo.close()


_R2_DIRECTIONS = ("forward", "backward")
_R2_OPPOSITE = {"forward": "backward", "backward": "forward"}


def _r2_direction(direction: str) -> str:
    if direction not in _R2_DIRECTIONS:
        raise MediaError(f"R2 direction must be 'forward' or 'backward', not {direction!r}")
    return direction


def _as_clip(pcm) -> np.ndarray:
    a = np.asarray(pcm)
    if a.ndim != 1:
        raise MediaError(f"play needs 1-D 16-bit linear audio, got shape {a.shape}")
    if a.dtype == np.int16:
        return a
    if a.dtype.kind in "iu" and a.dtype != np.uint8:
        if a.size and (a.min() < -32768 or a.max() > 32767):
            raise MediaError("play: samples outside the 16-bit range")
        return a.astype(np.int16)
    if a.dtype.kind == "f":
        return np.clip(np.rint(a), -32768, 32767).astype(np.int16)
    raise MediaError(f"play needs 16-bit linear audio (int16), got {a.dtype} "
                     "(law-coded audio must be decoded first)")
