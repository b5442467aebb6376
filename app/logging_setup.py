"""Log output of every eventide process: human lines (default) or one JSON object per line.

``EVENTIDE_LOG_FORMAT=json`` makes every record a single line
``{"time": "...Z", "level": "info", "logger": "...", "message": "...", <extra fields>}`` on
stderr (stdout stays free for what commands print: topic lists, dead letters as JSON lines).
``extra={...}`` fields of a record become top-level keys; an exception becomes ``"exc"``.

The worker's logging is set up by faust's ``Worker`` (it clears the root handlers first), so it
gets :func:`dict_config` as its ``logging_config``; the API tier and the other commands call
:func:`configure`. Both install :class:`DropProducerBufferNoise`.
"""

from __future__ import annotations

import logging
import logging.config
from datetime import datetime, timezone
from typing import Any

import orjson

HUMAN_FORMAT = "[%(asctime)s] [%(process)d] [%(levelname)s] %(name)s: %(message)s"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines inside values are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc)
                            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_") and key not in doc:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(doc, default=repr,
                            option=orjson.OPT_NON_STR_KEYS).decode()


class DropProducerBufferNoise(logging.Filter):
    """Drops faust's producer-buffer chatter ("producer buffer full size N", "producer flush took
    ...", logged by ``faust.transport.producer`` for its ``ProducerBuffer``). On the embedded broker
    it repeats under load without anything to act on: eventide's own records are produced by
    app/producer.py, not through that buffer. Every other record passes."""

    LOGGER = "faust.transport.producer"
    NOISE = ("producer buffer full", "producer flush took")

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.LOGGER):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to judge
            return True
        return not any(noise in message for noise in self.NOISE)


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def dict_config(*, json: bool, level: str | int = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: one stderr handler, our format, the filter."""
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if json
                                 else {"format": HUMAN_FORMAT})
    return {
        "version": 1,
        # Loggers created at import time (most of ours) must keep working.
        "disable_existing_loggers": False,
        "formatters": {"eventide": formatter},
        "filters": {"producer_buffer_noise": {"()": f"{__name__}.DropProducerBufferNoise"}},
        "handlers": {"eventide": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "eventide",
            "filters": ["producer_buffer_noise"],
        }},
        "root": {"level": _level(level), "handlers": ["eventide"]},
    }


def configure(*, json: bool, level: str | int = "info") -> None:
    """Replace the root logger's handlers with eventide's."""
    logging.config.dictConfig(dict_config(json=json, level=level))
