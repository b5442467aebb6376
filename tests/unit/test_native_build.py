"""tables.native: the compiled hot path is what runs, and a stale build never does."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path

import pytest

from tables import native

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def fake_checkout(root: Path) -> None:
    """Every compiled module's source, then its extension, the group's library and the manifest
    of the sources' digests, as a build leaves them."""
    for source in native.MODULES:
        (root / source).parent.mkdir(parents=True, exist_ok=True)
        (root / source).write_text(f"# source of {source}\n")
    for source in native.MODULES:
        extension = (root / source).with_name(Path(source).stem + SUFFIX)
        extension.write_bytes(b"\x7fELF")
    library = root / (native.GROUP.replace(".", "/") + "__mypyc" + SUFFIX)
    library.write_bytes(b"\x7fELF")
    (root / native.MANIFEST).write_text(json.dumps(native.digests(root)))


def test_a_current_build_stays(tmp_path: Path) -> None:
    fake_checkout(tmp_path)
    assert native.remove_stale(tmp_path) == []
    assert len(native.built_files(tmp_path)) == len(native.MODULES) + 2


def test_new_file_times_keep_a_build_of_the_same_sources(tmp_path: Path) -> None:
    """A checkout, a copy or a package install gives files new times, not new content."""
    fake_checkout(tmp_path)
    for source in native.MODULES:
        os.utime(tmp_path / source, (4_000_000_000, 4_000_000_000))
    for built in native.built_files(tmp_path):
        os.utime(built, (1_000, 1_000))
    assert native.remove_stale(tmp_path) == []
    assert len(native.built_files(tmp_path)) == len(native.MODULES) + 2


def test_a_source_edited_after_the_build_removes_the_whole_build(tmp_path: Path) -> None:
    """The modules of a group call each other in C: one stale module means none may run."""
    fake_checkout(tmp_path)
    with open(tmp_path / "app/core/dedup.py", "a") as source:
        source.write("EDITED = True\n")
    assert native.remove_stale(tmp_path) == ["app/core/dedup.py"]
    assert native.built_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.so"))
    assert not (tmp_path / native.MANIFEST).exists()


def test_a_build_without_its_manifest_is_removed(tmp_path: Path) -> None:
    """A build that stopped before recording what it compiled cannot be trusted."""
    fake_checkout(tmp_path)
    (tmp_path / native.MANIFEST).unlink()
    assert native.remove_stale(tmp_path)[-1] == native.MANIFEST + " (missing)"
    assert native.built_files(tmp_path) == []


def test_a_partial_build_is_removed(tmp_path: Path) -> None:
    fake_checkout(tmp_path)
    (tmp_path / "tables" / ("unit" + SUFFIX)).unlink()
    assert native.remove_stale(tmp_path) == ["tables/unit.py"]
    assert native.built_files(tmp_path) == []


def test_no_build_is_not_stale(tmp_path: Path) -> None:
    for source in native.MODULES:
        (tmp_path / source).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / source).write_text("# source\n")
    assert native.remove_stale(tmp_path) == []


@pytest.mark.skipif(os.environ.get("EVENTIDE_NATIVE") == "0",
                    reason="EVENTIDE_NATIVE=0: the Python sources were asked for")
def test_this_checkout_runs_the_compiled_modules() -> None:
    """`make test` builds them first (`make native`): the suite tests what a worker runs."""
    assert native.in_use(), "the compiled modules are not built: run `make native`"
    for name in ("agents.people", "app.core.inputs", "app.segments.evaluate"):
        module = importlib.import_module(name)
        assert (module.__file__ or "").endswith(".so"), name


def test_a_build_without_its_group_library_is_removed(tmp_path: Path) -> None:
    """The modules' entry points load the group's library: without it no import would work."""
    fake_checkout(tmp_path)
    next(tmp_path.glob("tables/compiled__mypyc*.so")).unlink()
    assert native.remove_stale(tmp_path) == ["tables/compiled__mypyc (missing)"]
    assert native.built_files(tmp_path) == []


def test_only_a_whole_build_of_these_sources_is_current(tmp_path: Path) -> None:
    """``make native`` builds unless the build is whole and of these sources: a manifest left
    without the extensions is no build."""
    fake_checkout(tmp_path)
    assert native.current(tmp_path)
    for extension in tmp_path.rglob("*" + SUFFIX):
        extension.unlink()
    assert (tmp_path / native.MANIFEST).exists()
    assert not native.current(tmp_path)
    fake_checkout(tmp_path)
    (tmp_path / "tables" / "unit.py").write_text("# edited\n")
    assert not native.current(tmp_path)
