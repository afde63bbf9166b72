"""Tests of the latency-compensating predictors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tracking.predict import ConstantVelocityPredictor, RidgeARPredictor, make_predictor


def _run(predictor, t: np.ndarray, x: np.ndarray) -> np.ndarray:
    return np.array([predictor.update(float(ti), float(a), float(b)) for ti, (a, b) in zip(t, x)])


def _breathing(t: np.ndarray) -> np.ndarray:
    """A regular Lujan-like trace: SI 12 mm, AP 4 mm lagging, period 4 s."""
    si = 12.0 * np.sin(np.pi * t / 4.0) ** 4
    ap = -4.0 * np.sin(np.pi * (t / 4.0 - 0.05)) ** 4
    return np.stack((si, ap), axis=1)


def _rmse(p: np.ndarray, truth: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.sum((p - truth) ** 2, axis=1))))


# ------------------------------------------------------------------------ constant velocity


def test_constant_velocity_hand_computed() -> None:
    cv = ConstantVelocityPredictor(horizon_s=0.25, frame_period_s=0.125)
    assert cv.update(0.0, 1.0, 2.0) == (1.0, 2.0)  # no velocity yet: hold
    # moved (+1, -0.5) mm in 0.125 s: 8 and -4 mm/s, 0.25 s ahead: +2, -1
    assert cv.update(0.125, 2.0, 1.5) == pytest.approx((4.0, 0.5))


def test_constant_velocity_is_exact_on_a_ramp() -> None:
    t = np.arange(40) / 8.0
    x = np.stack((3.0 * t - 1.0, -2.0 * t), axis=1)
    p = _run(ConstantVelocityPredictor(0.3, 0.125), t, x)
    np.testing.assert_allclose(p[1:], x[1:] + 0.3 * np.array([3.0, -2.0]), atol=1e-12)


def test_constant_velocity_restarts_after_a_gap() -> None:
    cv = ConstantVelocityPredictor(0.25, 0.125)
    cv.update(0.0, 0.0, 0.0)
    cv.update(0.125, 1.0, 0.0)
    # 0.5 s later (a dropped stretch): no velocity from across the gap
    assert cv.update(0.625, 5.0, 0.0) == (5.0, 0.0)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_constant_velocity_passes_nonfinite_through_and_resets(bad: float) -> None:
    cv = ConstantVelocityPredictor(0.25, 0.125)
    cv.update(0.0, 0.0, 0.0)
    cv.update(0.125, 1.0, 0.0)
    out = cv.update(0.25, bad, 0.0)
    assert out[0] is bad or (math.isnan(out[0]) and math.isnan(bad))
    assert cv.update(0.375, 3.0, 0.0) == (3.0, 0.0)  # history restarted


# ---------------------------------------------------------------------------- ridge AR


class _NaiveRidgeAR:
    """Deliberately plain reference of RidgeARPredictor (numpy, np.linalg.solve)."""

    def __init__(self, horizon_s: float, period_s: float, order: int, forget_tau_s: float = 60.0,
                 ridge: float = 0.3, select_tau_s: float = 10.0) -> None:
        self.p = order
        self.h = horizon_s / period_s
        self.lo = math.floor(self.h)
        self.frac = self.h - self.lo
        self.hi = self.lo + (1 if self.frac > 1e-9 else 0)
        self.forget = math.exp(-period_s / forget_tau_s)
        self.select = math.exp(-period_s / select_tau_s)
        self.ridge = ridge
        self.A = np.zeros((2, order, order))
        self.b = np.zeros((2, order))
        self.w = np.zeros((2, order))
        self.scores = np.zeros(3)
        self.scored = 0
        self.xs: list[np.ndarray] = []
        self.made: list[np.ndarray | None] = []

    def update(self, x: np.ndarray) -> np.ndarray:
        p = self.p
        self.xs.append(np.asarray(x, dtype=np.float64))
        n = len(self.xs)
        if n >= p + 1 + self.hi:
            j = n - 1 - self.hi
            lo, hi = self.xs[j + self.lo], self.xs[j + self.hi]
            target = lo + self.frac * (hi - lo) if self.hi != self.lo else self.xs[-1]
            phi = np.array([self.xs[j] - self.xs[j - i] for i in range(1, p + 1)])
            y = target - self.xs[j]
            for a in range(2):
                self.A[a] = self.forget * self.A[a] + np.outer(phi[:, a], phi[:, a])
                self.b[a] = self.forget * self.b[a] + y[a] * phi[:, a]
                self.w[a] = np.linalg.solve(self.A[a] + self.ridge * np.eye(p), self.b[a])
            made = self.made[j]
            if made is not None:
                self.scores = self.select * self.scores + (1 - self.select) * ((made - target) ** 2).sum(axis=1)
                self.scored += 1
        x = self.xs[-1]
        velocity = x + (x - self.xs[-2]) * self.h if n >= 2 else x
        if n >= p + 1:
            phi = np.array([x - self.xs[-1 - i] for i in range(1, p + 1)])
            model = x + np.array([self.w[0] @ phi[:, 0], self.w[1] @ phi[:, 1]])
            self.made.append(np.stack((model, x, velocity)))
        else:
            model = x
            self.made.append(None)
        best = int(np.argmin(self.scores)) if (self.scored >= 2 * p and n >= p + 1) else 1
        return (model, x, velocity)[best]


@pytest.mark.parametrize(("fps", "horizon_s"), [(8.0, 0.25), (4.0, 0.25), (8.0, 0.5), (5.0, 0.3)])
def test_ridge_ar_matches_the_naive_reference(fps: float, horizon_s: float) -> None:
    t = np.arange(int(60 * fps)) / fps
    x = _breathing(t) + np.random.default_rng(1).normal(0.0, 0.2, (t.size, 2))
    fast = RidgeARPredictor(horizon_s, 1.0 / fps)
    naive = _NaiveRidgeAR(horizon_s, 1.0 / fps, fast.order)
    got = _run(fast, t, x)
    expected = np.array([naive.update(row) for row in x])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fast.weights, naive.w, atol=1e-8)


@pytest.mark.parametrize("fps", [4.0, 8.0])
def test_ridge_ar_cuts_the_horizon_error_on_regular_breathing(fps: float) -> None:
    h = 0.25
    t = np.arange(int(120 * fps)) / fps
    x = _breathing(t)
    rng = np.random.default_rng(3)
    measured = x + rng.normal(0.0, 0.1, x.shape)
    ar = RidgeARPredictor(h, 1.0 / fps)
    p = _run(ar, t, measured)
    truth = _breathing(t + h)
    scored = slice(int(30 * fps), None)
    none = _rmse(measured[scored], truth[scored])
    model = _rmse(p[scored], truth[scored])
    assert model <= 0.6 * none, (model, none)  # >= 40 % lower
    assert ar.choice == "model"


def test_ridge_ar_is_never_much_worse_than_holding_on_noise() -> None:
    """Unpredictable motion (white noise): the predictor falls back to holding."""
    fps = 8.0
    t = np.arange(int(120 * fps)) / fps
    rng = np.random.default_rng(5)
    x = rng.normal(0.0, 2.0, (t.size, 2))
    p = _run(RidgeARPredictor(0.25, 1.0 / fps), t, x)
    future = np.roll(x, -2, axis=0)[:-2]
    scored = slice(int(30 * fps), None)
    none = _rmse(x[:-2][scored], future[scored])
    model = _rmse(p[:-2][scored], future[scored])
    assert model <= 1.05 * none, (model, none)


def test_ridge_ar_holds_until_it_has_been_scored() -> None:
    ar = RidgeARPredictor(0.25, 0.125)
    t = np.arange(ar.order * 2) * 0.125
    x = _breathing(t)
    p = _run(ar, t, x)
    np.testing.assert_array_equal(p, x)
    assert ar.choice == "hold"


def test_ridge_ar_fractional_horizon_learns_the_interpolated_target() -> None:
    """On a ramp the model learns x(t+h) - x(t) = v h exactly, for h between samples."""
    fps = 8.0
    h = 0.3  # 2.4 frames
    t = np.arange(200) / fps
    x = np.stack((5.0 * t, -1.0 * t), axis=1)
    ar = RidgeARPredictor(h, 1.0 / fps, ridge=1e-6)
    p = _run(ar, t, x)
    np.testing.assert_allclose(p[-20:], x[-20:] + h * np.array([5.0, -1.0]), atol=1e-3)


def test_ridge_ar_gap_and_nonfinite_restart_the_history() -> None:
    ar = RidgeARPredictor(0.25, 0.125)
    t = np.arange(200) / 8.0
    _run(ar, t, _breathing(t))
    assert ar.update(100.0, 1.0, 2.0) == (1.0, 2.0)  # long gap: history restarted
    out = ar.update(100.125, math.nan, 2.0)
    assert math.isnan(out[0]) and out[1] == 2.0
    assert ar.choice == "hold"


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"horizon_s": 0.0}, "horizon_s"),
        ({"horizon_s": -1.0}, "horizon_s"),
        ({"horizon_s": math.nan}, "horizon_s"),
        ({"horizon_s": 5.0}, "horizon_s"),
        ({"horizon_s": True}, "horizon_s"),
        ({"horizon_s": "x"}, "horizon_s"),
        ({"frame_period_s": 0.0}, "frame_period_s"),
        ({"frame_period_s": math.inf}, "frame_period_s"),
        ({"history_s": 0.0}, "history_s"),
        ({"ridge": -1.0}, "ridge"),
        ({"forget_tau_s": 0.0}, "forget_tau_s"),
        ({"select_tau_s": math.nan}, "select_tau_s"),
    ],
)
def test_bad_parameters_are_refused(kwargs: dict[str, object], name: str) -> None:
    args: dict[str, object] = {"horizon_s": 0.25, "frame_period_s": 0.125}
    args.update(kwargs)
    with pytest.raises(ValueError, match=rf"^{name}: must"):
        RidgeARPredictor(**args)
    if name in ("horizon_s", "frame_period_s"):
        with pytest.raises(ValueError, match=rf"^{name}: must"):
            ConstantVelocityPredictor(args["horizon_s"], args["frame_period_s"])


def test_make_predictor() -> None:
    assert isinstance(make_predictor("velocity", 0.25, 0.125), ConstantVelocityPredictor)
    assert isinstance(make_predictor("ridge-ar", 0.25, 0.125), RidgeARPredictor)
    with pytest.raises(ValueError, match="^kind: must"):
        make_predictor("kalman", 0.25, 0.125)


def test_order_follows_the_history_length() -> None:
    assert RidgeARPredictor(0.25, 0.125, history_s=3.0).order == 24
    assert RidgeARPredictor(0.25, 0.25, history_s=3.0).order == 12
    assert RidgeARPredictor(0.25, 1.0, history_s=0.5).order == 2
    assert RidgeARPredictor(0.25, 0.125).weights.shape == (2, 24)
