"""The LD_PRELOAD redirector, built from its C source with the machine's compiler.

``kaudit_redirect.c`` (next to this file) turns a program's NETLINK_AUDIT socket into a
connection to a simulator endpoint (see its header comment and docs/wrap.md). It is compiled
on first use rather than shipped as a binary because it must match the machine's C library
and architecture; the result is cached under ``$KAUDIT_CACHE`` (else
``$XDG_CACHE_HOME/kaudit`` or ``~/.cache/kaudit``) in a file named after the hash of the
source, the compiler and the flags, so an edited source or another compiler gets a new
build and concurrent builders never see a half-written library (write, then rename).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CFLAGS", "SOURCE", "ShimBuildError", "BuildResult", "build_shim", "cache_dir", "find_compiler", "shim_path"]

SOURCE = Path(__file__).with_name("kaudit_redirect.c")
CFLAGS = ("-Wall", "-Wextra", "-O2", "-fPIC", "-shared")
LIBS = ("-ldl", "-pthread")
COMPILERS = ("cc", "gcc", "clang")


class ShimBuildError(RuntimeError):
    """The redirector cannot be built here; the message names what is missing or failed."""


@dataclass(slots=True)
class BuildResult:
    path: Path
    compiler: str
    built: bool  # False when the cached library was used
    warnings: str  # the compiler's diagnostics (empty for a clean build or a cache hit)


def cache_dir() -> Path:
    """Where built libraries are kept (created on demand)."""
    env = os.environ.get("KAUDIT_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "kaudit"


def find_compiler(compiler: str | None = None) -> str:
    """The C compiler to use: ``compiler``, else ``$CC``, else cc, gcc or clang on PATH."""
    wanted = compiler or os.environ.get("CC")
    if wanted:
        argv0 = shlex.split(wanted)[0] if wanted.strip() else ""
        if argv0 and shutil.which(argv0):
            return wanted
        raise ShimBuildError(
            f"the C compiler {wanted!r} (from {'the caller' if compiler else '$CC'}) was not found on PATH; "
            "the NETLINK_AUDIT redirector must be compiled for this machine"
        )
    for name in COMPILERS:
        if shutil.which(name):
            return name
    raise ShimBuildError(
        "no C compiler found (looked for $CC, " + ", ".join(COMPILERS) + " on PATH); the NETLINK_AUDIT "
        "redirector (simulator/redirect/kaudit_redirect.c) is compiled on first use: install one "
        "(Debian: apt-get install gcc libc6-dev) or set $CC"
    )


def _compiler_identity(compiler: str) -> str:
    try:
        out = subprocess.run([*shlex.split(compiler), "--version"], capture_output=True, text=True, timeout=30)
        return out.stdout.splitlines()[0] if out.stdout else compiler
    except (OSError, subprocess.SubprocessError):
        return compiler


def _key(source: bytes, compiler: str) -> str:
    h = hashlib.sha256()
    h.update(source)
    for part in (compiler, _compiler_identity(compiler), " ".join(CFLAGS + LIBS), platform.machine()):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:16]


def build_shim(*, cache: Path | None = None, compiler: str | None = None, force: bool = False) -> BuildResult:
    """Compile the redirector (or reuse the cached build); raises ShimBuildError saying why not."""
    try:
        source = SOURCE.read_bytes()
    except OSError as exc:
        raise ShimBuildError(f"the redirector's source {SOURCE} cannot be read: {exc.strerror}") from None
    cc = find_compiler(compiler)
    where = cache if cache is not None else cache_dir()
    target = where / f"kaudit_redirect-{_key(source, cc)}.so"
    if target.is_file() and not force:
        return BuildResult(target, cc, False, "")
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ShimBuildError(f"cannot create the build cache {where}: {exc.strerror} (set $KAUDIT_CACHE)") from None
    fd, tmp = tempfile.mkstemp(prefix=".kaudit_redirect-", suffix=".so", dir=where)
    os.close(fd)
    argv = [*shlex.split(cc), *CFLAGS, "-o", tmp, str(SOURCE), *LIBS]
    try:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except OSError as exc:
            raise ShimBuildError(f"cannot run the C compiler {cc!r}: {exc}") from None
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip()
            raise ShimBuildError(
                f"compiling the NETLINK_AUDIT redirector failed ({shlex.join(argv)}), exit {proc.returncode}:\n{detail}"
            )
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BuildResult(target, cc, True, (proc.stderr or "").strip())


def shim_path(**kw: object) -> Path:
    """The built redirector's path (building it on first use)."""
    return build_shim(**kw).path  # type: ignore[arg-type]
