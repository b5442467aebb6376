"""When `eventide up` says its embedded broker is running out of CPU (app/broker_load.py)."""

from __future__ import annotations

from app.broker_load import LoadWatch


def feed(watch: LoadWatch, share: float, *, start_s: float, until_s: float, cpu_s: float,
         every_s: float = 10.0) -> tuple[list[tuple[float, float]], float]:
    """Samples every ``every_s`` from ``start_s`` to ``until_s`` of a process using ``share`` of
    a core; the warnings given (time, share) and the CPU seconds reached."""
    warnings = []
    at = start_s
    while at <= until_s:
        found = watch.observe(at, cpu_s)
        if found is not None:
            warnings.append((at, round(found, 3)))
        at += every_s
        cpu_s += share * every_s
    return warnings, cpu_s


def test_a_broker_under_the_threshold_is_never_reported() -> None:
    watch = LoadWatch(threshold=0.8, window_s=60, repeat_s=600)
    warnings, _ = feed(watch, 0.79, start_s=0, until_s=3_600, cpu_s=5.0)
    assert warnings == []


def test_a_busy_broker_is_reported_once_its_window_is_full_and_then_every_repeat() -> None:
    watch = LoadWatch(threshold=0.8, window_s=60, repeat_s=600)
    warnings, _ = feed(watch, 0.9, start_s=0, until_s=1_300, cpu_s=0.0)
    # Not before a whole minute was seen; then once per repeat interval.
    assert warnings == [(60, 0.9), (660, 0.9), (1_260, 0.9)]


def test_only_the_last_minute_counts() -> None:
    watch = LoadWatch(threshold=0.8, window_s=60, repeat_s=600)
    # Ten idle minutes, then the broker gets busy from 600 s on: reported within a minute of
    # it (at 660 s the last minute was 50 s busy and 10 s idle), not diluted by the idle time
    # before.
    warnings, cpu_s = feed(watch, 0.05, start_s=0, until_s=600, cpu_s=0.0)
    assert warnings == []
    warnings, _ = feed(watch, 1.0, start_s=610, until_s=700, cpu_s=cpu_s)
    assert warnings == [(660, round((50 + 10 * 0.05) / 60, 3))]


def test_a_short_burst_is_not_reported() -> None:
    watch = LoadWatch(threshold=0.8, window_s=60, repeat_s=600)
    warnings, cpu_s = feed(watch, 0.1, start_s=0, until_s=120, cpu_s=0.0)
    warnings2, cpu_s = feed(watch, 1.0, start_s=130, until_s=150, cpu_s=cpu_s)  # 30 s busy
    warnings3, _ = feed(watch, 0.1, start_s=160, until_s=400, cpu_s=cpu_s)
    assert warnings + warnings2 + warnings3 == []
