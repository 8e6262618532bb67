"""Mandarin speaking of digits, numbers, money, dates and times.

Every function returns a `Spoken`: the words as a tuple of prompt fragments (one
recorded or rendered clip per word, named by `FRAGMENT_IDS`) and, joined, the same words
as text for the TTS engine. The IVR plays either form (the flow's `say` setting).

Reading rules (Modern Standard Mandarin, as telephone services speak):
- 零: one 零 for any run of zeros between spoken digits, also across the 万 and 亿
  groups (10010 一万零一十, 100001000 一亿零一千); trailing zeros are silent.
- 十: a number that starts with 1 in the tens place drops the 一 (12 十二, 150000 十五万);
  inside a number it is kept (110 一百一十, 10010 一万零一十).
- 两: the leading digit 2 before 百, 千, 万 or 亿 (200 两百, 2000 两千, 20000 两万,
  2亿 两亿), and a lone 2 before a measure word (两元, 两角, 两点). Everywhere else 二
  (2 二, 22 二十二, 200000 二十万, 123456789 一亿二千三百四十五万...).
- Digit by digit (phone and ticket numbers), 1 is read 幺 unless yao=False.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

DIGITS = "零一二三四五六七八九"
# word -> fragment id: the file stem of a recorded fragment (pinyin with tone number)
FRAGMENT_IDS = {
    "零": "ling2", "一": "yi1", "幺": "yao1", "二": "er4", "两": "liang3", "三": "san1",
    "四": "si4", "五": "wu3", "六": "liu4", "七": "qi1", "八": "ba1", "九": "jiu3",
    "十": "shi2", "百": "bai3", "千": "qian1", "万": "wan4", "亿": "yi4",
    "点": "dian3", "负": "fu4", "元": "yuan2", "角": "jiao3", "分": "fen1", "整": "zheng3",
    "年": "nian2", "月": "yue4", "日": "ri4", "秒": "miao3", "星期": "xingqi1", "天": "tian1",
    "井": "jing3", "星": "xing1",
}
_GROUP_UNITS = ("", "万", "亿", "万亿")        # every four digits
_IN_GROUP = ("千", "百", "十", "")
MAX_NUMBER = 10 ** 16 - 1
WEEKDAYS = ("一", "二", "三", "四", "五", "六", "天")


class SpeechError(ValueError):
    """A value that cannot be spoken; the message names it."""


@dataclasses.dataclass(frozen=True)
class Spoken:
    words: tuple[str, ...]

    @property
    def text(self) -> str:
        return "".join(self.words)

    @property
    def fragments(self) -> tuple[str, ...]:
        """Fragment ids, one per word (see FRAGMENT_IDS)."""
        return tuple(FRAGMENT_IDS[w] for w in self.words)

    def __add__(self, other: "Spoken") -> "Spoken":
        return Spoken(self.words + other.words)

    def __str__(self) -> str:
        return self.text


# ---- integers -------------------------------------------------------------------------
def _group(n: int, leading: bool, group_unit: str) -> list[str]:
    """Words for 0 < n < 10000; `leading` when these are the number's first digits."""
    digits = (n // 1000, n // 100 % 10, n // 10 % 10, n % 10)
    out: list[str] = []
    started = pending_zero = False
    for d, unit in zip(digits, _IN_GROUP):
        if d == 0:
            pending_zero = started
            continue
        if pending_zero:
            out.append("零")
            pending_zero = False
        first = leading and not started
        if first and d == 1 and unit == "十":
            out.append("十")                      # 十二, 十五万: no 一
        else:
            two_is_liang = first and d == 2 and (unit in ("百", "千")
                                                 or (unit == "" and group_unit != ""))
            out.append("两" if two_is_liang else DIGITS[d])
            if unit:
                out.append(unit)
        started = True
    return out


def _integer_words(n: int, measure: bool = False) -> list[str]:
    if n < 0:
        return ["负"] + _integer_words(-n, measure)
    if n > MAX_NUMBER:
        raise SpeechError(f"number {n} is too large to speak (at most {MAX_NUMBER})")
    if n == 0:
        return ["零"]
    if n == 2 and measure:
        return ["两"]
    groups = []
    while n:
        groups.append(n % 10000)
        n //= 10000
    out: list[str] = []
    gap = False                                   # zeros since the last spoken digit
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            gap = gap or bool(out)
            continue
        if out and (gap or g < 1000):
            out.append("零")
        out += _group(g, leading=not out, group_unit=_GROUP_UNITS[i])
        if _GROUP_UNITS[i]:
            out.append(_GROUP_UNITS[i])
        gap = False                               # a group's trailing zeros are silent
    return out


def _as_decimal(value, what: str) -> Decimal:
    if isinstance(value, bool):
        raise SpeechError(f"{what}: {value!r} is not a number")
    if isinstance(value, float):
        value = repr(value)
    try:
        d = Decimal(str(value).strip().replace(",", ""))
    except (InvalidOperation, ValueError):
        raise SpeechError(f"{what}: {value!r} is not a number") from None
    if not d.is_finite():
        raise SpeechError(f"{what}: {value!r} is not a finite number")
    return d


def say_number(value, *, measure: bool = False) -> Spoken:
    """An integer or decimal as a quantity: 10010 一万零一十, 3.14 三点一四.
    measure=True when a measure word follows (a lone 2 becomes 两)."""
    d = _as_decimal(value, "number")
    sign = ["负"] if d < 0 else []
    d = abs(d)
    whole = int(d)
    frac = format(d - whole, "f").partition(".")[2].rstrip("0")
    words = sign + _integer_words(whole, measure and not frac)
    if frac:
        words += ["点"] + [DIGITS[int(c)] for c in frac]
    return Spoken(tuple(words))


def say_digits(value, *, yao: bool = True) -> Spoken:
    """Digit by digit (phone, ticket and account numbers): 110 幺幺零. * is 星, # is 井."""
    text = str(value).strip()
    if not text or not re.fullmatch(r"[0-9*#]+", text):
        raise SpeechError(f"digits: {value!r} is not a string of digits")
    words = []
    for c in text:
        if c == "*":
            words.append("星")
        elif c == "#":
            words.append("井")
        elif c == "1" and yao:
            words.append("幺")
        else:
            words.append(DIGITS[int(c)])
    return Spoken(tuple(words))


def say_money(value) -> Spoken:
    """An amount in yuan (rounded to the fen): 12.30 十二元三角, 0.05 五分, 12.05 十二元零五分."""
    d = _as_decimal(value, "money").quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = ["负"] if d < 0 else []
    d = abs(d)
    fen_total = int(d * 100)
    yuan, jiao, fen = fen_total // 100, fen_total // 10 % 10, fen_total % 10
    if fen_total == 0:
        return Spoken(("零", "元"))
    words = list(sign)
    if yuan:
        words += _integer_words(yuan, measure=True) + ["元"]
    if jiao:
        words += ["两" if jiao == 2 else DIGITS[jiao], "角"]
    if fen:
        if yuan and not jiao:
            words.append("零")
        words += ["两" if fen == 2 else DIGITS[fen], "分"]
    return Spoken(tuple(words))


# ---- dates and times ------------------------------------------------------------------
def _to_date(value) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value).strip()[:10])
    except ValueError:
        raise SpeechError(f"date: {value!r} is not a date (expected YYYY-MM-DD)") from None


