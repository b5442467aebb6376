"""bench.beside's pure parts: reading the runs' outputs, the ratios to the neighbouring Quix runs
and the verdict against each bar."""

from __future__ import annotations

import json

import pytest

from bench import beside


def quix(rate: float, exact: bool = True) -> dict:
    return {"impl": "A", "done": True, "events_per_s": rate, "exact": exact}


def test_the_results_file_is_the_last_one_bench_run_names() -> None:
    output = ("| load avg | 0.06 / 0.64 |\n\nresults: bench/results/20261204-095522.json\n"
              "results: bench/results/20261204-095739.json\n")
    assert beside.results_path(output) == "bench/results/20261204-095739.json"
    assert beside.results_path("Traceback (most recent call last):\n") is None


def test_the_newest_quix_line_is_read_and_other_implementations_are_skipped() -> None:
    lines = [json.dumps(quix(9_000)), json.dumps(quix(11_000)),
             json.dumps({"impl": "B", "events_per_s": 2_000}), "A_quixstreams 11000 exact=yes"]
    assert beside.quix_line("\n".join(lines))["events_per_s"] == 11_000
    assert beside.quix_line(json.dumps({"impl": "C"})) is None


def test_ratios_are_to_each_exact_neighbour_low_first() -> None:
    assert beside.ratios("peers", 10_000, quix(11_000), quix(9_500)) == [0.91, 1.05]
    assert beside.ratios("http", 10_000, quix(11_000), quix(20_000, exact=False)) == [0.91]
    assert beside.ratios("peers", 10_000, None, quix(10_000)) == [1.0]
    assert beside.ratios("peers", None, quix(11_000), quix(9_500)) == []


def test_a_job_with_a_rate_bar_of_its_own_is_not_quoted_against_the_peers_job() -> None:
    assert beside.ratios("segments", 4_300, quix(10_437), quix(9_703)) == []


@pytest.mark.parametrize("job,figures,found,expected", [
    ("peers", {"exact": True}, [1.02, 1.3], "met"),
    ("peers", {"exact": True}, [0.91, 1.05], "met beside one Quix run"),
    ("http", {"exact": True}, [0.86, 0.87], "missed"),
    ("http", {"exact": True}, [], "no Quix run to compare"),
    ("peers", {"exact": False}, [1.5, 1.6], "not exact"),
    ("segments", {"exact": True, "items_per_s": 4_279}, [], "missed (bar 12,000/s)"),
    ("segments", {"exact": True, "items_per_s": 12_500}, [], "met"),
])
def test_the_verdict_is_against_the_jobs_own_bar(job: str, figures: dict, found: list,
                                                 expected: str) -> None:
    assert beside.verdict(job, figures, found) == expected


def test_a_bench_run_results_file_gives_the_figures_the_table_quotes() -> None:
    results = {"runs": [{"events_per_s": 10005.5, "worker_cpu_us_per_event": 107.0,
                         "worker_main_thread_us_per_event": 88.4,
                         "peak_rss_bytes": 292_552_704, "worst_stall_s": 0.116, "exact": True,
                         "http_p99_s": None, "host_steal_s": 0.01}]}
    assert beside.eventide_figures(results) == {
        "items_per_s": 10005.5, "cpu_us_per_item": 107.0, "loop_cpu_us_per_item": 88.4,
        "peak_rss_mb": 279,
        "worst_stall_s": 0.116, "exact": True, "client_p99_s": None, "host_steal_s": 0.01}


def test_every_job_runs_the_workload_of_the_peers_job_or_the_segments_bar() -> None:
    for job in ("peers", "http"):
        args = beside.JOBS[job]
        assert args[args.index("--events") + 1] == "200000"
        assert args[args.index("--people") + 1] == "20000"
        assert args[args.index("--dup-ratio") + 1] == "0.05"
    assert "--single-records" in beside.JOBS["peers"]
    assert "--ingest-tier" in beside.JOBS["http"]
    assert beside.JOBS["segments"][beside.JOBS["segments"].index("--segments") + 1] == "1000"
