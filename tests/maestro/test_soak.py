"""The soak run in a short form: determinism and constant memory (no timing asserts)."""

from __future__ import annotations

import numpy as np

from maestro.phantom import generate_session
from maestro.soak import run_soak


def test_repeated_session_decides_identically_and_keeps_memory_flat(tmp_path) -> None:
    phantom = generate_session("mridian-4fps", seconds=100.0, seed=3)  # 400 frames
    result = run_soak(phantom.frames, phantom.spacing_mm, phantom.fps, phantom.labels[0].astype(bool), 6, tmp_path)
    assert result.frames == 2400
    assert result.frames_differing == 0
    assert result.checks["memory"], result.rss_growth_mb
    assert 0.0 < result.beam_on_fraction < 1.0


def test_determinism_check_can_fail(tmp_path, monkeypatch) -> None:
    """If the second repetition is decided differently, the soak must say so."""
    from maestro import soak

    phantom = generate_session("mridian-4fps", seconds=20.0, seed=3)  # 80 frames
    n_per = len(phantom.frames)
    original = soak.LoopedSource.__iter__

    def drifting(self):
        for frame in original(self):
            if frame.index >= n_per:  # the second repetition: the target sits 3 px lower
                frame = type(frame)(frame.index, frame.t_acq_s, frame.t_recv_s,
                                    np.roll(frame.pixels, 3, axis=0), frame.spacing_mm, frame.label)
            yield frame

    monkeypatch.setattr(soak.LoopedSource, "__iter__", drifting)
    result = run_soak(phantom.frames, phantom.spacing_mm, phantom.fps, phantom.labels[0].astype(bool), 2, tmp_path)
    assert result.frames_differing > n_per // 2
    assert not result.checks["determinism"]
