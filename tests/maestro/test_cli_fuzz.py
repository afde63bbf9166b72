"""The CLI's option values, fuzzed: a value is accepted only when it obeys its rule, and
anything else is refused by argparse (exit 2) — never a traceback."""

from __future__ import annotations

import contextlib
import io
import math
import os

from hypothesis import given, settings
from hypothesis import strategies as st

from maestro.cli import build_parser

N_EXAMPLES = int(os.environ.get("MAESTRO_FUZZ_EXAMPLES", "300"))

numberish = st.one_of(
    st.text(max_size=12),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(10**6), 10**6).map(str),
    st.lists(st.integers(-50, 300).map(str), min_size=0, max_size=6).map(",".join),
)

RULES = {
    "--margin-mm": lambda v: math.isfinite(v) and v >= 0,
    "--threshold-pct": lambda v: math.isfinite(v) and 0 <= v <= 100,
    "--confidence-floor": lambda v: math.isfinite(v) and 0 <= v <= 1,
    "--beam-on-delay-ms": lambda v: math.isfinite(v) and v >= 0,
    "--beam-on-delay-frames": lambda v: isinstance(v, int) and v >= 0,
    "--max-frame-age-ms": lambda v: math.isfinite(v) and v > 0,
    "--search-mm": lambda v: math.isfinite(v) and v > 0,
    "--fps": lambda v: math.isfinite(v) and v > 0,
    "--spacing-mm": lambda v: len(v) == 2 and all(math.isfinite(x) and x > 0 for x in v),
    "--target-box": lambda v: len(v) == 4 and v[2] > 0 and v[3] > 0,
    "--max-frames": lambda v: isinstance(v, int) and v >= 1,
}


@settings(max_examples=N_EXAMPLES, deadline=None)
@given(option=st.sampled_from(sorted(RULES)), text=numberish)
def test_option_value_accepted_only_when_valid(option: str, text: str) -> None:
    parser = build_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            args = parser.parse_args(["replay", f"{option}={text}"])
    except SystemExit as exc:
        assert exc.code == 2
        assert "Traceback" not in err.getvalue()
        assert option in err.getvalue()
        return
    value = getattr(args, option.lstrip("-").replace("-", "_"))
    assert RULES[option](value), (option, text, value)