def _to_time(value) -> dt.time:
    if isinstance(value, dt.datetime):
        return value.time()
    if isinstance(value, dt.time):
        return value
    m = re.fullmatch(r"(\d{1,2}):(\d{2})(?::(\d{2}))?", str(value).strip())
    try:
        if m is None:
            raise ValueError
        return dt.time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))
    except ValueError:
        raise SpeechError(f"time: {value!r} is not a time (expected HH:MM or HH:MM:SS)") from None


def say_date(value, *, weekday: bool = False) -> Spoken:
    """2026-11-23 二零二六年十一月二十三日 (the year digit by digit)."""
    d = _to_date(value)
    words = [DIGITS[int(c)] for c in f"{d.year:04d}"] + ["年"]
    words += _integer_words(d.month) + ["月"] + _integer_words(d.day) + ["日"]
    if weekday:
        wd = WEEKDAYS[d.weekday()]
        words += ["星期", wd]
    return Spoken(tuple(words))


def say_time(value) -> Spoken:
    """24-hour clock: 14:05 十四点零五分, 14:00 十四点整, 02:30 两点三十分."""
    t = _to_time(value)
    words = _integer_words(t.hour, measure=True) + ["点"]
    if t.minute == 0 and t.second == 0:
        words.append("整")
    else:
        if t.minute < 10:
            words += ["零", DIGITS[t.minute]] if t.minute else ["零"]
        else:
            words += _integer_words(t.minute)
        words.append("分")
        if t.second:
            words += _integer_words(t.second) + ["秒"]
    return Spoken(tuple(words))


def say_datetime(value) -> Spoken:
    """2026-11-23 14:05 二零二六年十一月二十三日十四点零五分."""
    if isinstance(value, dt.datetime):
        when = value
    else:
        text = str(value).strip().replace("T", " ")
        try:
            when = dt.datetime.fromisoformat(text)
        except ValueError:
            raise SpeechError(f"datetime: {value!r} is not a date and time "
                              f"(expected YYYY-MM-DD HH:MM)") from None
    return say_date(when) + say_time(when.time())


SAYERS = {"digits": say_digits, "number": say_number, "money": say_money,
          "date": say_date, "time": say_time, "datetime": say_datetime}


def all_fragment_words() -> tuple[str, ...]:
    """Every word a Spoken can contain (to record or render the fragment set once)."""
    return tuple(FRAGMENT_IDS)
