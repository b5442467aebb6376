"""The pipeline benchmark's table of results and where its JSON goes."""

from __future__ import annotations

from pathlib import Path
from typing import Any






RESULTS_DIR = Path(__file__).resolve().parent / "results"


def fmt_mb(value: Any) -> str:
    return "-" if value is None else f"{value / 1e6:,.0f} MB"


def fmt_ms(value: Any) -> str:
    return "-" if value is None else f"{value * 1000:,.1f} ms"


def fmt_n(value: Any, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _recovery(r: dict[str, Any], key: str, render: Any) -> str:
    recovery = r.get("recovery")
    return "-" if not recovery or recovery.get(key) is None else render(recovery[key])


ROWS: list[tuple[str, Any]] = [
    ("workers", lambda r: fmt_n(r.get("workers", 1))),
    ("items sent (incl. resends)", lambda r: fmt_n(r.get("events"))),
    ("of which identifies", lambda r: fmt_n(r.get("identifies"))),
    ("people", lambda r: fmt_n(r.get("people"))),
    ("raw write rate", lambda r: "-" if r["mode"] != "raw"
        else "as fast as possible" if not r.get("rate") else f"{r['rate']:,.0f} events/s"),
    ("raw / person records consumed", lambda r: f"{fmt_n(r.get('raw_records_in'))} / "
                                                f"{fmt_n(r.get('person_records_in'))}"),
    ("HTTP clients", lambda r: fmt_n(r.get("concurrency"))),
    ("load time", lambda r: fmt_n(r.get("load_s"), 2) + " s"),
    ("accepted requests/s", lambda r: fmt_n(r.get("accepted_per_s"))),
    ("HTTP latency p50 / p99 (client)",
     lambda r: "-" if r["mode"] != "http" else f"{fmt_ms(r.get('http_p50_s'))} / "
                                                f"{fmt_ms(r.get('http_p99_s'))}"),
    ("first send -> all verdicts counted", lambda r: fmt_n(r.get("verdicts_counted_s"), 2) + " s"),
    ("first send -> all committed", lambda r: fmt_n(r.get("e2e_s"), 2) + " s"),
    ("END-TO-END items/s", lambda r: fmt_n(r.get("events_per_s"))),
    ("unique items processed", lambda r: f"{fmt_n(r.get('processed_new'))} / "
                                         f"{fmt_n(r.get('expected_new'))}"),
    ("duplicates dropped / resent", lambda r: f"{fmt_n(r.get('duplicates_dropped'))} / "
                                              f"{fmt_n(r.get('expected_duplicates'))}"),
    ("commit retries, per worker",
     lambda r: ", ".join(fmt_n(f["commit_retries"]) for f in r.get("worker_log_findings") or [])),
    ("longest event-loop stall (timer drift)",
     lambda r: ", ".join(fmt_n(f["max_timer_drift_s"], 1) + " s"
                         for f in r.get("worker_log_findings") or [])),
    ("dead letters", lambda r: fmt_n(r.get("deadletters"))),
    ("each item processed exactly once", lambda r: "yes" if r.get("exact") else "NO"),
    ("processing latency p50 / p99 (all workers, histogram)",
     lambda r: f"{fmt_ms(r.get('latency_p50_s'))} / {fmt_ms(r.get('latency_p99_s'))}"),
    ("  its stages p50 / p99: wait · prepare · commit",
     lambda r: " · ".join(f"{fmt_ms(p50)} / {fmt_ms(p99)}"
                          for p50, p99 in (r.get("latency_stages") or {}).values()) or "-"),
    ("segment definitions (PUT / all live)",
     lambda r: "-" if not r.get("segments") else
     f"{fmt_n(r['segments'])} ({fmt_n(r.get('segments_put_s'), 1)} s / "
     f"{fmt_n(r.get('segments_live_s'), 1)} s)"),
    ("change records (entered / exited)",
     lambda r: "-" if not r.get("segments") else
     f"{fmt_n(r.get('change_records'))} ({fmt_n(r.get('change_records_by_kind', {}).get('entered'))}"
     f" / {fmt_n(r.get('change_records_by_kind', {}).get('exited', 0))})"),
    ("change records caused by our events", lambda r: "-" if not r.get("segments")
        else fmt_n(r.get("event_caused_changes"))),
    ("ACCEPT -> CHANGE RECORD p50 / p99",
     lambda r: "-" if not r.get("segments") else
     f"{fmt_ms(r.get('accept_to_change_p50_s'))} / {fmt_ms(r.get('accept_to_change_p99_s'))}"),
    ("segment evaluations (per event)",
     lambda r: "-" if not r.get("segments") else
     f"{fmt_n(r.get('segment_evaluations'))} ({fmt_n(r.get('evaluations_per_event'), 2)})"),
    ("worker CPU per item (all workers)",
     lambda r: fmt_n(r.get("worker_cpu_us_per_event"), 1) + " µs"),
    ("of which the event loops' threads (and their waits for a core)",
     lambda r: fmt_n(r.get("worker_main_thread_us_per_event"), 1) + " µs ("
     + fmt_n(r.get("worker_main_thread_core_wait_us_per_event"), 1) + " µs)"),
    ("CPU s worker / broker / bench", lambda r: f"{fmt_n(r.get('worker_cpu_s'), 1)} / "
                                                f"{fmt_n(r.get('broker_cpu_s'), 1)} / "
                                                f"{fmt_n(r.get('bench_cpu_s'), 1)}"),
    ("broker's share of a core, first / last fifth of the load",
     lambda r: "-" if not r.get("broker_cpu_share_first_last_fifth") else
     " / ".join(f"{share:.2f}" for share in r["broker_cpu_share_first_last_fifth"])),
    ("CPU s taken by other guests (host steal, all cores)",
     lambda r: fmt_n(r.get("host_steal_s"), 1)),
    ("worker RSS ready / end", lambda r: f"{fmt_mb(r.get('idle_rss_bytes'))} / "
                                         f"{fmt_mb(r.get('rss_end_bytes'))}"),
    ("WORKER PEAK RSS (VmHWM), per worker",
     lambda r: ", ".join(fmt_mb(b) for b in
                         r.get("peak_rss_per_worker") or [r.get("peak_rss_bytes")])),
    ("WORST EVENT-LOOP STALL (any worker)", lambda r: fmt_ms(r.get("worst_stall_s"))),
    ("heap trims (app/heap.py): count / time in all",
     lambda r: f"{fmt_n(r.get('heap_trims'))} / {fmt_ms(r.get('heap_trim_s'))}"),
    ("RocksDB dir at end (incl. WAL)", lambda r: fmt_mb(r.get("data_dir_bytes"))),
    ("broker RSS (whole bench so far)", lambda r: fmt_mb(r.get("broker_rss_bytes"))),
    ("RECOVERY: changelog records", lambda r: _recovery(r, "changelog_records", fmt_n)),
    ("recovery: ready after (intact dir / deleted)",
     lambda r: "-" if not r.get("recovery") else
     f"{fmt_n(r['recovery'].get('intact_ready_s'), 1)} s / {fmt_n(r['recovery'].get('ready_s'), 1)} s"),
    ("RECOVERY records/s (net of intact restart)",
     lambda r: "-" if not r.get("recovery") else
     f"{fmt_n(r['recovery'].get('records_per_s'))} ({fmt_n(r['recovery'].get('net_records_per_s'))})"),
    ("recovery: records/s while the worker read them",
     lambda r: _recovery(r, "reading_records_per_s", fmt_n)),
    ("recovery: worker peak RSS", lambda r: _recovery(r, "peak_rss_bytes", fmt_mb)),
    ("load avg (1 min) before / after run",
     lambda r: f"{fmt_n(r['loadavg_before'][0], 2)} / "
               f"{fmt_n((r.get('loadavg_after') or [None])[0], 2)}"),
]


def print_table(runs: list[dict[str, Any]]) -> None:
    done = [r for r in runs if "events_per_s" in r]
    if not done:
        return
    headers = ["", *(r["label"] for r in done)]
    body = [[name, *(render(r) for r in done)] for name, render in ROWS]
    widths = [max(len(row[i]) for row in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                 for i, (c, w) in enumerate(zip(cells, widths))) + " |"

    print()
    print(line(headers))
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in body:
        print(line(row))
