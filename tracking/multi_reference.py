"""Track with several reference templates taken at different breathing phases.

A single fixed reference template accumulates no drift, but a target that deforms with
breathing matches it less well far from the reference phase. Updating the template
frame by frame adapts to the deformation but random-walks away from the reference
(each update adds its own registration error). :class:`MultiReferenceTracker` keeps
the fixed reference and adds at most ``max_references - 1`` more, each captured once,
on a frame where the *primary* reference matched confidently and the target lay at
least ``min_separation_mm`` from every reference already held. Each frame is matched
against every reference and the best ZNCC peak wins; the displacement is that
reference's own displacement plus the offset at which it was captured.

Why this cannot drift: every offset is one measurement against the primary reference,
taken once and never updated, so each reference's error is a single registration error
(bounded, the same for the whole session), never a sum of errors.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from tracking.tracker import DEFAULT_CONTEXT_MM, DEFAULT_SEARCH_MM, TemplateTracker, TrackResult

__all__ = ["MultiReferenceTracker"]

log = logging.getLogger(__name__)


class MultiReferenceTracker:
    """A :class:`TemplateTracker` for each of up to ``max_references`` breathing phases.

    Parameters
    ----------
    reference, target_mask, spacing_mm, context_mm, search_mm, dtype, refine, trust_floor, reacquire_mm
        As for :class:`TemplateTracker`; they define the primary (fixed) reference.
        The best match moves the search window of every reference only when its
        confidence reaches ``trust_floor``; after an untrusted one the next frame is
        searched in the re-acquisition window, around the reference position too
        when nothing is confirmed (as :class:`TemplateTracker` does).
    max_references : int, default 3
        References held at most, the primary included (1 = the fixed reference alone).
    min_separation_mm : float, default 5.0
        A frame becomes a reference only if the target lies at least this far from
        the position of every reference held.
    min_confidence : float, default 0.8
        ... and only if the primary reference matched it with at least this confidence,
        not on the edge of its search window.

    Attributes
    ----------
    offsets_mm : list of (float, float)
        Displacement of the target, relative to the primary reference, on the frame each
        reference was captured from (the primary's is (0, 0)).
    last_reference : int
        Index of the reference whose match was used on the last frame.
    """

    def __init__(
        self,
        reference: np.ndarray,
        target_mask: np.ndarray,
        spacing_mm: tuple[float, float],
        context_mm: float = DEFAULT_CONTEXT_MM,
        search_mm: float = DEFAULT_SEARCH_MM,
        dtype: type[np.floating] | np.dtype = np.float32,
        refine: bool = True,
        max_references: int = 3,
        min_separation_mm: float = 5.0,
        min_confidence: float = 0.8,
        trust_floor: float = 0.5,
        reacquire_mm: float | None = None,
    ) -> None:
        if isinstance(max_references, bool) or not isinstance(max_references, int) or max_references < 1:
            raise ValueError(f"max_references: must be an integer >= 1, got {max_references!r}")
        for name, value, lo, hi in (
            ("min_separation_mm", min_separation_mm, 0.0, math.inf),
            ("min_confidence", min_confidence, 0.0, 1.0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                math.isfinite(value) and lo < value <= hi
            ):
                raise ValueError(f"{name}: must be finite, > {lo:g} and <= {hi:g}, got {value!r}")
        self._kwargs = dict(context_mm=context_mm, search_mm=search_mm, dtype=dtype, refine=refine,
                            trust_floor=trust_floor, reacquire_mm=reacquire_mm)
        primary = TemplateTracker(reference, target_mask, spacing_mm, **self._kwargs)  # type: ignore[arg-type]
        self._trackers = [primary]
        self.offsets_mm: list[tuple[float, float]] = [(0.0, 0.0)]
        self.max_references = max_references
        self.min_separation_mm = float(min_separation_mm)
        self.min_confidence = float(min_confidence)
        self.spacing_mm = primary.spacing_mm
        self.target_mask = primary.target_mask
        self.last_reference = 0
        self._last_mm = (0.0, 0.0)
        self._lost = False

    @property
    def primary(self) -> TemplateTracker:
        """The fixed reference's tracker."""
        return self._trackers[0]

    @property
    def n_references(self) -> int:
        """References held."""
        return len(self._trackers)

    def reset(self) -> None:
        """Forget the last displacement (the next search is centred on the primary's 0);
        the references are kept."""
        self._last_mm = (0.0, 0.0)
        self._lost = False
        for t in self._trackers:
            t.reset()

    def track(self, image: np.ndarray) -> TrackResult:
        """Match every reference, return the best match's displacement from the primary.

        Never raises on the frame's content (see :meth:`TemplateTracker.track`). When no
        reference yields a valid result, the primary's invalid result is returned.
        """
        best, best_j, primary_result = self._match_all(image, self._last_mm, self._lost)
        search_r_mm = self.primary.search_px[0] * self.spacing_mm[0]
        search_c_mm = self.primary.search_px[1] * self.spacing_mm[1]
        if self._lost and not self._confirmed(best) and (
            abs(self._last_mm[0]) > search_r_mm or abs(self._last_mm[1]) > search_c_mm
        ):
            # As TemplateTracker: nothing confirmed around the last confident position;
            # the target may be back near the reference position. The better match wins.
            alt, alt_j, alt_primary = self._match_all(image, (0.0, 0.0), True)
            if alt is not None and (best is None or self._rank(alt) > self._rank(best)):
                best, best_j, primary_result = alt, alt_j, alt_primary
        if best is None:
            self._lost = True
            return primary_result
        off_r, off_c = self.offsets_mm[best_j]
        row_mm = best.row_mm + off_r
        col_mm = best.col_mm + off_c
        # As TemplateTracker: only a confident match moves the window; after an
        # untrusted one the next frame is searched in the re-acquisition window.
        # While re-acquiring, an edge match does not move it either, and no frame
        # becomes a reference.
        was_lost = self._lost
        confident = best.confidence >= self.primary.trust_floor and not (best.unconfirmed or best.inconsistent)
        if confident and not (was_lost and best.at_edge):
            self._last_mm = (row_mm, col_mm)
        self._lost = best.at_edge or not confident
        self.last_reference = best_j
        if not was_lost:
            self._maybe_capture(image, primary_result)
        sr, sc = self.spacing_mm
        return TrackResult(
            row_mm=row_mm,
            col_mm=col_mm,
            row_px=row_mm / sr,
            col_px=col_mm / sc,
            peak_zncc=best.peak_zncc,
            sharpness=best.sharpness,
            confidence=best.confidence,
            at_edge=best.at_edge,
            valid=True,
            reason="",
            unconfirmed=best.unconfirmed,
            inconsistent=best.inconsistent,
            disagreement_mm=best.disagreement_mm,
            target_zncc=best.target_zncc,
        )

    def _match_all(
        self, image: np.ndarray, centre_mm: tuple[float, float], wide: bool
    ) -> tuple[TrackResult | None, int, TrackResult]:
        """Match every reference around ``centre_mm`` (the primary's displacement): the
        best valid match (None if none), its reference index, and the primary's result."""
        best: TrackResult | None = None
        best_j = 0
        primary_result: TrackResult | None = None
        for j, (tracker, (off_r, off_c)) in enumerate(zip(self._trackers, self.offsets_mm)):
            r = tracker.track(image, predicted_mm=(centre_mm[0] - off_r, centre_mm[1] - off_c), wide=wide)
            if j == 0:
                primary_result = r
            if not r.valid:
                continue
            # A peak on the edge is a worse match than any peak inside the window.
            if best is None or self._rank(r) > self._rank(best):
                best, best_j = r, j
        assert primary_result is not None
        return best, best_j, primary_result

    @staticmethod
    def _rank(r: TrackResult) -> tuple[bool, bool, float]:
        return (not r.at_edge and not r.unconfirmed, not r.at_edge, r.peak_zncc)

    def _confirmed(self, r: TrackResult | None) -> bool:
        return r is not None and not r.at_edge and not r.unconfirmed and r.confidence >= self.primary.trust_floor

    def _maybe_capture(self, image: np.ndarray, primary: TrackResult) -> None:
        """Make this frame a reference if the primary vouches for the position and it is a
        new breathing phase. The offset is the primary's own measurement."""
        if len(self._trackers) >= self.max_references:
            return
        if not (primary.valid and not primary.at_edge and primary.confidence >= self.min_confidence):
            return
        pos = (primary.row_mm, primary.col_mm)
        for off in self.offsets_mm:
            if math.hypot(pos[0] - off[0], pos[1] - off[1]) < self.min_separation_mm:
                return
        mask = self.primary.tracked_mask(primary)
        if not mask.any():
            return
        try:
            tracker = TemplateTracker(image, mask, self.spacing_mm, **self._kwargs)  # type: ignore[arg-type]
        except ValueError as exc:  # e.g. the target touches the border: not a usable phase
            log.debug("reference not captured: %s", exc)
            return
        # The new tracker measures displacement of the image content from this frame;
        # the target lay at `pos` from the primary here (sub-pixel). The mask, moved by
        # the rounded displacement, only decides where the template is cut.
        self._trackers.append(tracker)
        self.offsets_mm.append(pos)
        log.info("reference %d captured at (%.2f, %.2f) mm", len(self._trackers) - 1, *pos)
