"""Mandarin speaking: numbers, money, dates and times, as words, fragments and text."""
import datetime as dt

import pytest

from ivr.speech import (FRAGMENT_IDS, SpeechError, say_date, say_datetime, say_digits,
                        say_money, say_number, say_time)


@pytest.mark.parametrize("n, text", [
    (0, "零"), (10, "十"), (12, "十二"), (20, "二十"), (100, "一百"), (101, "一百零一"),
    (110, "一百一十"), (1000, "一千"), (1001, "一千零一"), (10010, "一万零一十"),
    (2, "二"), (22, "二十二"), (200000, "二十万"),
    (123456789, "一亿二千三百四十五万六千七百八十九"),
    # 两 for a leading 2 before 百/千/万/亿, 二 elsewhere
    (200, "两百"), (2000, "两千"), (20000, "两万"), (22000, "两万二千"), (2000000, "两百万"),
    (200000000, "两亿"), (222, "两百二十二"),
    # zeros across the 万 and 亿 groups
    (100001000, "一亿零一千"), (10001000, "一千万一千"), (1000001, "一百万零一"),
    (100000000, "一亿"), (150000, "十五万"), (1010, "一千零一十"), (-3, "负三"),
    ("3.14", "三点一四"), ("0.5", "零点五"),
])
def test_numbers(n, text):
    assert say_number(n).text == text


@pytest.mark.parametrize("amount, text", [
    ("0.05", "五分"), ("12.30", "十二元三角"), (12.3, "十二元三角"), ("12.05", "十二元零五分"),
    ("12", "十二元"), ("2", "两元"), ("0.2", "两角"), ("100.07", "一百元零七分"),
    (0, "零元"), ("1.1", "一元一角"), ("200000", "二十万元"), ("10010.5", "一万零一十元五角"),
    ("0.005", "一分"),       # rounded half up to the fen
])
def test_money(amount, text):
    assert say_money(amount).text == text


def test_dates_and_times():
    assert say_date("2026-11-23").text == "二零二六年十一月二十三日"
    assert say_time("14:05").text == "十四点零五分"
    assert say_datetime("2026-11-23 14:05").text == "二零二六年十一月二十三日十四点零五分"
    assert say_datetime(dt.datetime(2026, 11, 23, 14, 5)).text == "二零二六年十一月二十三日十四点零五分"
    assert say_time("14:00").text == "十四点整"
    assert say_time("02:30").text == "两点三十分"
    assert say_time("0:10").text == "零点十分"
    assert say_date(dt.date(2026, 1, 5), weekday=True).text == "二零二六年一月五日星期一"


def test_digits_read_one_as_yao():
    assert say_digits("13800138000").text == "幺三八零零幺三八零零零"
    assert say_digits("110", yao=False).text == "一一零"
    assert say_digits("2026001").text == "二零二六零零幺"
    assert say_digits("*0#").text == "星零井"


def test_fragments_are_one_recorded_word_each():
    s = say_money("12.30")
    assert s.words == ("十", "二", "元", "三", "角")
    assert s.fragments == ("shi2", "er4", "yuan2", "san1", "jiao3")
    # every word any sayer produces has a fragment id, so a recorded set can be complete
    for spoken in (say_number(123456789), say_money("2.22"), say_datetime("2026-02-02 02:02:02"),
                   say_digits("0123456789*#"), say_number("-3.5")):
        assert len(spoken.fragments) == len(spoken.words)
    assert len(set(FRAGMENT_IDS.values())) == len(FRAGMENT_IDS)


@pytest.mark.parametrize("fn, value", [
    (say_number, "abc"), (say_number, 10 ** 16), (say_money, "12,3x"), (say_digits, "12a"),
    (say_digits, ""), (say_date, "2026-13-01"), (say_time, "25:00"), (say_datetime, "tomorrow"),
    (say_number, True), (say_money, "nan"),
])
def test_bad_values_are_refused_with_their_name(fn, value):
    with pytest.raises(SpeechError) as e:
        fn(value)
    assert repr(value)[:6] in str(e.value) or str(value)[:6] in str(e.value)
