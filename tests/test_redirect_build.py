"""Building the redirector: clean compile, cache keyed by the source, a clear error without a compiler."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

import simulator.redirect as redirect
from simulator.redirect import CFLAGS, ShimBuildError, build_shim, find_compiler

EXPORTED = (
    "socket", "bind", "getsockname", "getpeername", "connect", "sendto", "sendmsg", "send", "recvfrom",
    "recvmsg", "recv", "setsockopt", "getsockopt", "close", "read", "write", "dup", "dup2", "dup3", "fcntl",
    "__recvfrom_chk", "__recv_chk",
)


@pytest.fixture
def compiler() -> str:
    try:
        return find_compiler()
    except ShimBuildError as exc:
        pytest.skip(str(exc))


def test_compiles_without_a_warning_and_is_cached(tmp_path: Path, compiler: str) -> None:
    assert {"-Wall", "-Wextra", "-O2", "-fPIC", "-shared"} <= set(CFLAGS)
    first = build_shim(cache=tmp_path)
    assert first.built and first.path.is_file()
    assert first.warnings == "", f"the compiler warned:\n{first.warnings}"
    second = build_shim(cache=tmp_path)
    assert not second.built and second.path == first.path
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary left behind


def test_exports_the_socket_calls_and_nothing_of_its_own(tmp_path: Path, compiler: str) -> None:
    nm = shutil.which("nm")
    if nm is None:
        pytest.skip("nm (binutils) is not installed")
    lib = build_shim(cache=tmp_path).path
    out = subprocess.run([nm, "-D", "--defined-only", str(lib)], capture_output=True, text=True, check=True).stdout
    names = {line.split()[-1] for line in out.splitlines() if line.strip()}
    assert set(EXPORTED) <= names
    assert not {n for n in names if n.startswith("kr_")}, "internal helpers must stay static"


def test_an_edited_source_gets_a_new_build(tmp_path: Path, compiler: str, monkeypatch: pytest.MonkeyPatch) -> None:
    original = build_shim(cache=tmp_path).path
    edited = tmp_path / "src" / "kaudit_redirect.c"
    edited.parent.mkdir()
    edited.write_text(redirect.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(redirect, "SOURCE", edited)
    rebuilt = build_shim(cache=tmp_path)
    assert rebuilt.built and rebuilt.path != original


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAUDIT_CACHE", str(tmp_path / "k"))
    assert redirect.cache_dir() == tmp_path / "k"
    monkeypatch.delenv("KAUDIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert redirect.cache_dir() == tmp_path / "x" / "kaudit"


def test_no_compiler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.delenv("CC", raising=False)
    with pytest.raises(ShimBuildError) as exc:
        build_shim(cache=tmp_path / "cache")
    msg = str(exc.value)
    assert "no C compiler" in msg and "$CC" in msg and "kaudit_redirect.c" in msg


def test_a_named_compiler_that_is_missing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CC", "kaudit-no-such-cc")
    with pytest.raises(ShimBuildError, match="kaudit-no-such-cc"):
        build_shim(cache=tmp_path)


def test_a_compile_error_shows_the_compiler_output(tmp_path: Path, compiler: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.c"
    broken.write_text("int this is not C;\n")
    monkeypatch.setattr(redirect, "SOURCE", broken)
    with pytest.raises(ShimBuildError) as exc:
        build_shim(cache=tmp_path / "cache")
    assert "broken.c" in str(exc.value) and "exit" in str(exc.value)
    assert not list((tmp_path / "cache").glob("*.so")), "a failed build leaves no library behind"
