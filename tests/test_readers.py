"""The shared readers of ISO date-times and decimals (connectors/readers.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given
from hypothesis import strategies as st

from connectors.readers import decimal_of, iso_time

AMSTERDAM = ZoneInfo("Europe/Amsterdam")
naive_times = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1))
offsets = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timezone(timedelta(minutes=m)))


@given(naive_times, offsets)
def test_a_time_with_an_offset_reads_back_as_that_moment(moment: datetime, offset: timezone) -> None:
    aware = moment.replace(tzinfo=offset)
    read = iso_time(aware.isoformat(), AMSTERDAM)
    assert read == aware
    assert read is not None and read.utcoffset() == offset.utcoffset(None)


@given(naive_times)
def test_z_means_utc(moment: datetime) -> None:
    assert iso_time(moment.isoformat() + "Z", AMSTERDAM) == moment.replace(tzinfo=UTC)


@given(naive_times)
def test_a_naive_time_is_wall_clock_time_in_the_zone(moment: datetime) -> None:
    assert iso_time(moment.isoformat(), "Europe/Amsterdam") == moment.replace(tzinfo=AMSTERDAM)
    assert iso_time(moment.isoformat()) == moment.replace(tzinfo=UTC)


@given(st.text(max_size=40))
def test_any_text_reads_as_an_aware_time_or_none(text: str) -> None:
    read = iso_time(text)
    assert read is None or read.tzinfo is not None


def test_unreadable_times_are_none() -> None:
    for text in ("", "yesterday", "2026-13-01T00:00:00", "2026-03-14T25:00", " 2026-03-14", "2026-03-14z"):
        assert iso_time(text) is None, text


@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_a_decimal_reads_back_from_its_text_with_point_or_comma(number: Decimal) -> None:
    text = str(number)
    assert decimal_of(text) == number
    assert decimal_of(text.replace(".", ",")) == number
    assert decimal_of(f"  {text} ") == number


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_float_reads_as_its_shortest_repr(number: float) -> None:
    read = decimal_of(number)
    assert read == Decimal(repr(number))
    assert read is not None and float(read) == number


@given(st.integers())
def test_an_integer_reads_exactly(number: int) -> None:
    assert decimal_of(number) == number


@given(st.one_of(st.text(), st.booleans(), st.none(), st.floats(), st.lists(st.integers())))
def test_anything_reads_as_a_finite_decimal_or_none(value: object) -> None:
    read = decimal_of(value)
    assert read is None or read.is_finite()


def test_unreadable_numbers_are_none() -> None:
    unreadable = (True, False, None, "", "abc", "1.2.3", "1,000.5", "NaN", "-Infinity", float("nan"), float("inf"), [1])
    for value in unreadable:
        assert decimal_of(value) is None, value
