"""Type stubs for drivers.native.spandsp (SpanDSP 0.0.6 through cffi)."""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from typing import Iterable, Sequence

import numpy as np

log: logging.Logger
RATE: int

ADSI_CLASS: int
ADSI_CLIP: int
ADSI_ACLIP: int
ADSI_JCLIP: int
ADSI_CLIP_DTMF: int

MDMF_CALLERID: int
FIELD_DATETIME: int
FIELD_CALLER_NUMBER: int
FIELD_DIALED_NUMBER: int
FIELD_NUMBER_ABSENT: int
FIELD_CALLER_NAME: int
FIELD_NAME_ABSENT: int
JCLIP_MDMF_CALLERID: int
JCLIP_CALLER_NUMBER: int
JCLIP_ABSENCE: int
DTMF_HASH_TERMINATED: int
DTMF_CALLER_NUMBER: int
DTMF_ABSENCE: int


class SpanDspError(Exception): ...


class _Owned:
    def close(self) -> None: ...


class DtmfRx(_Owned):
    def __init__(self, *, filter_dialtone: bool = ..., twist_db: int | None = ...,
                 reverse_twist_db: int | None = ..., threshold_dbm0: int | None = ...) -> None: ...
    def rx(self, pcm: np.ndarray) -> str: ...
    def status(self) -> str: ...
    def reset(self) -> None: ...


class DtmfTx(_Owned):
    DIGITS: frozenset[str]
    def __init__(self, *, level_dbm0: int | None = ..., twist_db: int = ...,
                 on_ms: int | None = ..., off_ms: int | None = ...) -> None: ...
    def put(self, digits: str) -> None: ...
    def generate(self, n: int = ...) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class CallerIdMessage:
    message_type: int
    fields: tuple[tuple[int, bytes], ...]
    number: str | None = ...
    name: str | None = ...
    when: str | None = ...
    absence: str | None = ...
    raw: bytes = ...


class AdsiTx(_Owned):
    standard: int
    def __init__(self, standard: int | str = ...) -> None: ...
    def build_message(self, message_type: int,
                      fields: Iterable[tuple[int, bytes | str]]) -> bytes: ...
    def callerid_message(self, number: str | None, name: str | None = ...,
                         when: datetime.datetime | str | None = ...,
                         absent: str | None = ...) -> bytes: ...
    def put_message(self, message: bytes) -> None: ...
    def set_preamble(self, preamble_len: int = ..., preamble_ones_len: int = ...,
                     postamble_ones_len: int = ..., stop_bits: int = ...) -> None: ...
    def send_alert_tone(self) -> None: ...
    def generate(self, n: int = ...) -> np.ndarray: ...
    def callerid_audio(self, number: str | None, name: str | None = ...,
                       when: datetime.datetime | str | None = ...,
                       absent: str | None = ...) -> np.ndarray: ...


class AdsiRx(_Owned):
    standard: int
    MAX_FIELDS: int
    def __init__(self, standard: int | str = ...) -> None: ...
    @property
    def dropped(self) -> int: ...
    def rx(self, pcm: np.ndarray) -> list[CallerIdMessage]: ...


class EchoCanceller(_Owned):
    taps: int
    mode: int
    nlp: bool
    def __init__(self, taps: int = ..., adaption: bool = ..., nlp: bool = ..., *,
                 tx_hpf: bool = ..., rx_hpf: bool = ...) -> None: ...
    def process(self, tx_ref: np.ndarray, rx: np.ndarray,
                out: np.ndarray | None = ...) -> np.ndarray: ...
    @property
    def suppressing(self) -> bool: ...
    def flush(self) -> None: ...
    def set_adaption(self, adaption: bool) -> None: ...


@dataclasses.dataclass(frozen=True)
class FaxResult:
    status: int
    text: str
    pages_tx: int
    pages_rx: int
    bit_rate: int
    ecm: bool
    remote_ident: str
    @property
    def ok(self) -> bool: ...


class FaxSession(_Owned):
    calling_party: bool
    receive: bool
    tiff_path: str
    def __init__(self, calling_party: bool, tiff_path: str | os.PathLike[str], receive: bool, *,
                 ident: str = ..., modems: Sequence[str] = ..., ecm: bool = ...,
                 trace: str | None = ...) -> None: ...
    def trace(self, tag: str = ...) -> None: ...
    def rx(self, pcm: np.ndarray) -> None: ...
    def tx(self, n: int = ...) -> np.ndarray: ...
    @property
    def done(self) -> bool: ...
    @property
    def result(self) -> FaxResult | None: ...
    @property
    def remote_ident(self) -> str: ...
    def pages(self) -> tuple[int, int]: ...
    def terminate(self) -> None: ...


@dataclasses.dataclass(frozen=True)
class ToneReport:
    tone: int | None
    level: int
    delay: int


class SuperToneRx(_Owned):
    def __init__(self, tones: Sequence[Sequence[tuple[int, int, int, int]]]) -> None: ...
    def rx(self, pcm: np.ndarray) -> list[ToneReport]: ...


@dataclasses.dataclass(frozen=True)
class FaxPage:
    bitmap: np.ndarray
    x_dpi: float
    y_dpi: float


def write_fax_tiff(path: str | os.PathLike[str], pages: Sequence[np.ndarray],
                   x_dpi: float = ..., y_dpi: float = ..., *, group4: bool = ...) -> None: ...
def read_fax_tiff(path: str | os.PathLike[str]) -> list[FaxPage]: ...
