"""``POST /api/v1/segments/preview``: how many people a definition would match now, and who.

Nothing is published: every worker evaluates the definition (:func:`app.segments.evaluate.is_member`,
as the person stage does) for the people of the partitions it owns, reading their stored events
through :class:`app.person_store.PersonEvents` and their attributes from ``profiles``. The work is
bounded: a worker looks at most at :data:`MAX_PEOPLE` people per request (``complete: false`` in
the answer when any worker stopped there; ``count`` is then a lower bound) and lets the event loop
run between slices. The answers of every worker are summed; the sample is the first
:data:`SAMPLE_SIZE` matching ids in the membership listing's order.
"""

from __future__ import annotations

import asyncio
import heapq
from typing import Any, Iterator

import orjson
from aiohttp import web

from app.api import cluster
from app.api.auth import require_app
from app.api.context import runtime
from app.api.bodies import read_body
from app.api.responses import ApiError, json_response
from app.api.segments import MAX_DEFINITION_DEPTH
from app.queries.segments import natural_key
from app.ingest.validate import too_deep
from app.person_store import PersonEvents, StoredTables
from app.runtime import Runtime
from app.segments.definition import DefinitionError, Segment, parse_segment
from app.segments.evaluate import is_member
from app.topics import HISTORY_SIZE, PROFILES

PATH = "/api/v1/segments/preview"
#: People one worker evaluates for one preview.
MAX_PEOPLE = 20_000
SAMPLE_SIZE = 20
#: People evaluated between two yields to the event loop.
_SLICE = 250


def parse_definition(doc: Any) -> Segment:
    """A definition as ``PUT /api/v1/segments/{id}`` takes it (``name`` optional here)."""
    if too_deep(doc, MAX_DEFINITION_DEPTH):
        raise ApiError(400, f"body: a definition nests deeper than {MAX_DEFINITION_DEPTH} "
                            "levels")
    if isinstance(doc, dict) and "name" not in doc:
        doc = {**doc, "name": "preview"}
    try:
        return parse_segment("preview", doc)
    except DefinitionError as exc:
        raise ApiError(400, *(str(error) for error in exc.errors)) from None


def _people(tables: dict[str, Any], partition: int) -> Iterator[str]:
    """Everyone with a profile or stored events in a partition, in key order, once each."""
    last = None
    for person in heapq.merge(tables[PROFILES].store(partition).keys(),
                              tables[HISTORY_SIZE].store(partition).keys()):
        if person != last:
            yield person
            last = person


async def count_matches(tables: dict[str, Any], partitions: list[int], segment: Segment,
                        now_s: int, *, max_people: int = MAX_PEOPLE,
                        sample_size: int = SAMPLE_SIZE) -> dict[str, Any]:
    """This worker's share: matches among (at most ``max_people``) people of ``partitions``."""
    source = StoredTables(tables)
    count = scanned = 0
    sample: list[str] = []
    complete = True
    for partition in partitions:
        # Read the ids first (a slice at a time would hold an iterator across awaits while the
        # partition may be revoked and its store closed).
        people = []
        for person in _people(tables, partition):
            if scanned + len(people) >= max_people:
                complete = False
                break
            people.append(person)
        for n, person in enumerate(people, 1):
            scanned += 1
            profile = tables[PROFILES].get(partition, person)
            if profile is not None and (profile.get("merged_into") or profile.get("deleted")):
                continue
            attributes = profile.get("attributes", {}) if profile else {}
            if is_member(segment, PersonEvents(source, partition, person), attributes, now_s):
                count += 1
                sample = heapq.nsmallest(sample_size, [*sample, person], key=natural_key)
            if n % _SLICE == 0:
                await asyncio.sleep(0)
        if not complete:
            break
    return {"count": count, "sample": sample, "scanned": scanned, "complete": complete}


def combine(answers: list[dict[str, Any]], sample_size: int = SAMPLE_SIZE) -> dict[str, Any]:
    people = {person for answer in answers for person in answer["sample"]}
    return {"count": sum(a["count"] for a in answers),
            "sample": heapq.nsmallest(sample_size, people, key=natural_key),
            "scanned": sum(a["scanned"] for a in answers),
            "complete": all(a["complete"] for a in answers),
            "max_people_per_worker": MAX_PEOPLE}


async def preview(rt: Runtime, request: web.Request, doc: Any) -> dict[str, Any]:
    """The cluster's answer for the definition ``doc`` (a peer's request: its own share)."""
    segment = parse_definition(doc)
    topic = rt.topics.person_events
    owned = cluster.owned_partitions(rt, topic.name, topic.partitions)
    answers = [await count_matches(rt.state.tables, owned, segment, int(rt.clock.now()))]
    answers += await cluster.gather(request, rt, PATH, body=orjson.dumps(doc))
    return combine(answers)


async def segment_preview(request: web.Request) -> web.Response:
    rt = runtime(request)
    require_app(request, rt.settings)
    doc = await read_body(request, rt.settings.max_body_bytes)
    return json_response(await preview(rt, request, doc))


ROUTES = [web.post(PATH, segment_preview)]
