"""Predict the target's position a short horizon ahead, to compensate system latency.

A gated beam acts on a position that is already old by the time the beam responds
(image acquisition, reconstruction, tracking, beam switching: together about 250 ms on
an MR-linac). Deciding on where the target *will be* after that latency, instead of
where it *was*, cancels most of the error during fast breathing motion.

Two predictors share one interface (``update`` with each new tracked position returns
the position predicted ``horizon_s`` after it; ``reset`` forgets the history):

* :class:`ConstantVelocityPredictor` (baseline): extrapolates the velocity of the last
  two samples.
* :class:`RidgeARPredictor` (adaptive): an autoregressive model per axis, refitted on
  every sample by ridge regression with exponential forgetting, that maps the recent
  history to the displacement ``horizon_s`` ahead. It also scores, on the samples as
  they arrive, what holding the last position and the constant-velocity extrapolation
  would have predicted, and answers with whichever of the three has had the smallest
  recent error: on irregular motion it falls back to holding the position, so it is
  never much worse than no prediction.

Samples are assumed to come at a regular ``frame_period_s``; a gap longer than 1.5
periods (a frame that could not be tracked, a dropped frame) restarts the history.
Pure computation (numpy): no clocks, no I/O. ``update`` never raises on the values it
is given: a non-finite position resets the history and is returned unchanged.
"""

from __future__ import annotations

import logging
import math

import numba
import numpy as np

from tracking._numba_options import NJIT_OPTIONS

__all__ = ["ConstantVelocityPredictor", "RidgeARPredictor", "make_predictor"]

log = logging.getLogger(__name__)

#: A sample more than this many frame periods after the previous one restarts the history.
_GAP_PERIODS = 1.5


# Layout of the ridge AR predictor's integer state.
_ST_COUNT = 0  # samples in the current history
_ST_SCORED = 1  # predictions scored so far
_ST_CHOICE = 2  # 0 model, 1 hold, 2 velocity


@numba.njit(**NJIT_OPTIONS)
def _cholesky_solve(A, ridge, b, L, z, out):
    """Solve ``(A + ridge I) out = b`` for symmetric positive definite ``A + ridge I``
    with a Cholesky factorisation in the work matrix ``L``; returns False (``out``
    untouched) if a pivot is not positive."""
    p = A.shape[0]
    for i in range(p):
        for j in range(i + 1):
            acc = A[i, j] + (ridge if i == j else 0.0)
            for k in range(j):
                acc -= L[i, k] * L[j, k]
            if i == j:
                if not acc > 0.0:
                    return False
                L[i, i] = math.sqrt(acc)
            else:
                L[i, j] = acc / L[j, j]
    for i in range(p):  # L z = b
        acc = b[i]
        for k in range(i):
            acc -= L[i, k] * z[k]
        z[i] = acc / L[i, i]
    for i in range(p - 1, -1, -1):  # L^T out = z
        acc = z[i]
        for k in range(i + 1, p):
            acc -= L[k, i] * out[k]
        out[i] = acc / L[i, i]
    return True


@numba.njit(**NJIT_OPTIONS)
def _ridge_ar_step(
    x_row, x_col, hist, pending, A, b, w, scores, state, lag_lo, lag_hi, frac, h_steps,
    forget, select, ridge, L, z, phi, out,
):
    """One sample of :class:`RidgeARPredictor`: shift the history, learn the target that
    has become known, score the predictions made for it, predict; see the class."""
    n_keep = hist.shape[0]
    p = w.shape[1]
    for i in range(n_keep - 1):
        hist[i, 0] = hist[i + 1, 0]
        hist[i, 1] = hist[i + 1, 1]
    hist[n_keep - 1, 0] = x_row
    hist[n_keep - 1, 1] = x_col
    n_pend = pending.shape[0]
    for i in range(n_pend - 1):
        for c in range(3):
            pending[i, c, 0] = pending[i + 1, c, 0]
            pending[i, c, 1] = pending[i + 1, c, 1]
    for c in range(3):
        pending[n_pend - 1, c, 0] = np.nan
        pending[n_pend - 1, c, 1] = np.nan
    state[_ST_COUNT] += 1
    count = state[_ST_COUNT]
    last = n_keep - 1
    # 1. Learn the target of the window that ended `lag_hi` samples ago.
    if count >= p + 1 + lag_hi:
        end = last - lag_hi
        for axis in range(2):
            if lag_hi == lag_lo:
                target = hist[last, axis]
            else:
                lo = hist[end + lag_lo, axis]
                target = lo + frac * (hist[end + lag_hi, axis] - lo)
            for i in range(p):
                phi[i] = hist[end, axis] - hist[end - 1 - i, axis]
            y = target - hist[end, axis]
            for i in range(p):
                b[axis, i] = forget * b[axis, i] + y * phi[i]
                for j in range(p):
                    A[axis, i, j] = forget * A[axis, i, j] + phi[i] * phi[j]
            _cholesky_solve(A[axis], ridge, b[axis], L, z, w[axis])
            # the score uses both axes: accumulate the target into out[] temporarily
            out[axis] = target
        made_ok = True
        for c in range(3):
            if not (math.isfinite(pending[0, c, 0]) and math.isfinite(pending[0, c, 1])):
                made_ok = False
        if made_ok:
            for c in range(3):
                e0 = pending[0, c, 0] - out[0]
                e1 = pending[0, c, 1] - out[1]
                scores[c] = select * scores[c] + (1.0 - select) * (e0 * e0 + e1 * e1)
            state[_ST_SCORED] += 1
    # 2. Predict from the newest window: model, hold, constant velocity.
    model_r = x_row
    model_c = x_col
    vel_r = x_row
    vel_c = x_col
    if count >= 2:
        vel_r = x_row + (x_row - hist[last - 1, 0]) * h_steps
        vel_c = x_col + (x_col - hist[last - 1, 1]) * h_steps
    if count >= p + 1:
        acc_r = 0.0
        acc_c = 0.0
        for i in range(p):
            acc_r += w[0, i] * (x_row - hist[last - 1 - i, 0])
            acc_c += w[1, i] * (x_col - hist[last - 1 - i, 1])
        model_r = x_row + acc_r
        model_c = x_col + acc_c
        pending[n_pend - 1, 0, 0] = model_r
        pending[n_pend - 1, 0, 1] = model_c
        pending[n_pend - 1, 1, 0] = x_row
        pending[n_pend - 1, 1, 1] = x_col
        pending[n_pend - 1, 2, 0] = vel_r
        pending[n_pend - 1, 2, 1] = vel_c
    best = 1
    if state[_ST_SCORED] >= 2 * p and count >= p + 1:
        best = 0
        for c in range(1, 3):
            if scores[c] < scores[best]:
                best = c
    state[_ST_CHOICE] = best
    if best == 0:
        out[0] = model_r
        out[1] = model_c
    elif best == 1:
        out[0] = x_row
        out[1] = x_col
    else:
        out[0] = vel_r
        out[1] = vel_c


