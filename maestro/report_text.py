"""The short text summary ``maestro replay`` prints."""

from __future__ import annotations

from maestro.recording import SessionRecorder
from maestro.session import SessionSummary


def format_summary(source: str, summary: SessionSummary, recorder: SessionRecorder | None = None) -> str:
    """Format a session summary as a few aligned lines for a terminal."""
    lines = [f"source            {source}"]
    lines.append(f"frames            {summary.frames}  ({summary.stopped_by})")
    lines.append(
        f"beam on           {100.0 * summary.beam_on_fraction:.1f} % of frames "
        f"({summary.beam_on_frames} of {summary.frames})"
    )
    if summary.hold_frames_by_reason:
        parts = []
        for reason, n_frames in sorted(summary.hold_frames_by_reason.items(), key=lambda kv: -kv[1]):
            n_events = summary.hold_events_by_reason.get(reason)
            events = f" in {n_events} hold{'s' if n_events != 1 else ''}" if n_events else ""
            parts.append(f"{reason} {n_frames} frame{'s' if n_frames != 1 else ''}{events}")
        lines.append("holds by reason   " + "; ".join(parts))
    else:
        lines.append("holds by reason   none")
    err = summary.error_mm
    if err:
        lines.append(
            f"tracking error    mean {err['mean']:.2f} mm  p95 {err['p95']:.2f} mm  max {err['max']:.2f} mm"
            f"  (centroid vs label, {int(err['n'])} frames, frame 0 excluded)"
        )
    elif summary.frames <= 1:
        lines.append("tracking error    none measured: only the reference frame was decided")
    else:
        lines.append("tracking error    no per-frame labels in this recording")
    lat = summary.latency_us
    if lat:
        lines.append(
            f"latency           p50 {lat['p50']:.0f} us  p99 {lat['p99']:.0f} us  max {lat['max']:.0f} us"
            "  (frame received -> beam command, frame 0 excluded)"
        )
    if recorder is not None:
        lines.append(f"recording         {recorder.frames_path}  {recorder.session_path}")
    return "\n".join(lines)
