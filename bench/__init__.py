"""End-to-end benchmarks of eventide (``python -m bench.run``)."""
