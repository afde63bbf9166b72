"""The shared option value types (:mod:`maestro.cli_args`): round trips and the rules
they name when they refuse."""

from __future__ import annotations

import argparse
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from maestro.cli_args import box, count, number, point, port, positive_count, spacing


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6))
def test_number_round_trips_and_enforces_its_bounds(value: float) -> None:
    parse = number(0.0, low_inclusive=False, high=100.0)
    text = repr(value)
    if 0.0 < value <= 100.0:
        assert parse(text) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="must be"):
            parse(text)


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_number_refuses_non_finite(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="must be finite"):
        number()(text)


def test_number_names_the_inclusive_bound() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=r"'-1' must be >= 0"):
        number(0.0)("-1")
    assert number(0.0)("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match=r"'0' must be > 0"):
        number(0.0, low_inclusive=False)("0")


@given(st.integers(min_value=-10, max_value=10**9))
def test_counts_round_trip(value: int) -> None:
    for parse, low in ((count, 0), (positive_count, 1)):
        if value >= low:
            assert parse(str(value)) == value
        else:
            with pytest.raises(argparse.ArgumentTypeError, match="must be >= "):
                parse(str(value))


@pytest.mark.parametrize("parse", [count, positive_count, port])
def test_whole_numbers_refuse_fractions_and_words(parse) -> None:
    for text in ("1.5", "x", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            parse(text)


@given(st.integers(min_value=-5, max_value=70000))
def test_port_range(value: int) -> None:
    if 0 <= value <= 65535:
        assert port(str(value)) == value
    else:
        with pytest.raises(argparse.ArgumentTypeError, match="within 0 to 65535"):
            port(str(value))


def test_spacing_one_or_two_values() -> None:
    assert spacing("2.4") == (2.4, 2.4)
    assert spacing("2.4,3.5") == (2.4, 3.5)
    for text in ("0", "1,2,3", "1,-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            spacing(text)


def test_point_and_box() -> None:
    assert point("3,4.5") == (3.0, 4.5)
    with pytest.raises(argparse.ArgumentTypeError, match="ROW,COL"):
        point("3")
    assert box("84,73,13,10") == (84, 73, 13, 10)
    with pytest.raises(argparse.ArgumentTypeError):
        box("84,73,13")
    assert math.isfinite(number()("1e300"))
