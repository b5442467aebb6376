"""The hot path's modules compiled to C with mypyc, and the guard against a stale build.

A worker spends its time in many small Python functions (no single one stands out in a
profile: docs/performance.md). mypyc, the compiler that ships with mypy, turns these typed
modules into C extensions: on the 1,000-segment job a unit's processing took about a fifth less
time. The sources stay the code: the build is a cache of them, and without it the same modules
run as Python.

``make native`` (``make run`` and ``make test`` run it: :func:`main`) compiles
:data:`MODULES` in place when one of them changed since its build. Its extensions sit beside the
sources (``tables/unit.cpython-311-x86_64-linux-gnu.so``) plus the group's shared library
(``tables/compiled__mypyc...so``), and Python imports an extension before a source of the same
name. So a source edited after the build would not run: :func:`check`, called by each package's
``__init__`` before any of these modules is imported, removes a build whose sources changed since
it was made, says so once, and the sources run until the next build. "Changed" is by content:
the build records each source's SHA-256 (:data:`MANIFEST`), so a checkout, a copy or an install
that gives the files new times keeps a build of the same sources, and an edit never does.

The image (``Dockerfile``) compiles them in its build stage and copies the extensions and the
manifest beside the installed sources.

**Made per item.** A dataclass's ``__init__`` is generated when the class is made, as Python, so
compiled code still runs it as Python: making a frozen dataclass cost ~1 µs, a ``NamedTuple``
~0.4 µs, and a dataclass whose ``__init__`` is written out (``init=False``; a frozen one sets its
fields with ``object.__setattr__``, which mypyc turns into a direct store) ~0.06 µs. The classes
made per item or per change (:class:`app.core.person.Step` and ``PersonState``,
:class:`app.core.membership.Change`, the per-item messages and outputs, :class:`OutRecord
<tables.records.OutRecord>`) write it out; the rest keep the generated one.

**Generator expressions are lists.** mypyc compiles a generator expression into a list built
whole, then iterates it (a build warning says "Treating generator comprehension as list"), except
inside ``any``, ``all``, ``sum`` and ``next``, which it short-circuits. Handed to anything lazy (a
``heapq.merge``, a caller that stops early) it reads everything first: a merge of a unit's pending
writes with a stored range read a person's whole history for each event stored, and an event for
a person with 5,000 events cost ~5× a new person's from the first build (2026-12-02) until
2026-12-05. Compiled modules write a generator function instead
(``tests/unit/test_compiled_laziness.py`` holds them to it).

Only this module's standard-library imports run before the check; it imports nothing of
eventide.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

#: The project root: the directory holding ``app``, ``agents`` and ``tables``.
ROOT = Path(__file__).resolve().parent.parent

#: Compiled together (one mypyc group: calls between them are C calls). The per-person step,
#: the unit of work and the segment evaluator, the loop that hands them a unit's items, a
#: record's decoding (``app.model``), the partitioner's hash (``tables.records``), the
#: commit's loops over its keys, and recovery's over a changelog's records and changes
#: (``tables.changelog``, ``tables.apply_rows``): what runs per item, per key or per record.
#: Not here: what runs per unit or per partition (``tables.state``'s commit and recovery,
#: ``tables.store``), and modules of faust's machinery, whose time is spent in faust.
MODULES = (
    "app/core/activation.py", "app/core/dedup.py", "app/core/evaluation.py",
    "app/core/history.py", "app/core/identity.py", "app/core/inputs.py", "app/core/items.py",
    "app/core/lifecycle.py", "app/core/membership.py", "app/core/messages.py",
    "app/core/outputs.py", "app/core/person.py", "app/core/profiles.py",
    "app/core/publishing.py", "app/core/routes.py", "app/core/triggers.py",
    "app/segments/conditions.py", "app/segments/definition.py", "app/segments/evaluate.py",
    "app/segments/operators.py", "app/segments/paths.py",
    "app/membership_index.py", "app/model.py", "app/person_store.py",
    "agents/people.py", "agents/person_io.py", "agents/routing.py", "agents/unit_items.py",
    "tables/apply_rows.py", "tables/changelog.py", "tables/commit_rows.py",
    "tables/json_bytes.py", "tables/records.py", "tables/unit.py", "tables/value_cache.py",
)

#: The group's shared library is ``tables/compiled__mypyc...so``: inside a package, so that it is
#: found wherever the packages are (an editable install puts no project root on ``sys.path``).
GROUP = "tables.compiled"

#: Each source's SHA-256 when the build was made (root-relative path → hex digest).
MANIFEST = "tables/compiled.sources.json"

#: mypyc's options: the types are checked by ``make lint`` (strict where it is strict); the
#: compile only needs them read.
_CONFIG = "[mypy]\nignore_missing_imports = True\nfollow_imports = silent\n"

_checked = False


def extension_of(source: Path) -> Path | None:
    """The compiled module beside ``source``, if there is one."""
    found = sorted(source.parent.glob(source.stem + ".cpython-*.so"))
    return found[0] if found else None


def _libraries(root: Path) -> list[Path]:
    return sorted(root.glob(GROUP.replace(".", "/") + "__mypyc.cpython-*.so"))


def built_files(root: Path = ROOT) -> list[Path]:
    """Everything a build left: each module's extension, the group's shared library and the
    manifest."""
    files = [ext for ext in (extension_of(root / source) for source in MODULES) if ext]
    manifest = root / MANIFEST
    return files + _libraries(root) + ([manifest] if manifest.exists() else [])


def digests(root: Path = ROOT) -> dict[str, str]:
    """Each source of :data:`MODULES` by its SHA-256 (what :data:`MANIFEST` records)."""
    return {source: hashlib.sha256((root / source).read_bytes()).hexdigest()
            for source in MODULES}


def _recorded(root: Path) -> dict[str, str]:
    try:
        recorded = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def stale_sources(root: Path = ROOT) -> list[str]:
    """What makes a build unusable: sources of :data:`MODULES` whose content is not what was
    compiled, or without an extension while others have one, or the group's library or the
    manifest missing (a partial build). Empty when there is no build at all."""
    extensions = {source: extension_of(root / source) for source in MODULES}
    if not any(extensions.values()):
        return []
    recorded = _recorded(root)
    now = digests(root)
    stale = [source for source, ext in extensions.items()
             if ext is None or recorded.get(source) != now[source]]
    if not _libraries(root):
        stale.append(GROUP.replace(".", "/") + "__mypyc (missing)")
    if not recorded:
        stale.append(MANIFEST + " (missing)")
    return stale


def in_use() -> bool:
    """Whether this process runs the compiled modules."""
    import tables.unit
    return (tables.unit.__file__ or "").endswith(".so")


def remove_stale(root: Path = ROOT) -> list[str]:
    """Remove the build if it is stale; the sources that made it so."""
    stale = stale_sources(root)
    if stale:
        for path in built_files(root):
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a read-only checkout: say so, the import goes on
                log.error("could not remove the stale compiled module %s: %s", path, exc)
    return stale


def check(root: Path = ROOT) -> None:
    """Remove a stale build before any of its modules is imported (once per process)."""
    global _checked
    if _checked:
        return
    _checked = True
    stale = remove_stale(root)
    if stale:
        log.warning("compiled modules removed: %s changed since they were built; running the "
                    "Python sources (`make native` builds them again)", ", ".join(stale[:3]) +
                    (f" and {len(stale) - 3} more" if len(stale) > 3 else ""))


#: What :func:`build` runs in a child process: mypyc's setuptools entry point, built in place.
_BUILD = """
import sys
from mypyc.build import mypycify
from setuptools import setup
config, group, *modules = sys.argv[1:]
setup(name="eventide-native", script_args=["build_ext", "--inplace", "--build-temp", "build"],
      ext_modules=mypycify(["--config-file", config, *modules], group_name=group))