def _check_positive(value: object, name: str, upper: float = math.inf) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name}: must be a number, got {value!r}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"{name}: must be a number, got {value!r}") from None
    if not (math.isfinite(number) and 0.0 < number <= upper):
        raise ValueError(f"{name}: must be finite, > 0 and <= {upper:g}, got {value!r}")
    return number


class ConstantVelocityPredictor:
    """Extrapolate the last two positions linearly to ``horizon_s`` ahead.

    Parameters
    ----------
    horizon_s : float
        How far ahead to predict, s (> 0, at most 2 s).
    frame_period_s : float
        Nominal interval between samples, s (> 0); used to detect gaps.
    """

    def __init__(self, horizon_s: float, frame_period_s: float) -> None:
        self.horizon_s = _check_positive(horizon_s, "horizon_s", 2.0)
        self.frame_period_s = _check_positive(frame_period_s, "frame_period_s", 10.0)
        self._t_prev = math.nan
        self._x_prev = np.full(2, np.nan)

    def reset(self) -> None:
        """Forget the history: the next prediction is the position itself."""
        self._t_prev = math.nan
        self._x_prev[:] = np.nan

    def update(self, t_s: float, row_mm: float, col_mm: float) -> tuple[float, float]:
        """Add a sample at time ``t_s`` and return the position predicted at
        ``t_s + horizon_s`` as (row_mm, col_mm)."""
        if not (math.isfinite(t_s) and math.isfinite(row_mm) and math.isfinite(col_mm)):
            self.reset()
            return row_mm, col_mm
        dt = t_s - self._t_prev
        x = np.array([row_mm, col_mm])
        if not (0.0 < dt <= _GAP_PERIODS * self.frame_period_s):
            self._t_prev, self._x_prev = t_s, x
            return row_mm, col_mm
        velocity = (x - self._x_prev) / dt
        self._t_prev, self._x_prev = t_s, x
        predicted = x + velocity * self.horizon_s
        return float(predicted[0]), float(predicted[1])


#: Largest autoregressive order :class:`RidgeARPredictor` uses.
MAX_ORDER = 24


