"""The event loop eventide's long-running processes (a worker, the ingest tier) run on.

uvloop by default: a worker handles every Kafka record through the event loop (faust's consumer
thread hands each fetch over with ``call_soon_threadsafe``, and every produce, acknowledgement,
timer and socket read is a loop callback). On the peers' job, one event per record, a worker
on uvloop spent a few percent less CPU an item than on asyncio's loop; jobs of larger records
showed no difference (figures in docs/performance.md, "The worker on uvloop").
``EVENTIDE_EVENT_LOOP=asyncio`` keeps the standard library's loop, for its debug mode
(``PYTHONASYNCIODEBUG=1``) or a platform uvloop does not build on.

Nothing in eventide depends on which loop runs it: both run callbacks in the order they were
scheduled, and no decision reads the loop's timing.
"""

from __future__ import annotations

import asyncio

from app.settings import StartupError


def install(choice: str) -> None:
    """Make ``choice`` the loop every later ``asyncio.run`` / ``new_event_loop`` creates (faust's
    worker and its consumer thread included). Call before anything creates a loop."""
    if choice == "asyncio":
        asyncio.set_event_loop_policy(None)
        return
    try:
        import uvloop
    except ImportError:
        raise StartupError("EVENTIDE_EVENT_LOOP=uvloop but uvloop is not installed "
                           "(pip install uvloop), or set EVENTIDE_EVENT_LOOP=asyncio") from None
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def running() -> str:
    """The name of the loop running the caller: ``uvloop`` or ``asyncio``."""
    return "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") \
        else "asyncio"
