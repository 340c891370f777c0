"""``process_events`` rows from audit events, as osquery's AuditProcessEventSubscriber makes them.

Which syscalls (osquery ``events/linux/process_events.h``): execve and execveat always;
fork, vfork, clone (and clone3, which osquery predates) with ``allow_fork_process_events``;
kill, tkill, tgkill with ``allow_kill_process_events``. Only successful syscalls make rows.

Per syscall (osquery ``GetProcessIDs``): fork and vfork report the child's pid in ``exit``,
so ``pid`` = exit and ``parent`` = the caller; clone likewise, except that with
CLONE_PARENT the child's parent is the caller's parent (``ppid``); a clone with
CLONE_THREAD makes a thread, not a process, and yields no row. Every other syscall:
``pid`` = pid, ``parent`` = ppid.

For execve/execveat the row also takes ``cwd`` from the CWD record, ``cmdline`` from the
EXECVE records, and ``mode``, ``owner_uid``, ``owner_gid`` from the first PATH record
(the executable); an exec event missing one of these records yields no row (osquery:
"malformed"), counted in ``TableStats.drops``.

Where we differ from osquery on purpose (docs/tables.md):

- ``cmdline`` lists the arguments in argument order. osquery walks its sorted field map,
  so ``a10`` comes before ``a2``; and it reads only the first EXECVE record.
- An argument the kernel split (``aN_len=``, ``aN[0]=``, ``aN[1]=`` ..., possibly over
  several EXECVE records) is joined back into one argument.
- ``cwd`` is the decoded directory; osquery copies the raw token with its quotes.
- ``time`` is the event's audit timestamp (seconds), so a replay is deterministic.
- File times (``atime`` ...) are 0: osquery stat()s the path at emit time.
- kill rows carry only the table's columns: osquery's subscriber also sets ``tty``, ``ses``,
  ``comm``, ``ocomm``, ``oses``, ``oauid``, which are not in the spec and never reach a query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from collector.decode import DecodeError, decode_execve_argv, decode_int, decode_str
from collector.parser import RecordError
from collector.protocol.records import record_type_number
from collector.rows import ProcessEventsRow
from collector.tables.options import TableOptions
from collector.tables.stats import TableStats
from collector.tables.syscall import SyscallInfo, read_syscall

if TYPE_CHECKING:
    from collector.parser import Record
    from collector.publisher import Event

__all__ = ["EXEC_SYSCALLS", "FORK_SYSCALLS", "KILL_SYSCALLS", "rows_for", "wanted_syscalls"]

TABLE = ProcessEventsRow.table

EXEC_SYSCALLS = frozenset({"execve", "execveat"})
FORK_SYSCALLS = frozenset({"fork", "vfork", "clone", "clone3"})
KILL_SYSCALLS = frozenset({"kill", "tkill", "tgkill"})

# <linux/sched.h>
CLONE_PARENT = 0x00008000
CLONE_THREAD = 0x00010000

_CWD = record_type_number("CWD")
_EXECVE = record_type_number("EXECVE")
_PATH = record_type_number("PATH")


def wanted_syscalls(opts: TableOptions) -> frozenset[str]:
    """Syscall names this table makes rows for under ``opts`` (empty when the table is off)."""
    if not opts.allow_process_events:
        return frozenset()
    out = EXEC_SYSCALLS
    if opts.allow_fork_process_events:
        out |= FORK_SYSCALLS
    if opts.allow_kill_process_events:
        out |= KILL_SYSCALLS
    return out


def rows_for(event: Event, opts: TableOptions, stats: TableStats | None = None) -> list[ProcessEventsRow]:
    """The ``process_events`` rows of one event (zero or one), ``eid`` and ``uptime`` unset.

    Events that are not ours return [] silently; ours that yield no row are counted in
    ``stats`` (a fresh throw-away TableStats when None).
    """
    st = stats if stats is not None else TableStats()
    try:
        info = read_syscall(event, wanted_syscalls(opts), st)
        row = None if info is None else row_from_syscall(event, info, st)
    except RecordError as exc:  # a corrupt record body, split lazily on first access
        st.drop(f"record_{exc.reason}")
        return []
    if row is None:
        return []
    st.rows[TABLE] += 1
    return [row]


def row_from_syscall(event: Event, info: SyscallInfo, stats: TableStats) -> ProcessEventsRow | None:
    """The row for an event whose SYSCALL was already read (the dispatcher's entry point)."""
    if not info.success:
        stats.skip("process_failed_syscall")
        return None
    name = info.name
    pid, parent = info.pid, info.ppid
    if name in FORK_SYSCALLS:
        child = info.exit_code()  # fork/vfork/clone return the child's pid to the caller
        if child is None:
            stats.drop("syscall_no_exit" if info.record.get("exit") is None else "syscall_bad_exit")
            return None
        pid, parent = child, info.pid
        if name == "clone":
            flags = info.arg(0)
            if flags is None:
                stats.drop("clone_no_flags" if info.record.get("a0") is None else "clone_bad_flags")
                return None
            if flags & CLONE_THREAD:
                stats.skip("clone_thread")
                return None
            if flags & CLONE_PARENT:
                parent = info.ppid
        # clone3 passes its flags in user memory (struct clone_args), which the record does
        # not show: threads cannot be told apart and CLONE_PARENT cannot be seen (docs)

    row = ProcessEventsRow(
        pid=pid,
        path=info.exe,
        auid=info.auid,
        uid=info.uid,
        euid=info.euid,
        gid=info.gid,
        egid=info.egid,
        parent=parent,
        time=event.sec,
        fsuid=info.fsuid,
        suid=info.suid,
        fsgid=info.fsgid,
        sgid=info.sgid,
        syscall=name,
    )
    if name in EXEC_SYSCALLS and not _fill_exec(row, event, stats):
        return None
    return row


def _fill_exec(row: ProcessEventsRow, event: Event, stats: TableStats) -> bool:
    cwd_rec = event.first(_CWD)
    if cwd_rec is None:
        stats.drop("execve_no_cwd")
        return False
    execve_recs = event.all(_EXECVE)
    if not execve_recs:
        stats.drop("execve_no_execve")
        return False
    path_rec = _exec_path_record(event)
    if path_rec is None:
        stats.drop("execve_no_path")
        return False

    try:
        argv = decode_execve_argv(execve_recs)
    except DecodeError as exc:  # execve_incomplete, odd_hex, bad_hex, bad_quote
        stats.drop(exc.reason if exc.reason.startswith("execve_") else f"execve_{exc.reason}")
        return False
    raw_cwd = cwd_rec.get("cwd")
    try:
        cwd = "" if raw_cwd is None else decode_str(raw_cwd)
    except DecodeError as exc:
        stats.drop(f"cwd_{exc.reason}")
        return False
    raw_mode = path_rec.get("mode")
    try:
        # the kernel writes mode as a bare octal number (0100755); keep osquery's spelling
        mode = "" if raw_mode is None else (decode_str(raw_mode) if raw_mode.startswith('"') else raw_mode)
    except DecodeError as exc:  # a quote the kernel never writes: a corrupt record
        stats.drop(f"mode_{exc.reason}")
        return False
    cmdline = " ".join(argv)

    row.cwd = cwd
    row.cmdline = cmdline
    row.cmdline_size = len(cmdline.encode("utf-8", "surrogateescape"))
    row.mode = mode
    row.owner_uid = _int_or_zero(path_rec.get("ouid"))
    row.owner_gid = _int_or_zero(path_rec.get("ogid"))
    return True


def _exec_path_record(event: Event) -> Record | None:
    """The PATH record of the executable: ``item=0`` (the kernel's first), else the first PATH."""
    paths = event.all(_PATH)
    for rec in paths:
        if rec.get("item") == "0":
            return rec
    return paths[0] if paths else None


def _int_or_zero(raw: str | None) -> int:
    if raw is None:
        return 0
    value = decode_int(raw)
    return 0 if value is None else value
