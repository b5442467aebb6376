"""``--profile``: py-spy a worker during the load and summarise where its time went."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any






def start_profile(pid: int, seconds: int, out: Path, log: Path, *,
                  native: bool = False) -> subprocess.Popen:
    """``py-spy record -p PID -d S -f raw -o OUT [--native]`` in the background."""
    pyspy = Path(sys.executable).with_name("py-spy")
    with open(log, "ab") as log_file:
        return subprocess.Popen([str(pyspy), "record", "-p", str(pid), "-d", str(seconds),
                                 "-f", "raw", "-o", str(out), *(["--native"] if native else [])],
                                stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")
EVENTIDE_PACKAGES = ("app/", "agents/", "tables/", "bench/")


def _function(frame: str) -> tuple[str, str]:
    """(``file:function``, file) of a py-spy frame ``function (file:line)``."""
    match = _FRAME.match(frame)
    if not match:
        return frame, ""
    return f"{match['file']}:{match['func']}", match["file"]


def summarize_profile(path: Path, top: int = 15) -> dict[str, Any]:
    """Top self-time functions and top inclusive eventide functions of py-spy raw output (one
    ``frame;frame;... count`` line per distinct stack; active samples only). With native frames
    (``--profile-native``) also the share of samples inside CPython's cyclic garbage collector
    (``gc_collect*``) and the Python frames whose allocation triggered it."""
    self_time: Counter = Counter()
    inclusive: Counter = Counter()
    gc_triggers: Counter = Counter()
    gc_samples = 0
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        raw_frames = stack.split(";")
        frames = [_function(f) for f in raw_frames]
        self_time[frames[-1][0]] += n
        if any(f.startswith("gc_collect") for f in raw_frames):
            gc_samples += n
            python = [name for name, file in frames if file.endswith(".py")]
            gc_triggers[python[-1] if python else "?"] += n
        # app/cli.py is the process's entry (main -> cmd_worker -> the event loop): on every
        # stack, so it says nothing.
        for name in {name for name, file in frames
                     if file.startswith(EVENTIDE_PACKAGES) and file != "app/cli.py"}:
            inclusive[name] += n

    def rows(counter: Counter) -> list[dict[str, Any]]:
        return [{"frame": name, "samples": n, "share": round(n / total, 4)}
                for name, n in counter.most_common(top)]

    return {"samples": total, "top_self": rows(self_time), "top_inclusive_eventide":
            rows(inclusive), "gc_samples": gc_samples,
            "gc_share": round(gc_samples / total, 4) if total else None,
            "gc_triggered_from": rows(gc_triggers) if gc_samples else []}


def print_profile(summary: dict[str, Any]) -> None:
    print(f"\n   py-spy: {summary['samples']:,} active samples")
    if summary.get("gc_samples"):
        print(f"   in the cyclic GC (gc_collect*): {summary['gc_samples']:,} samples "
              f"({summary['gc_share'] * 100:.1f}%)")
    for title, key in (("top self time", "top_self"),
                       ("top inclusive (eventide frames)", "top_inclusive_eventide"),
                       ("Python frame whose allocation ran the GC", "gc_triggered_from")):
        print(f"   {title}:")
        for row in summary[key]:
            print(f"     {row['share'] * 100:5.1f}%  {row['samples']:6,}  {row['frame']}")
