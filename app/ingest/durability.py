"""What an accepted record waits for after the broker's acknowledgement, in every process that
answers the track API: a ``200`` means the record is on stable storage.

Against Kafka the acknowledgement (``acks=all``) is that. In embedded mode it is the input log's
flush: the process that owns the input log (``eventide up``'s worker) waits on it directly; any
other process of the instance (workers 2..N, an ``eventide api`` tier) waits until the durable
offsets the owner publishes pass its records.
"""

from __future__ import annotations

from app.ingest.batcher import Durability
from app.ops import replay
from app.ops.durable_offsets import DURABLE_OFFSETS, DurableFollower
from app.ops.input_log import InputLog, slots_of
from app.settings import Settings
from app.topics import Topics


def durability_of(settings: Settings, topics: Topics,
                  input_log: InputLog | None = None) -> Durability | None:
    """The wait after the broker's acknowledgement, or None when that acknowledgement is the
    promise (Kafka, or ``EVENTIDE_ACK_ON_DISK=0``)."""
    if not settings.ack_on_disk:
        return None
    if input_log is not None:
        return input_log.wait
    if settings.input_log_dir is not None:
        return DurableFollower(settings.input_log_dir / DURABLE_OFFSETS,
                               slots_of(replay.inputs(topics))).wait
    return None
