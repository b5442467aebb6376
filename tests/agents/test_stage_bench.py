"""``bench.stage`` (the person stage in process, on a real RocksDB) runs its jobs exactly and
says what it measured."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import stage


@pytest.mark.parametrize("job, extra", [("peers", []),
                                        # records of 50 items, as the ingest tier writes them
                                        ("peers", ["--items-per-record", "50",
                                                   "--unit-items", "200"]),
                                        ("segments", ["--segments", "20", "--people", "200"])])
def test_a_round_processes_every_item_once_and_saves_its_figures(
        tmp_path: Path, job: str, extra: list[str]) -> None:
    out = tmp_path / "stage.json"
    stage.main(["--job", job, "--events", "600", "--rounds", "2", "--out", str(out), *extra])
    saved = json.loads(out.read_text())
    assert [r["items"] for r in saved["rounds"]] == [600, 600]
    for found in saved["rounds"]:
        assert 0 < found["commit_cpu_us_per_item"] < found["cpu_us_per_item"]
        assert 0 <= found["gc_us_per_item"] < found["cpu_us_per_item"]
        # every new item is written to history and its dedup id, and each event sends a trigger
        assert found["records_per_item"]["changelog"] > 1.5
        assert found["records_per_item"]["triggers"] > 0.5
    net = sorted(r["cpu_net_of_gc_us_per_item"] for r in saved["rounds"])
    assert saved["cpu_net_of_gc_us_per_item_min"] == net[0]
    per_record = int(extra[1]) if extra[:1] == ["--items-per-record"] else 1
    assert saved["args"]["items_per_record"] == per_record
    if job == "segments":
        assert saved["args"]["identify_ratio"] == 0.05
        assert all(r["records_per_item"].get("changes", 0) > 0 for r in saved["rounds"])


def test_a_round_that_loses_an_item_fails(tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import workload

    generate = workload.generate

    def one_more_unique(*args, **kwargs):  # type: ignore[no-untyped-def]
        made = generate(*args, **kwargs)
        made.resends -= 1  # the bench now expects one more item judged new than there is
        return made

    monkeypatch.setattr(workload, "generate", one_more_unique)
    with pytest.raises(SystemExit, match="judged new"):
        stage.main(["--events", "300", "--rounds", "1", "--out", str(tmp_path / "s.json")])
