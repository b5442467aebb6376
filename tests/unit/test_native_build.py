"""tables.native: the compiled hot path is what runs, and a stale build never does."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from tables import native

SUFFIX = ".cpython-311-x86_64-linux-gnu.so"


def fake_checkout(root: Path) -> None:
    """Every compiled module's source, then its extension and the group's library (newer)."""
    for source in native.MODULES:
        (root / source).parent.mkdir(parents=True, exist_ok=True)
        (root / source).write_text("# source\n")
        os.utime(root / source, (1_000, 1_000))
    for source in native.MODULES:
        extension = (root / source).with_name(Path(source).stem + SUFFIX)
        extension.write_bytes(b"\x7fELF")
        os.utime(extension, (2_000, 2_000))
    library = root / (native.GROUP.replace(".", "/") + "__mypyc" + SUFFIX)
    library.write_bytes(b"\x7fELF")


def test_a_current_build_stays(tmp_path: Path) -> None:
    fake_checkout(tmp_path)
    assert native.remove_stale(tmp_path) == []
    assert len(native.built_files(tmp_path)) == len(native.MODULES) + 1


def test_a_source_edited_after_the_build_removes_the_whole_build(tmp_path: Path) -> None:
    """The modules of a group call each other in C: one stale module means none may run."""
    fake_checkout(tmp_path)
    os.utime(tmp_path / "app/core/dedup.py", (3_000, 3_000))
    assert native.remove_stale(tmp_path) == ["app/core/dedup.py"]
    assert native.built_files(tmp_path) == []
    assert not list(tmp_path.rglob("*.so"))


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
