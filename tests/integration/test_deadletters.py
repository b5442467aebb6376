"""Records no agent can process go to the dead-letter topic with provenance; nothing stalls."""

from __future__ import annotations

import aiohttp
import orjson
import pytest

from app.model import encode_envelope
from app.producer import partition_for
from tests.support.harness import (Deployment, Worker, eventually, produce_raw, read_topic)

pytestmark = pytest.mark.integration


async def test_bad_records_are_dead_lettered_and_the_partition_moves_on(
        deployment: Deployment, worker: Worker) -> None:
    d = deployment
    raw = d.topics.raw_events.name
    partition = partition_for(b"kp", 4)
    good = {"op": "event", "name": "after", "customer": "kp", "data": {}}
    mixed = encode_envelope([{"op": "event", "name": "", "customer": "kp"},
                             {"op": "teleport", "customer": "kp"},
                             {"op": "event", "name": "in-batch", "customer": "kp"}])
    await produce_raw(d.bootstrap, raw, [(b"kp", b"{not json"), (b"kp", b'[1, 2]'),
                                        (b"kp", mixed), (b"kp", orjson.dumps(good))],
                      partition=partition)
    async with aiohttp.ClientSession() as session:
        async def both_good_stored() -> None:
            async with session.get(f"{d.url}/api/v1/customers/kp/activities",
                                   headers=d.app_auth, params={"days": "3650"}) as response:
                assert response.status == 200
                names = sorted(a["name"] for a in (await response.json())["activities"])
                assert names == ["after", "in-batch"]
        await eventually(both_good_stored)

    letters = await read_topic(d.bootstrap, d.topics.deadletter.name, partitions=4)
    assert len(letters) == 4
    by_error = {dict(letter.headers)["error"].decode(): letter for letter in letters}
    headers = [dict(letter.headers) for letter in letters]
    assert all(h["origin.topic"] == raw.encode() for h in headers)
    assert all(h["origin.partition"] == str(partition).encode() for h in headers)
    assert sorted(int(h["origin.offset"]) for h in headers) == [0, 1, 2, 2]
    assert sorted(h.get("origin.index", b"-") for h in headers) == [b"-", b"-", b"0", b"1"]
    assert any(e.startswith("value is not JSON") for e in by_error)
    assert any("unknown action 'teleport'" in e for e in by_error)
    assert any(e.startswith("BadItem: name:") for e in by_error)
    whole = [letter for letter in letters if letter.value == b"{not json"]
    assert len(whole) == 1  # the original bytes are kept for re-submission
