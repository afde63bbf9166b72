"""ZNCC kernel against ``cv2.matchTemplate(TM_CCOEFF_NORMED)`` on the same search window.

Both compute the full normalised score map of the window the tracker searches (template:
3 cm lesion plus 10 mm of context; window: +-15 mm or +-30 mm around the template's
reference position). Short blocks of calls of each side alternate in the same process and
the ratio is that of each side's best block (see ``workload.interleaved_ratio``), so it
holds on a loaded machine; the times reported are medians. Budget: at least 1.5x faster with one thread each
(Numba kernels are single-threaded; ``cv2.setNumThreads(1)``), same integer peak. The
ratio with OpenCV's default threading is reported too.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks import workload
from benchmarks.conftest import CV2_DEFAULT_THREADS
from maestro.bench import KERNEL_CASES
from tracking.tracker import TemplateTracker
from tracking.zncc import _zncc_kernel, pad_template, prepare_template, window_buffer

#: Frame searched (a few frames into the first inhalation, so the target has moved).
FRAME_INDEX = 12


@pytest.mark.parametrize(("key", "geometry", "search_mm"), KERNEL_CASES, ids=[c[0] for c in KERNEL_CASES])
def test_kernel_vs_opencv(request: pytest.FixtureRequest, figures, quick: bool, key: str, geometry: str, search_mm: float) -> None:
    w = request.getfixturevalue("phantom_8fps" if geometry == "mridian-8fps" else "phantom_4fps")
    reference, frame = w.frames[0], w.frames[FRAME_INDEX]
    tracker = TemplateTracker(reference, w.reference_mask, w.spacing_mm,
                              context_mm=workload.CONTEXT_MM, search_mm=search_mm)
    tracker.track(frame, predicted_mm=(0.0, 0.0))
    row0, col0, n_rows, n_cols = tracker.last_search_window_px
    h, w_px = tracker.template_shape
    r0, c0 = tracker.template_origin_px
    template = np.ascontiguousarray(reference[r0 : r0 + h, c0 : c0 + w_px])

    # The tracker's kernel, exactly as the tracker calls it: offsets into the full frame,
    # buffers allocated once.
    tmpl_zm, tmpl_ssd, shift = prepare_template(template)
    tmpl_pad = pad_template(tmpl_zm)
    win = window_buffer(n_rows, n_cols, (h, w_px))
    scores = np.empty((n_rows, n_cols))
    colsum = np.empty(n_cols + w_px - 1)
    colsum2 = np.empty(n_cols + w_px - 1)
    # OpenCV on a view of the same window, into a preallocated result.
    window = frame[row0 : row0 + n_rows + h - 1, col0 : col0 + n_cols + w_px - 1]
    result = np.empty((n_rows, n_cols), dtype=np.float32)

    def kernel() -> None:
        _zncc_kernel(frame, tmpl_zm, tmpl_pad, tmpl_ssd, shift, row0, col0, n_rows, n_cols, win, colsum, colsum2, scores)

    def opencv() -> None:
        cv2.matchTemplate(window, template, cv2.TM_CCOEFF_NORMED, result=result)

    calls, repeats = (10, 150) if quick else (10, 400)
    cv2.setNumThreads(1)
    t_kernel, t_cv, ratio_1t = workload.interleaved_ratio(kernel, opencv, calls, repeats)
    cv2.setNumThreads(CV2_DEFAULT_THREADS)
    _, _, ratio_default = workload.interleaved_ratio(kernel, opencv, calls, repeats)

    kernel()
    opencv()
    same_peak = np.unravel_index(np.argmax(scores), scores.shape) == np.unravel_index(
        np.argmax(result), result.shape
    )
    figures.peaks[key] = bool(same_peak)
    figures.record(**{
        f"kernel_speedup_vs_opencv_{key}": ratio_1t,
        f"kernel_speedup_vs_opencv_default_threads_{key}": ratio_default,
        f"kernel_us_{key}": t_kernel * 1e6,
        f"opencv_us_{key}": t_cv * 1e6,
    })
    # Summary figures over the cases measured so far: the worst ratio and the mismatches.
    ratios = [figures.values.get(f"kernel_speedup_vs_opencv_{k}") for k in figures.peaks]
    figures.record(
        kernel_speedup_vs_opencv=min((r if r is not None else 0.0) for r in ratios),
        kernel_peak_mismatches=sum(1 for ok in figures.peaks.values() if not ok),
    )
    assert same_peak, f"{key}: the kernel's peak differs from OpenCV's"
    figures.check(f"kernel_speedup_vs_opencv_{key}")
