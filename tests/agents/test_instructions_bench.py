"""``bench.instructions`` counts what the compiled person stage executes per item, under
valgrind, and saves it; two runs of the same code count the same."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench import instructions
from tables import native


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_the_same_code_counts_the_same_per_item(tmp_path: Path) -> None:
    if not native.in_use():
        pytest.skip("the compiled modules are not built (make native)")
    out = tmp_path / "instructions.json"
    # This checkout twice (--tree naming itself): both are counted at once, one per core.
    instructions.main(["--events", "400", "--tree", str(instructions.ROOT), "--top", "5",
                       "--inclusive", instructions.COUNTED, "--inclusive", "no_such_function",
                       "--out", str(out)])
    saved = json.loads(out.read_text())
    runs = saved["runs"]
    assert set(runs) == {"this", "tree"} and saved["events"] == 400
    for run in runs.values():
        assert run["items"] == 400
        # a unit's processing and commit, RocksDB included: well over 10k instructions an item
        assert run["instructions_per_item"] > 10_000
        assert len(run["own_instructions_per_item"]) == 5
        assert all(f["per_item"] > 0 for f in run["own_instructions_per_item"])
        # The counted function, callees included, is everything counted; a name callgrind
        # never saw is said to be unknown, not 0.
        inclusive = run["inclusive_instructions_per_item"]
        assert abs(inclusive[instructions.COUNTED] - run["instructions_per_item"]) <= 1
        assert inclusive["no_such_function"] is None
    this, tree = (runs[n]["instructions_per_item"] for n in ("this", "tree"))
    assert abs(this - tree) / tree < 0.02
