"""Log output of every eventide process: human lines (default) or one JSON object per line.

``EVENTIDE_LOG_FORMAT=json`` makes every record a single line
``{"time": "...Z", "level": "info", "logger": "...", "message": "...", <extra fields>}`` on
stderr (stdout stays free for what commands print: topic lists, dead letters as JSON lines).
``extra={...}`` fields of a record become top-level keys; an exception becomes ``"exc"``.

The worker's logging is set up by faust's ``Worker`` (it clears the root handlers first), so it
gets :func:`dict_config` as its ``logging_config``; the API tier and the other commands call
:func:`configure`. Both install :class:`DropProducerBufferNoise` and :class:`TruncateLongMessages`
and, below debug level, keep the default output to what an operator acts on: kafka/faust/mode
libraries at WARNING (:data:`QUIET_LIBRARIES`) and no service lifecycle lines
(:class:`DropServiceLifecycle`).
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


class DropServiceLifecycle(logging.Filter):
    """Drops the INFO lines mode services log about their own lifecycle ("[^--Consumer]:
    Starting...", "[^Worker]: Ready", "[^-EventideApp]: Flush producer buffer..."): some fifty at
    every start and stop, from faust's services and from eventide's own (the app, the web
    server), which bury what matters. Warnings and errors of the same services pass, and so does
    everything at ``EVENTIDE_LOG_LEVEL=debug`` (the filter is not installed then)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.msg if isinstance(record.msg, str) else ""
        return not message.startswith("[^")


class TruncateLongMessages(logging.Filter):
    """Cuts a message longer than :data:`MAX_MESSAGE_CHARS` (a partition set, a whole
    subscription) to that length, saying how much was left out. Tracebacks are not cut."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to judge
            return True
        if len(message) > MAX_MESSAGE_CHARS:
            record.msg = (f"{message[:MAX_MESSAGE_CHARS]}… "
                          f"({len(message) - MAX_MESSAGE_CHARS} more characters)")
            record.args = ()
        return True


#: Longest message a log line carries (characters).
MAX_MESSAGE_CHARS = 1000

#: Libraries whose INFO lines are routine at every start, rebalance and subscription change
#: ("Updating subscribed topics to: frozenset({...})", "Setting newly assigned partitions {...}",
#: "Executing _on_partitions_assigned"): WARNING and above only, unless the level is debug.
QUIET_LIBRARIES = ("aiokafka", "faust", "mode", "kafka")


def _level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    number = logging.getLevelName(level.upper())
    return number if isinstance(number, int) else logging.INFO


def dict_config(*, json: bool, level: str | int = "info") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` document: one stderr handler, our format, the filter."""
    formatter: dict[str, Any] = ({"()": f"{__name__}.JsonFormatter"} if json
                                 else {"format": HUMAN_FORMAT})
    debug = _level(level) <= logging.DEBUG
    filters = ["producer_buffer_noise", "long_messages"] + ([] if debug else ["lifecycle"])
    return {
        "version": 1,
        # Loggers created at import time (most of ours) must keep working.
        "disable_existing_loggers": False,
        "formatters": {"eventide": formatter},
        "filters": {"producer_buffer_noise": {"()": f"{__name__}.DropProducerBufferNoise"},
                    "lifecycle": {"()": f"{__name__}.DropServiceLifecycle"},
                    "long_messages": {"()": f"{__name__}.TruncateLongMessages"}},
        "handlers": {"eventide": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "eventide",
            "filters": filters,
        }},
        # NOTSET at debug: a level set by an earlier configuration is cleared.
        "loggers": {name: {"level": "NOTSET" if debug else
                           logging.getLevelName(max(_level(level), logging.WARNING))}
                    for name in QUIET_LIBRARIES},
        "root": {"level": _level(level), "handlers": ["eventide"]},
    }


def configure(*, json: bool, level: str | int = "info") -> None:
    """Replace the root logger's handlers with eventide's."""
    logging.config.dictConfig(dict_config(json=json, level=level))
