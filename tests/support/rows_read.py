"""The rows a partition store's range yields, counted: what a unit of work read, whatever the
caller did with it."""

from __future__ import annotations

from typing import Any, Iterator

from tables.store import PartitionStore


class RowsRead:
    """Wraps each store's ``range`` (on the instance); ``count`` is the rows yielded since."""

    def __init__(self, *stores: PartitionStore) -> None:
        self.count = 0
        for store in stores:
            store.range = self._counting(store.range)  # type: ignore[method-assign]

    def _counting(self, stored_range: Any) -> Any:
        def counting(start: str, stop: str, *, reverse: bool = False
                     ) -> Iterator[tuple[str, Any]]:
            for row in stored_range(start, stop, reverse=reverse):
                self.count += 1
                yield row
        return counting