"""


def current(root: Path = ROOT) -> bool:
    """Whether a whole build of the sources as they are is here: some extension, and nothing
    :func:`stale_sources` finds missing or changed. (A manifest alone is no build: with the
    extensions deleted some other way than ``make clean``, ``make native`` said "up to date"
    and built nothing, and everything ran as Python.)"""
    return any(extension_of(root / source) for source in MODULES) and not stale_sources(root)


def build(root: Path = ROOT) -> bool:
    """Compile :data:`MODULES` unless the build is current; False if it was."""
    if current(root):
        return False
    # Read before compiling: a source edited during the build makes the build stale.
    compiled = digests(root)
    (root / MANIFEST).unlink(missing_ok=True)  # until the build is whole, it is partial
    with tempfile.TemporaryDirectory() as scratch:
        config = Path(scratch) / "mypyc.ini"
        config.write_text(_CONFIG)
        subprocess.run([sys.executable, "-c", _BUILD, str(config), GROUP, *MODULES], cwd=root,
                       check=True, stdout=subprocess.DEVNULL)
    (root / MANIFEST).write_text(json.dumps(compiled, indent=1, sort_keys=True) + "\n")
    return True


def main() -> None:
    """``make native``."""
    built = build()
    print("compiled modules: " + ("built" if built else "up to date") + f" ({len(MODULES)})")
