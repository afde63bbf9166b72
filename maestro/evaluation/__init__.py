"""Evaluation: how well a session tracked and gated, measured against the truth.

Off the decision path, between the application and the libraries: the session, the
commands and :mod:`maestro.validation` use it; it imports the libraries and
:mod:`maestro.recording` (the frame record it reads), nothing else of the application.

- :mod:`~maestro.evaluation.masks`: masks compared and moved (Dice, the agreement with a
  reference contour, a mask moved by a sub-pixel displacement with bilinear
  interpolation), and the checks of a mask and a pixel spacing; the one centroid is
  :func:`gating.centroid.mask_centroid_px`, which the decision path uses too;
- :mod:`~maestro.evaluation.trackrad_metrics`: the TrackRAD2025 tracking metrics (Dice,
  HD95, mean surface distance, centroid distance, relative D98) on 1 mm grids;
- :mod:`~maestro.evaluation.gating_metrics`: the true outside percentage of a label, the
  beam timeline, gating accuracy, ITV versus gating;
- :mod:`~maestro.evaluation.tracked_labels`: the tracked masks of a session
  (``maestro replay --labels-out``);
- :mod:`~maestro.evaluation.reference_agreement`: the tracking against the console's
  reference contours, frame by frame.
"""