class RidgeARPredictor:
    """Online ridge autoregressive predictor with a fall-back to safer predictions.

    Per axis, the displacement ``x(t + h) - x(t)`` is modelled as a linear function of
    the last ``p`` increments ``x(t) - x(t - i T)``, ``i = 1 .. p`` (differences from the
    current position, so a slow baseline shift changes nothing). The weights minimise
    ``sum_j forget^(k-j) (w . phi_j - y_j)^2 + ridge |w|^2`` over the samples whose
    target ``x(t_j + h)`` is already known (linearly interpolated between the two samples
    around it when ``h`` is not a whole number of periods); the normal equations are
    updated and solved on every sample (``p`` is at most 24, so this costs microseconds).

    Every sample also scores the predictions made ``h`` earlier by the model, by holding
    the position and by constant-velocity extrapolation (exponentially weighted mean
    squared error, time constant ``select_tau_s``). The prediction returned comes from
    the one with the smallest score; until the model has been scored on ``2 p`` samples
    the position is held.

    Parameters
    ----------
    horizon_s : float
        How far ahead to predict, s (> 0, at most 2 s).
    frame_period_s : float
        Interval between samples, s (> 0).
    history_s : float, default 3.0
        Length of history the model sees, s; ``p = max(2, round(history_s / T))``.
    forget_tau_s : float, default 60.0
        Time constant of the exponential forgetting of old samples in the fit, s.
    ridge : float, default 0.3
        Ridge penalty, in mm^2 (the features are in mm).
    select_tau_s : float, default 10.0
        Time constant of the error scores that choose between model, hold and
        constant velocity, s.
    """

    def __init__(
        self,
        horizon_s: float,
        frame_period_s: float,
        history_s: float = 3.0,
        forget_tau_s: float = 60.0,
        ridge: float = 0.3,
        select_tau_s: float = 10.0,
    ) -> None:
        self.horizon_s = _check_positive(horizon_s, "horizon_s", 2.0)
        self.frame_period_s = _check_positive(frame_period_s, "frame_period_s", 10.0)
        history_s = _check_positive(history_s, "history_s", 30.0)
        forget_tau_s = _check_positive(forget_tau_s, "forget_tau_s", 1e6)
        self.ridge = _check_positive(ridge, "ridge", 1e6)
        select_tau_s = _check_positive(select_tau_s, "select_tau_s", 1e6)
        T = self.frame_period_s
        # Capped: at high frame rates the history shortens rather than the model growing
        # (the solve is O(order^3) per frame and its arrays O(order^2)).
        self.order = min(MAX_ORDER, max(2, int(round(history_s / T))))
        self._h_steps = self.horizon_s / T
        self._lag_lo = int(math.floor(self._h_steps))
        self._frac = self._h_steps - self._lag_lo
        self._lag_hi = self._lag_lo + (1 if self._frac > 1e-9 else 0)
        self._forget = math.exp(-T / forget_tau_s)
        self._select = math.exp(-T / select_tau_s)
        p = self.order
        # Ring of past positions: enough for p increments plus the horizon.
        self._n_keep = p + 1 + self._lag_hi
        self._A = np.zeros((2, p, p))
        self._b = np.zeros((2, p))
        self._w = np.zeros((2, p))
        self._scores = np.zeros(3)  # model, hold, constant velocity
        self._state = np.zeros(3, dtype=np.int64)
        self._hist = np.full((self._n_keep, 2), np.nan)  # newest last
        self._pending = np.full((self._lag_hi + 1, 3, 2), np.nan)  # predictions made
        self._L = np.zeros((p, p))
        self._z = np.zeros(p)
        self._phi = np.zeros(p)
        self._out = np.zeros(2)
        # Compile (or load from cache) now, not inside the first frame: one step on the
        # empty history learns nothing, and reset() forgets it.
        self._t_prev = math.nan
        self.update(0.0, 0.0, 0.0)
        self.reset()

    @property
    def choice(self) -> str:
        """Which prediction :meth:`update` returned last: ``"model"``, ``"hold"`` or
        ``"velocity"``."""
        return ("model", "hold", "velocity")[int(self._state[_ST_CHOICE])]

    @property
    def weights(self) -> np.ndarray:
        """(2, p) current model weights per axis (row, col); a copy."""
        return self._w.copy()

    def reset(self) -> None:
        """Forget the position history (the fitted model and the scores are kept)."""
        self._hist[:] = np.nan
        self._pending[:] = np.nan
        self._state[_ST_COUNT] = 0
        self._state[_ST_CHOICE] = 1
        self._t_prev = math.nan

    def update(self, t_s: float, row_mm: float, col_mm: float) -> tuple[float, float]:
        """Add a sample at time ``t_s`` and return the position predicted at
        ``t_s + horizon_s`` as (row_mm, col_mm). One compiled call, no allocation
        besides the returned pair."""
        if not (math.isfinite(t_s) and math.isfinite(row_mm) and math.isfinite(col_mm)):
            self.reset()
            return row_mm, col_mm
        dt = t_s - self._t_prev
        if not (0.0 < dt <= _GAP_PERIODS * self.frame_period_s):
            self.reset()
        self._t_prev = t_s
        _ridge_ar_step(
            float(row_mm), float(col_mm), self._hist, self._pending, self._A, self._b, self._w,
            self._scores, self._state, self._lag_lo, self._lag_hi, self._frac, self._h_steps,
            self._forget, self._select, self.ridge, self._L, self._z, self._phi, self._out,
        )
        return float(self._out[0]), float(self._out[1])


def make_predictor(
    kind: str, horizon_s: float, frame_period_s: float
) -> ConstantVelocityPredictor | RidgeARPredictor:
    """Build a predictor by name: ``"velocity"`` or ``"ridge-ar"``.

    Raises
    ------
    ValueError
        If ``kind`` is unknown or a number is out of range.
    """
    if kind == "velocity":
        return ConstantVelocityPredictor(horizon_s, frame_period_s)
    if kind == "ridge-ar":
        return RidgeARPredictor(horizon_s, frame_period_s)
    raise ValueError(f"kind: must be 'velocity' or 'ridge-ar', got {kind!r}")
