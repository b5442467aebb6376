"""Listing dead letters, and re-submitting fixed ones to the topic they came from."""

from __future__ import annotations

import base64
from typing import Any, Iterable

import orjson
from aiokafka import AIOKafkaProducer

from app.ops.topics_io import read_topic
from app.kafka_clients import kafka_client_options
from app.settings import Settings
from app.topics import build_topics


def _text(value: bytes | None) -> dict[str, Any]:
    if value is None:
        return {"value": None}
    try:
        return {"value": value.decode()}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode()}


async def list_letters(settings: Settings) -> list[dict[str, Any]]:
    topics = build_topics(settings)
    spec = topics.deadletter
    letters = []
    async for batch in read_topic(settings.bootstrap_servers, spec.name, spec.partitions,
                                  kafka_client_options(settings)):
        for record in batch:
            headers = {k: v.decode(errors="replace") for k, v in record.headers}
            letters.append({
                "deadletter": f"{record.topic}[{record.partition}]@{record.offset}",
                "origin_topic": headers.get("origin.topic"),
                "origin_partition": int(headers.get("origin.partition", -1)),
                "origin_offset": int(headers.get("origin.offset", -1)),
                "origin_index": (int(headers["origin.index"]) if "origin.index" in headers
                                 else None),
                "error": headers.get("error"),
                "key": record.key.decode(errors="replace") if record.key else None,
                **_text(record.value),
            })
    return letters


async def resubmit(settings: Settings, letters: Iterable[dict[str, Any]]) -> int:
    """Produce each (fixed) letter's value to its origin topic; only input topics are allowed.

    A letter that was one item of a batch record holds that item; it is re-sent as a record of
    its own (a bare item is a valid record).
    """
    topics = build_topics(settings)
    allowed = {spec.name for spec in topics.raw}
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                **kafka_client_options(settings))
    await producer.start()
    sent = 0
    try:
        for letter in letters:
            topic = letter.get("origin_topic")
            if topic not in allowed:
                raise ValueError(f"{letter.get('deadletter')}: origin topic {topic!r} is not an "
                                 "input topic; only raw topics can be re-submitted")
            value = letter.get("value")
            if value is None and letter.get("value_base64"):
                value = base64.b64decode(letter["value_base64"]).decode()
            if isinstance(value, (dict, list)):
                value = orjson.dumps(value).decode()
            key = letter.get("key")
            await producer.send_and_wait(topic, (value or "").encode(),
                                         key=key.encode() if key else None)
            sent += 1
    finally:
        await producer.stop()
    return sent
