"""ManualClock: moves only when told."""

from __future__ import annotations

import math

import pytest

from hardware.clock import ManualClock


def test_reads_start_then_advances() -> None:
    clock = ManualClock(3.5)
    assert clock() == 3.5 and clock() == 3.5
    clock.advance(0.25)
    assert clock() == 3.75
    clock.sleep(1.0)
    clock.sleep(0.0)
    assert clock() == 4.75
    assert clock.sleeps_s == [1.0, 0.0]


@pytest.mark.parametrize("bad", [-0.001, math.nan, math.inf])
def test_refuses_going_backwards_or_undefined(bad: float) -> None:
    clock = ManualClock()
    with pytest.raises(ValueError, match="duration_s"):
        clock.sleep(bad)
    with pytest.raises(ValueError, match="duration_s"):
        clock.advance(bad)
    assert clock() == 0.0 and clock.sleeps_s == []


def test_refuses_non_finite_start() -> None:
    with pytest.raises(ValueError, match="start_s"):
        ManualClock(math.nan)
