"""In-memory stand-ins for what the person stage's pure decisions read."""

from __future__ import annotations

from typing import Any, Iterable, Iterator

from app.core.evaluation import Segments
from app.segments import parse_segment
from app.segments.definition import Segment
from app.segments.evaluate import ListSource

NOW = 1_700_000_000


def segment(segment_id: str, match: dict[str, Any], **actions: Any) -> Segment:
    return parse_segment(segment_id, {"name": segment_id, "match": match, **actions})


class Events:
    """A person's stored events (:class:`app.core.evaluation.History`)."""

    def __init__(self, activities: Iterable[dict[str, Any]] = ()) -> None:
        self.activities = list(activities)

    def _source(self) -> ListSource:
        return ListSource(self.activities, {a["name"] for a in self.activities})

    def named(self, name: str, after: float | None) -> Iterator[dict[str, Any]]:
        return self._source().named(name, after)

    def newest(self, name: str, after: float | None) -> Iterator[dict[str, Any]]:
        return self._source().newest(name, after)

    def names(self) -> set[str]:
        return {a["name"] for a in self.activities}

    def size(self) -> int:
        return len(self.activities)

    def all(self) -> list[dict[str, Any]]:
        return list(self.activities)


class Active:
    """Every listed segment active (:class:`app.core.evaluation.ActiveSegments`)."""

    def __init__(self, *segments: Segment) -> None:
        self.by_id = {s.id: s for s in segments}

    def for_event(self, name: str) -> set[str]:
        return {sid for sid, s in self.by_id.items() if name in repr(s.match)}

    def for_attributes(self, names: set[str]) -> set[str]:
        return {sid for sid, s in self.by_id.items() if any(n in repr(s.match) for n in names)}

    def true_when_empty(self) -> set[str]:
        return set()

    def active(self, segment_ids: Iterable[str]) -> Segments:
        return [(sid, self.by_id[sid]) for sid in sorted(segment_ids) if sid in self.by_id]


def activity(name: str, ts: int, event_id: str = "01HZZZZZZZZZZZZZZZZZZZZZZZ") -> dict[str, Any]:
    return {"id": event_id, "name": name, "type": "event", "data": {}, "timestamp": ts,
            "processed_at": ts}
