"""Compile ``_fastlane.c`` (or another module's C file beside it, e.g. ``_drain.c``) on first
use and load it; cached per source, interpreter and compiler.

Why build here and not at install time: kaudit is installed editable (``pip install -e``) and
run from a checkout, often inside a freshly built container, and the C source changes with
the code. A build keyed by the source's hash can never be stale, and a machine without a C
compiler or Python headers still runs: the pure-Python pipeline does the same work, slower
(``collector.fastlane.status()`` says why the lane is off).

The cache is ``$KAUDIT_CACHE``, else ``$XDG_CACHE_HOME/kaudit``, else ``~/.cache/kaudit`` (the
same place as the simulator's LD_PRELOAD redirector). Builds go to a temporary file renamed
into place, so parallel test workers never load a half-written library.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

__all__ = ["CFLAGS", "ENV", "SOURCE", "FastLaneBuildError", "NativeModule", "build", "cache_dir", "load"]

SOURCE = Path(__file__).with_name("_fastlane.c")
ENV = "KAUDIT_FASTLANE"  # 0: every native module off; 1: a failed build is an error
CFLAGS = ["-O2", "-shared", "-fPIC", "-Wall", "-Wno-unused-parameter", "-fno-strict-aliasing"]
COMPILERS = ("cc", "gcc", "clang")


class FastLaneBuildError(RuntimeError):
    """The native lane cannot be built or loaded here; the message says why."""


def cache_dir() -> Path:
    env = os.environ.get("KAUDIT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "kaudit"


def _compiler() -> str:
    wanted = os.environ.get("CC")
    if wanted:
        if shutil.which(shlex.split(wanted)[0]) is None:
            raise FastLaneBuildError(f"the C compiler {wanted!r} from $CC is not on PATH")
        return wanted
    for cc in COMPILERS:
        if shutil.which(cc):
            return cc
    raise FastLaneBuildError("no C compiler (looked for $CC, cc, gcc, clang); Debian: apt-get install gcc")


def _source(name: str) -> Path:
    """The C file of module ``name`` (``_fastlane`` -> ``_fastlane.c`` beside this file)."""
    return SOURCE if name == "_fastlane" else Path(__file__).with_name(f"{name}.c")


def _target(source: bytes, cc: str, name: str = "_fastlane") -> Path:
    h = hashlib.sha256(source)
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    for part in (cc, " ".join(CFLAGS), sys.version, suffix, platform.machine()):
        h.update(b"\0" + part.encode())
    return cache_dir() / f"{name}-{h.hexdigest()[:16]}{suffix}"


def build(force: bool = False, *, name: str = "_fastlane") -> Path:
    """The built extension's path, compiling it when the cache has none for this source.

    ``name`` picks the module (its source is ``{name}.c`` beside this file, with the
    ``{name}_*.h`` files it includes); the default is the fast lane itself. The cache key
    covers every one of those files.
    """
    path = _source(name)
    try:
        source = path.read_bytes()
        for header in sorted(path.parent.glob(f"{name}_*.h")):
            source += b"\0" + header.name.encode() + b"\0" + header.read_bytes()
    except OSError as exc:
        raise FastLaneBuildError(f"cannot read {exc.filename}: {exc.strerror}") from None
    cc = _compiler()
    target = _target(source, cc, name)
    if target.is_file() and not force:
        return target
    include = sysconfig.get_paths()["include"]
    if not Path(include, "Python.h").is_file():
        raise FastLaneBuildError(f"no Python.h in {include} (Debian: apt-get install python3-dev)")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FastLaneBuildError(f"cannot create the build cache {target.parent}: {exc.strerror}") from None
    fd, tmp = tempfile.mkstemp(prefix=".fastlane-", suffix=".so", dir=target.parent)
    os.close(fd)
    argv = [*shlex.split(cc), *CFLAGS, f"-I{include}", "-o", tmp, str(path)]
    try:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.SubprocessError) as exc:
            raise FastLaneBuildError(f"cannot run {cc!r}: {exc}") from None
        if proc.returncode != 0:
            raise FastLaneBuildError(
                f"compiling {path.name} failed ({shlex.join(argv)}), exit {proc.returncode}:\n"
                + (proc.stderr or proc.stdout).strip()
            )
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(name: str = "_fastlane") -> ModuleType:
    """Build if needed and import the extension ``name``; FastLaneBuildError when that cannot be done."""
    path = build(name=name)
    spec = importlib.util.spec_from_file_location(f"collector.fastlane.{name}", path)
    if spec is None or spec.loader is None:
        raise FastLaneBuildError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except ImportError as exc:
        raise FastLaneBuildError(f"cannot load {path}: {exc}") from None
    return module


class NativeModule:
    """One extension, built and loaded at most once per process: the module, or None and why.

    ``$KAUDIT_FASTLANE`` applies to every native module: ``0`` leaves them all off (the Python
    code does the work), ``1`` makes a failed build raise instead of falling back quietly.
    ``check`` runs before the build and raises FastLaneBuildError when the Python side no
    longer matches what the C code assumes.
    """

    __slots__ = ("_check", "_error", "_module", "_tried", "name")

    def __init__(self, name: str, check: Callable[[], None] | None = None) -> None:
        self.name = name
        self._check = check
        self._module: ModuleType | None = None
        self._error: str | None = None
        self._tried = False

    def get(self) -> ModuleType | None:
        if self._tried:
            return self._module
        self._tried = True
        setting = os.environ.get(ENV, "")
        if setting == "0":
            self._error = f"${ENV}=0"
            return None
        try:
            if self._check is not None:
                self._check()
            self._module = load(self.name)
        except FastLaneBuildError as exc:
            self._error = str(exc)
            if setting == "1":
                raise
        return self._module

    def status(self) -> str:
        """``on``, or ``off: `` and why."""
        return "on" if self.get() is not None else f"off: {self._error}"
