"""Gating decisions: boundary geometry, outside percentage and the gate state machine.

Pure decision logic: no I/O, no clocks (times are passed in).
"""
