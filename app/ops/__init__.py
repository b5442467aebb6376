"""Operator tools that work on the log itself: digest, replay, the embedded mode's input log, dead letters."""
