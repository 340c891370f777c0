"""Process workloads: execve with arguments the kernel must encode, execveat, failed exec, forks.

The argument vectors are chosen to exercise the kernel's EXECVE record encodings: an argument
longer than the kernel's per-record chunk (7500 bytes, ``MAX_EXECVE_AUDIT_LEN``) is split into
``aN[0]``, ``aN[1]``...; an argument with a space, a quote or a control character is written
in hex; non-ASCII UTF-8 is hex too. ``cmdline`` must give all of them back exactly, joined by
single spaces in argument order.

Fork rows follow osquery: ``pid`` is the child (the syscall's return value), ``parent`` the
caller. Python's ``os.fork`` is glibc's fork, which is a ``clone`` syscall; ``posix_spawn`` uses
``clone3`` when the kernel (and any seccomp filter) allows it, else ``clone``; the helper
probes which before spawning. A failed syscall never makes a process row.
"""

from __future__ import annotations

from simulator.workloads.base import (
    ExpectedRow,
    Workload,
    WorkloadContext,
    WorkloadError,
    exec_row,
    process_row,
    resolve_exe,
)

__all__ = [
    "ExecFailed",
    "ExecLongArgs",
    "ExecNonAscii",
    "ExecQuotedArgs",
    "Execveat",
    "ForkChain",
    "PosixSpawn",
]


def _run_plain(ctx: WorkloadContext, argv: list[str], why: str) -> list[ExpectedRow]:
    child = ctx.spawn(argv)
    rc = child.wait()
    if rc != 0:
        raise WorkloadError(f"{child.describe()} exited {rc}")
    return child.spawn_rows(why=why)


class ExecLongArgs(Workload):
    name = "execve-long-args"
    description = "execve with 10000- and 20000-byte arguments (the kernel splits them across aN[i] chunks)"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        long1 = "".join(chr(ord("a") + i % 26) for i in range(10000))
        long2 = "L" * 19999 + "!"
        return _run_plain(ctx, ["true", "short", long1, long2, "tail"], "true with long arguments")


class ExecQuotedArgs(Workload):
    name = "execve-hex-args"
    description = "execve with arguments the kernel hex-encodes: spaces, quotes, tab, newline, empty"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        argv = [
            "true",
            "two words",
            'double"quote',
            "single'quote",
            "tab\there",
            "new\nline",
            "",
            "back\\slash",
            "plain",
        ]
        return _run_plain(ctx, argv, "true with hex-encoded arguments")


class ExecNonAscii(Workload):
    name = "execve-non-ascii"
    description = "execve with UTF-8 arguments (Latin-1 range, CJK, emoji, combining mark)"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        argv = ["true", "héllo", "日本語", "✓ ok", "🙂", "e\u0301", "ascii"]
        return _run_plain(ctx, argv, "true with non-ASCII arguments")


class Execveat(Workload):
    name = "execveat"
    description = 'fexecve: execveat(fd, "", argv, envp, AT_EMPTY_PATH) on an opened /usr/bin/true'

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        true_exe = resolve_exe("true")
        argv = ["true", "via-execveat"]
        child = ctx.prog("execveat", true_exe, *argv)
        rc = child.wait()
        if rc != 0:
            raise WorkloadError(f"{child.describe()} exited {rc}")
        return [
            *child.spawn_rows(why="execveat helper"),
            child.execve_row(true_exe, argv, why="the helper execveat()s true", syscall="execveat"),
        ]


class ExecFailed(Workload):
    name = "execve-failed"
    description = "an execve of a missing file fails (no row), then the same process execs true"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        true_exe = resolve_exe("true")
        argv = ["true", "after-failed-exec"]
        child = ctx.prog("exec-failed", "/nonexistent/kaudit-missing", true_exe, *argv)
        report = child.read_json()
        rc = child.wait()
        if report.get("failed_errno") != 2 or rc != 0:
            raise WorkloadError(f"exec-failed helper reported {report} and exited {rc}")
        return [
            *child.spawn_rows(why="exec-failed helper"),
            # the failed execve (ENOENT) must not make a row: it would show up as unexpected
            child.execve_row(true_exe, argv, why="the exec that works"),
        ]


class ForkChain(Workload):
    name = "fork-chain"
    description = "fork -> fork -> execve: a child and a grandchild (clone rows), the grandchild execs true"
    depth = 2

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        true_exe = resolve_exe("true")
        argv = ["true", "end-of-chain"]
        child = ctx.prog("fork-chain", self.depth, true_exe, *argv)
        forks = [child.read_json() for _ in range(self.depth)]
        rc = child.wait()
        if rc != 0:
            raise WorkloadError(f"{child.describe()} exited {rc}")
        me = ctx.identity
        rows = list(child.spawn_rows(why="fork-chain helper"))
        parent = child.pid
        for i, f in enumerate(forks):
            pid = int(f["forked"])
            if int(f["parent"]) != parent:
                raise WorkloadError(f"fork {i + 1} reports parent {f['parent']}, expected {parent}")
            ctx.add_pid(pid)
            rows.append(
                process_row(
                    "clone", pid, parent=parent, path=ctx.python_exe, why=f"fork level {i + 1}", **me.ids()
                )
            )
            parent = pid
        rows.append(
            exec_row(
                "execve",
                parent,
                int(forks[-1]["parent"]),
                true_exe,
                argv,
                child.cwd,
                me,
                why="grandchild execs true",
            )
        )
        return rows


class PosixSpawn(Workload):
    name = "posix-spawn"
    description = "posix_spawn: glibc's clone3(CLONE_VM|CLONE_VFORK) (or clone without clone3), then execve"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        true_exe = resolve_exe("true")
        argv = ["true", "spawned"]
        child = ctx.prog("spawn", true_exe, *argv)
        report = child.read_json()
        rc = child.wait()
        if rc != 0:
            raise WorkloadError(f"{child.describe()} exited {rc}")
        pid = int(report["spawned"])
        ctx.add_pid(pid)
        syscall = "clone3" if report["clone3"] else "clone"
        me = ctx.identity
        return [
            *child.spawn_rows(why="spawn helper"),
            process_row(
                syscall,
                pid,
                parent=child.pid,
                path=ctx.python_exe,
                why=f"posix_spawn ({syscall})",
                **me.ids(),
            ),
            exec_row(
                "execve", pid, child.pid, true_exe, argv, child.cwd, me, why="the spawned child execs true"
            ),
        ]
