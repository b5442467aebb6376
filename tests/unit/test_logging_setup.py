"""Structured logs: the JSON formatter, the producer-buffer noise filter, the dictConfig."""

from __future__ import annotations

import io
import logging
import logging.config
import sys
from datetime import datetime

import orjson
import pytest

from app.logging_setup import (MAX_MESSAGE_CHARS, QUIET_LIBRARIES, DropProducerBufferNoise,
                               JsonFormatter, dict_config)


@pytest.fixture(autouse=True)
def library_levels():
    """dictConfig sets the quiet libraries' levels process-wide: put them back."""
    saved = {name: logging.getLogger(name).level for name in QUIET_LIBRARIES}
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def record(name: str = "eventide.test", level: int = logging.INFO, msg: str = "hello %s",
           args: tuple = ("world",), exc_info=None, **extra: object) -> logging.LogRecord:
    made = logging.getLogger(name).makeRecord(name, level, __file__, 10, msg, args, exc_info,
                                              extra=extra or None)
    return made


def test_json_line_has_time_level_logger_message_and_extras() -> None:
    line = JsonFormatter().format(record(topic="t.raw", partition=3, data={"k": [1, 2]}))
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "info"
    assert doc["logger"] == "eventide.test"
    assert doc["message"] == "hello world"
    assert doc["time"].endswith("Z")
    datetime.fromisoformat(doc["time"].replace("Z", "+00:00"))
    assert doc["topic"] == "t.raw" and doc["partition"] == 3 and doc["data"] == {"k": [1, 2]}
    # Nothing of the LogRecord's own bookkeeping leaks in.
    assert not {"args", "msg", "levelno", "pathname", "lineno", "created"} & set(doc)


def test_json_keeps_multiline_messages_and_exceptions_on_one_line() -> None:
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        made = record(level=logging.ERROR, msg="failed:\n%s", args=("details",),
                      exc_info=sys.exc_info())
    line = JsonFormatter().format(made)
    assert "\n" not in line
    doc = orjson.loads(line)
    assert doc["level"] == "error"
    assert doc["message"] == "failed:\ndetails"
    assert "ValueError: boom" in doc["exc"] and "Traceback" in doc["exc"]


def test_values_json_cannot_encode_are_shown_with_repr() -> None:
    class Thing:
        def __repr__(self) -> str:
            return "<thing>"

    doc = orjson.loads(JsonFormatter().format(record(thing=Thing(), keys={1: "a"})))
    assert doc["thing"] == "<thing>"
    assert doc["keys"] == {"1": "a"}


@pytest.mark.parametrize("message", ["producer buffer full size 101",
                                     "producer flush took 0.012"])
def test_the_filter_drops_faust_producer_buffer_noise(message: str) -> None:
    noise = record("faust.transport.producer", logging.WARNING, message, ())
    assert DropProducerBufferNoise().filter(noise) is False


def test_the_filter_keeps_everything_else() -> None:
    keep = DropProducerBufferNoise().filter
    assert keep(record("faust.transport.producer", logging.ERROR, "send failed: %r", (1,)))
    assert keep(record("app.runtime", logging.WARNING, "producer buffer full size 3", ()))
    assert keep(record("faust.transport.consumer", logging.INFO, "anything", ()))


@pytest.mark.parametrize("json", [True, False])
def test_dict_config_writes_one_line_per_record_and_filters(json: bool,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    existing = logging.getLogger("eventide.created.before")
    try:
        logging.config.dictConfig(dict_config(json=json, level="info"))
        existing.info("still logs", extra={"n": 1})
        logging.getLogger("faust.transport.producer").warning("producer buffer full size 500")
        logging.getLogger("eventide.x").debug("below the level")
        logging.getLogger("eventide.x").warning("kept %d", 2)
    finally:
        root.handlers[:], root.level = saved
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, lines
    if json:
        docs = [orjson.loads(line) for line in lines]
        assert [d["message"] for d in docs] == ["still logs", "kept 2"]
        assert docs[0]["n"] == 1 and docs[0]["logger"] == "eventide.created.before"
        assert docs[1]["level"] == "warning"
    else:
        assert "INFO" in lines[0] and "eventide.created.before: still logs" in lines[0]
        assert "WARNING" in lines[1] and lines[1].endswith("kept 2")


def test_faust_worker_logging_accepts_the_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """mode's setup_logging (what faust's Worker calls) with eventide's dict: our handler only."""
    from mode.utils.logging import setup_logging

    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        setup_logging(loglevel="info", logging_config=dict_config(json=True, level="info"))
        assert len(root.handlers) == 1
        logging.getLogger("faust.worker").info("[^Worker]: Starting...")
        logging.getLogger("faust.worker").warning("lost the group")
        logging.getLogger("faust.transport.producer").warning("producer buffer full size 9")
    finally:
        root.handlers[:], root.level = saved
    [line] = stream.getvalue().splitlines()
    assert orjson.loads(line)["message"] == "lost the group"


def _lines_logged(level: str, emit) -> list[str]:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    handler_stream = sys.stderr
    try:
        sys.stderr = stream
        logging.config.dictConfig(dict_config(json=False, level=level))
        emit()
    finally:
        sys.stderr = handler_stream
        root.handlers[:], root.level = saved
    return stream.getvalue().splitlines()


def test_default_level_is_quiet_about_routine_library_and_lifecycle_lines() -> None:
    def emit() -> None:
        logging.getLogger("aiokafka.consumer.subscription_state").info(
            "Updating subscribed topics to: %s", frozenset({"eventide.raw.events"}))
        logging.getLogger("aiokafka.consumer.group_coordinator").info(
            "Setting newly assigned partitions %s", set(range(500)))
        logging.getLogger("faust.tables.recovery").info("[^---Recovery]: Worker ready")
        logging.getLogger("app.wiring").info("[^-EventideApp]: Starting...")
        logging.getLogger("app.api.server").info("HTTP API listening on %s", "http://x")
        logging.getLogger("aiokafka.consumer.group_coordinator").warning("heartbeat failed")
        logging.getLogger("app.wiring").warning("[^-EventideApp]: crashed")
    lines = _lines_logged("info", emit)
    assert len(lines) == 3, lines
    assert lines[0].endswith("HTTP API listening on http://x")
    assert lines[1].endswith("heartbeat failed") and lines[2].endswith("crashed")


def test_debug_level_shows_everything() -> None:
    def emit() -> None:
        logging.getLogger("aiokafka.consumer.subscription_state").info("Updating subscribed")
        logging.getLogger("app.wiring").info("[^-EventideApp]: Starting...")
    assert len(_lines_logged("debug", emit)) == 2


def test_no_line_carries_a_multi_kilobyte_message() -> None:
    def emit() -> None:
        logging.getLogger("app.x").warning("assigned %s", ",".join(str(i) for i in range(3000)))
    [line] = _lines_logged("info", emit)
    assert len(line) < MAX_MESSAGE_CHARS + 200
    assert line.endswith("more characters)")
