"""Instructions the person stage executes per item, counted by valgrind: a comparison of two
versions that a noisy host does not blur.

    python -m bench.instructions                          # this checkout, the peers' job
    python -m bench.instructions --tree /tmp/base         # and another checkout, side by side
    python -m bench.instructions --job segments --events 5000

On this machine the CPU time of the same run moves by 20-40% from one quarter hour to the next
(other tenants share the cores, and no hardware counters are exposed), so timed A/B runs of
`bench.stage` could not resolve a change of a few percent. This runs `bench.stage` (one round)
under callgrind, counting only inside the compiled ``process_people_batch`` (a unit's
processing and its commit, RocksDB and orjson included; the workload's generation is not
counted), and divides by the items. The count is the same from run to run within ~0.3%
whatever the host's load, so two versions compare directly; both run at once, one per core.

An instruction count is not time: a cache miss or a mispredicted branch costs no more
instructions. It tells what a change removed, not what it saved in seconds; timed runs on a
quiet host (`bench.stage`, `bench.run`) still give the rates. Needs valgrind and the compiled
modules (``make native``; with the Python sources the counted function does not exist). About
3 minutes for 15,000 items of the peers' job.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: The compiled function whose instructions are counted: ``agents.people.process_people_batch``
#: (prepare and commit of a unit), as mypyc names its body.
COUNTED = "CPyDef_people___process_people_batch_gen_____mypyc_generator_helper__"
ROOT = Path(__file__).resolve().parent.parent


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench.instructions", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--job", choices=("peers", "segments"), default="peers")
    parser.add_argument("--events", type=int, default=15_000, help="items (one round)")
    parser.add_argument("--identify-ratio", type=float,
                        help="share of identifies (bench.stage's default for the job if not given)")
    parser.add_argument("--tree", help="another checkout to count beside this one")
    parser.add_argument("--top", type=int, default=25,
                        help="functions listed by their own instructions")
    parser.add_argument("--inclusive", action="append", default=[], metavar="FUNCTION",
                        help="a function (as callgrind names it, e.g. "
                             "CPyDef_person_io___PersonIO___publish) whose instructions, its "
                             "callees' included, are reported per item; repeatable")
    parser.add_argument("--keep", help="a folder to keep callgrind's files in "
                                       "(for callgrind_annotate)")
    parser.add_argument("--out", help="results file (default bench/results/instructions-<time>"
                                      ".json)")
    return parser.parse_args(argv)


def _start(code: Path, args: argparse.Namespace, work: Path, name: str) -> subprocess.Popen:
    stage = [sys.executable, "-m", "bench.stage", "--job", args.job, "--events",
             str(args.events), "--rounds", "1", "--out", str(work / f"{name}.json")]
    if args.identify_ratio is not None:
        stage += ["--identify-ratio", str(args.identify_ratio)]
    if code != ROOT:
        stage += ["--tree", str(code)]
    command = ["valgrind", "--tool=callgrind", f"--toggle-collect={COUNTED}",
               f"--callgrind-out-file={work / name}.callgrind", *stage]
    log = (work / f"{name}.log").open("w")
    return subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)


_LINE = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*?)(?: \[.*\])?$")


def _listing(data: Path, inclusive: bool) -> list[tuple[str, int]]:
    """callgrind_annotate's functions, most instructions first: (function, instructions)."""
    listing = subprocess.run(["callgrind_annotate", "--auto=no",
                              f"--inclusive={'yes' if inclusive else 'no'}",
                              "--threshold=100", str(data)],
                             capture_output=True, text=True, check=True).stdout
    found = []
    for line in listing.splitlines():
        match = _LINE.match(line)
        if match and "PROGRAM TOTALS" not in line:
            where = match.group(2).split(":", 1)[-1]  # (after the file; C++ names hold "::")
            found.append((where, int(match.group(1).replace(",", ""))))
    return found


def _counted(work: Path, name: str, top: int, inclusive: list[str]) -> dict[str, Any]:
    data = work / f"{name}.callgrind"
    summary = re.search(r"^summary: (\d+)$", data.read_text(), re.M)
    total = int(summary.group(1)) if summary else 0
    if not total:
        raise SystemExit(f"{name}: nothing counted in {COUNTED}: build the compiled modules "
                         "(make native)")
    stage = json.loads((work / f"{name}.json").read_text())
    items = stage["rounds"][0]["items"]
    functions = [{"function": where, "per_item": count // items}
                 for where, count in _listing(data, inclusive=False)[:top]]
    counted: dict[str, Any] = {
        "code": stage["code"], "commit": stage["commit"], "items": items,
        "instructions": total, "instructions_per_item": round(total / items),
        "own_instructions_per_item": functions}
    if inclusive:
        totals = dict(reversed(_listing(data, inclusive=True)))  # (the first line of a name)
        counted["inclusive_instructions_per_item"] = {
            function: None if function not in totals else totals[function] // items
            for function in inclusive}
    return counted


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    for tool in ("valgrind", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is needed")
    codes = {"this": ROOT}
    if args.tree:
        codes["tree"] = Path(args.tree).resolve()
    with tempfile.TemporaryDirectory(prefix="eventide-instructions-") as tmp:
        work = Path(tmp)
        runs = {name: _start(code, args, work, name) for name, code in codes.items()}
        for name, run in runs.items():
            if run.wait():
                raise SystemExit(f"{name}: bench.stage under valgrind failed:\n"
                                 + (work / f"{name}.log").read_text()[-2000:])
        counted = {name: _counted(work, name, args.top, args.inclusive) for name in runs}
        if args.keep:
            Path(args.keep).mkdir(parents=True, exist_ok=True)
            for name in runs:
                shutil.copy(work / f"{name}.callgrind", Path(args.keep) / f"{name}.callgrind")
    for name, found in counted.items():
        print(f"{found['commit'] or found['code']}: {found['instructions_per_item']:,} "
              f"instructions an item ({found['items']:,} items, {args.job})")
    if "tree" in counted:
        this, tree = (counted[n]["instructions_per_item"] for n in ("this", "tree"))
        print(f"this checkout against the other: {100 * (this - tree) / tree:+.1f}%")
    out = Path(args.out) if args.out else (
        ROOT / "bench" / "results" / f"instructions-{time.strftime('%Y%m%d-%H%M%S')}.json")
    out.write_text(json.dumps({"bench": "instructions", "at": time.strftime("%Y-%m-%dT%H:%M:%S"),
                               "job": args.job, "events": args.events,
                               "identify_ratio": args.identify_ratio, "counted": COUNTED,
                               "runs": counted}, indent=1) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
