"""Operator tools that work on the log itself: digest, replay, durable log archive, dead letters."""
