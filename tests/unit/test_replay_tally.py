"""A replay's tally of the input records its worker read against those in the log (pure)."""

from __future__ import annotations

from collections import Counter

import pytest
from aiokafka import TopicPartition

from app.metrics import render
from app.ops.replay_tally import counters_from, records_in_log, tally, wait_committed_all


def test_counters_are_read_back_from_a_workers_metrics_under_their_own_names() -> None:
    text = render(Counter({"records_committed:p.raw.events": 320,
                           "records_committed:p.raw.anonymous": 2,
                           "deadletters": 1, "verdict:new": 7}), None, {"ready": 1.0})
    counters = counters_from(text)
    assert counters["records_committed:p.raw.events"] == 320
    assert counters["records_committed:p.raw.anonymous"] == 2
    assert counters["deadletters"] == 1 and counters["verdict:new"] == 7
    assert "ready" not in counters  # (a gauge)


def test_records_in_the_log_count_from_each_partitions_start() -> None:
    starts = {TopicPartition("p.raw.events", 0): 0, TopicPartition("p.raw.events", 1): 10,
              TopicPartition("p.raw.anonymous", 0): 5}
    ends = {TopicPartition("p.raw.events", 0): 100, TopicPartition("p.raw.events", 1): 30,
            TopicPartition("p.raw.anonymous", 0): 5}
    assert records_in_log(ends, starts) == {"p.raw.events": 120, "p.raw.anonymous": 0}


def test_a_worker_that_read_fewer_records_than_the_log_holds_is_short_of_them() -> None:
    in_log = {"p.raw.events": 320, "p.raw.identifies": 0, "p.raw.anonymous": 4}
    tallied = tally(in_log, {"records_committed:p.raw.events": 316,
                             "records_committed:p.raw.anonymous": 4,
                             "fetch_gaps": 4, "deadletters": 0})
    assert tallied.short == {"p.raw.events": 4}
    assert tallied.noted == {"fetch_gaps": 4}
    assert tallied.summary("p") == ("input records the replay worker committed: raw.anonymous 4 "
                                    "of 4; raw.events 316 of 320; raw.identifies 0 of 0; "
                                    "fetch_gaps 4")


def test_redeliveries_count_again_and_never_make_a_worker_short() -> None:
    done = tally({"p.raw.events": 320}, {"records_committed:p.raw.events": 335})
    assert done.short == {} and done.noted == {}


P0, P1 = TopicPartition("p.raw.events", 0), TopicPartition("p.raw.events", 1)


def test_the_wait_ends_once_the_worker_committed_every_record_up_to_the_ends() -> None:
    counts = iter([10, 25, 40, 40])
    done = wait_committed_all({P0: 0, P1: 0}, lambda: {P0: 30, P1: 10},
                              lambda: {"records_committed:p.raw.events": next(counts)},
                              stall_s=5, poll_s=0)
    assert done.short == {} and done.committed == {"p.raw.events": 40}


def test_a_worker_whose_count_stops_short_ends_the_wait_short() -> None:
    short = wait_committed_all({P0: 0}, lambda: {P0: 30},
                               lambda: {"records_committed:p.raw.events": 26},
                               stall_s=0.05, poll_s=0.01)
    assert short.short == {"p.raw.events": 4}


def test_an_end_not_known_is_never_taken_for_caught_up() -> None:
    with pytest.raises(TimeoutError):
        wait_committed_all({P0: 0, P1: 0}, lambda: {P0: 30},
                           lambda: {"records_committed:p.raw.events": 30},
                           stall_s=0.05, poll_s=0.01)
