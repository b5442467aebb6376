"""Helpers that run eventide for real (workers, a crash schedule) for the tests and the benchmarks.

In the package, not under tests/, so that bench/ can use them without importing tests/."""
