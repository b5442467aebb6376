"""``eventide worker`` whose people agent loses the first ``raw.events`` record it is handed
(taken from its inbox, never processed, no seek after it), as a record dropped by a bug would
be lost: faust, with nothing committed for the partition yet, would commit past it
(tests/integration/test_unit_failures.py)."""

from __future__ import annotations

import sys
from typing import Any

from app import bulk_fetch
from app.cli import main

_take = bulk_fetch.Inbox.take
_dropped: list[Any] = []


async def _take_dropping_one(self: bulk_fetch.Inbox, limit: int) -> list[Any]:
    messages = await _take(self, limit)
    if not _dropped:
        for message in messages:
            if message.topic.endswith(".raw.events"):
                _dropped.append(message)
                print(f"test: dropped {message.topic}[{message.partition}]@{message.offset}",
                      flush=True)
                return [m for m in messages if m is not message]
    return messages


bulk_fetch.Inbox.take = _take_dropping_one  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(main(["worker"]))
