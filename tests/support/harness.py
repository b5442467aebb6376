"""The tests' name for the shared harness, which lives in the package (``app/testing/harness.py``)
so that bench/ can use it without importing tests/."""

from app.testing.harness import (EVENTIDE, POLL_TIMEOUT, REPO, Deployment, Worker, basic_auth,
                                 dumps, eventually, free_port, items_on, produce_raw, read_topic,
                                 two_workers, wait_healthy)

__all__ = ["EVENTIDE", "POLL_TIMEOUT", "REPO", "Deployment", "Worker", "basic_auth", "dumps",
           "eventually", "free_port", "items_on", "produce_raw", "read_topic", "two_workers",
           "wait_healthy"]
