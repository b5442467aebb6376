"""`eventide up`'s watch on its embedded broker's CPU (app/broker_load.py), on real processes."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from app.broker import EmbeddedBroker
from app.broker_load import LoadWatch, watch_load

pytestmark = pytest.mark.integration


def test_a_process_using_a_whole_core_is_reported_and_the_watch_ends_with_it() -> None:
    busy = subprocess.Popen([sys.executable, "-c",
                             "import time\nend = time.time() + 2.5\nwhile time.time() < end: pass"])
    reported: list[float] = []
    thread = watch_load(busy.pid, reported.append, every_s=0.2,
                        watch=LoadWatch(threshold=0.8, window_s=1.0, repeat_s=60.0))
    busy.wait(10)
    thread.join(5)
    assert not thread.is_alive(), "the watch ends once the process is gone"
    # Once, however long it stayed busy after (repeat_s), and at about one core.
    assert len(reported) == 1
    assert 0.8 <= reported[0] <= 1.2


def test_the_session_broker_is_sampled(broker: EmbeddedBroker) -> None:
    """The embedded broker's own process: its CPU is read from /proc as the watch runs (a
    threshold of 0 reports the first full window, whatever the broker does)."""
    reported: list[float] = []
    stop = threading.Event()
    thread = watch_load(broker.pid, reported.append, every_s=0.1, stop=stop,
                        watch=LoadWatch(threshold=0.0, window_s=0.5, repeat_s=3_600.0))
    try:
        deadline = time.monotonic() + 10
        while not reported and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    assert not thread.is_alive()
    assert len(reported) == 1
    assert 0.0 <= reported[0] <= 2.0
