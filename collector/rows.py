"""Rows of osquery's ``socket_events`` and ``process_events`` tables, and their JSON-lines sink.

A row is a slots dataclass whose fields are osquery's column names, in the order of osquery's
table spec (``specs/linux/socket_events.table``, ``specs/posix/process_events.table`` plus its
Linux ``extended_schema``), typed as osquery types them: TEXT columns are ``str``, INTEGER and
BIGINT columns are ``int``. Users compare our rows with osquery's, so the names and types are
the contract; the class attribute ``table`` names the table and ``to_dict()`` puts it first.

``RowWriter`` writes one JSON object per line. It flushes after every ``write`` call, so a
live collector that writes an event's rows in one call flushes once per event and a reader
tailing the file never sees half a row.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import IO, Any, ClassVar

__all__ = [
    "ProcessEventsRow",
    "Row",
    "RowWriter",
    "SocketEventsRow",
    "format_eid",
    "row_class",
    "row_line",
]


def format_eid(n: int) -> str:
    """osquery's event id spelling: the per-run counter zero-padded to 10 digits."""
    return f"{n:010d}"


@dataclass(slots=True)
class SocketEventsRow:
    """One ``socket_events`` row (osquery ``specs/linux/socket_events.table``).

    Column order is the spec's, except that ``status`` (added to the spec late) comes last,
    as in DESIGN.md's example row; JSON consumers key on names, not positions.
    """

    table: ClassVar[str] = "socket_events"
    COLUMN_TYPES: ClassVar[dict[str, str]]

    action: str = ""
    pid: int = 0
    path: str = ""
    fd: str = ""
    auid: int = 0
    success: int = 0
    family: int = 0
    protocol: int = 0
    local_address: str = ""
    remote_address: str = ""
    local_port: int = 0
    remote_port: int = 0
    socket: str = ""
    time: int = 0
    uptime: int = 0
    eid: str = ""
    status: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"table": "socket_events", column: value, ...}`` in column order."""
        return _to_dict(self)


SocketEventsRow.COLUMN_TYPES = {
    "action": "TEXT",
    "pid": "BIGINT",
    "path": "TEXT",
    "fd": "TEXT",
    "auid": "BIGINT",
    "success": "INTEGER",
    "family": "INTEGER",
    "protocol": "INTEGER",
    "local_address": "TEXT",
    "remote_address": "TEXT",
    "local_port": "INTEGER",
    "remote_port": "INTEGER",
    "socket": "TEXT",
    "time": "BIGINT",
    "uptime": "BIGINT",
    "eid": "TEXT",
    "status": "TEXT",
}


@dataclass(slots=True)
class ProcessEventsRow:
    """One ``process_events`` row (osquery ``specs/posix/process_events.table`` + Linux columns).

    ``parent`` is -1 when it cannot be determined, as the spec says. The file times
    (``atime``, ``mtime``, ``ctime``, ``btime``) stay 0: osquery fills them by stat()ing the
    path when the row is emitted, which would make a replay depend on the replaying host.
    """

    table: ClassVar[str] = "process_events"
    COLUMN_TYPES: ClassVar[dict[str, str]]

    pid: int = 0
    path: str = ""
    mode: str = ""
    cmdline: str = ""
    cmdline_size: int = 0
    env: str = ""
    env_count: int = 0
    env_size: int = 0
    cwd: str = ""
    auid: int = 0
    uid: int = 0
    euid: int = 0
    gid: int = 0
    egid: int = 0
    owner_uid: int = 0
    owner_gid: int = 0
    atime: int = 0
    mtime: int = 0
    ctime: int = 0
    btime: int = 0
    overflows: str = ""
    parent: int = -1
    time: int = 0
    uptime: int = 0
    eid: str = ""
    fsuid: int = 0
    suid: int = 0
    fsgid: int = 0
    sgid: int = 0
    syscall: str = ""

    def to_dict(self) -> dict[str, Any]:
        """``{"table": "process_events", column: value, ...}`` in column order."""
        return _to_dict(self)


ProcessEventsRow.COLUMN_TYPES = {
    "pid": "BIGINT",
    "path": "TEXT",
    "mode": "TEXT",
    "cmdline": "TEXT",
    "cmdline_size": "BIGINT",
    "env": "TEXT",
    "env_count": "BIGINT",
    "env_size": "BIGINT",
    "cwd": "TEXT",
    "auid": "BIGINT",
    "uid": "BIGINT",
    "euid": "BIGINT",
    "gid": "BIGINT",
    "egid": "BIGINT",
    "owner_uid": "BIGINT",
    "owner_gid": "BIGINT",
    "atime": "BIGINT",
    "mtime": "BIGINT",
    "ctime": "BIGINT",
    "btime": "BIGINT",
    "overflows": "TEXT",
    "parent": "BIGINT",
    "time": "BIGINT",
    "uptime": "BIGINT",
    "eid": "TEXT",
    "fsuid": "BIGINT",
    "suid": "BIGINT",
    "fsgid": "BIGINT",
    "sgid": "BIGINT",
    "syscall": "TEXT",
}

Row = SocketEventsRow | ProcessEventsRow

_ROW_CLASSES: dict[str, type[SocketEventsRow] | type[ProcessEventsRow]] = {
    SocketEventsRow.table: SocketEventsRow,
    ProcessEventsRow.table: ProcessEventsRow,
}

# column names per class, computed once: to_dict runs once per emitted row
_COLUMNS: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in _ROW_CLASSES.values()
}


def _to_dict(row: Row) -> dict[str, Any]:
    out: dict[str, Any] = {"table": row.table}
    for name in _COLUMNS[type(row)]:
        out[name] = getattr(row, name)
    return out


def row_class(table: str) -> type[SocketEventsRow] | type[ProcessEventsRow]:
    """The row class for a table name; raises KeyError naming the unknown table."""
    try:
        return _ROW_CLASSES[table]
    except KeyError:
        raise KeyError(f"unknown table {table!r} (known: {', '.join(sorted(_ROW_CLASSES))})") from None


class RowWriter:
    """Writes rows to a text stream as JSON lines, one object per row.

    Strings are written as UTF-8 text (``ensure_ascii=False``) so paths and command lines
    stay readable. A string holding bytes that were not UTF-8 (kept as lone surrogates by
    the decoder) cannot be encoded as UTF-8, so that one line is written with ASCII escapes
    instead: still valid JSON, and ``\\udcXX`` names the original byte. ``write`` flushes.
    """

    __slots__ = ("_fp", "rows_written")

    def __init__(self, fp: IO[str]) -> None:
        self._fp = fp
        self.rows_written = 0

    def write(self, row: Row | Iterable[Row]) -> int:
        """Write one row, or all rows of an iterable (one event's rows), then flush once.

        Returns the number of rows written.
        """
        rows: Iterable[Row] = (row,) if isinstance(row, (SocketEventsRow, ProcessEventsRow)) else row
        n = 0
        parts: list[str] = []
        for r in rows:
            parts.append(row_line(r))
            n += 1
        if n:
            self._fp.write("".join(parts))
            self._fp.flush()
            self.rows_written += n
        return n


def _dumps(obj: dict[str, Any]) -> str:
    line = json.dumps(obj, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(obj, ensure_ascii=True)
    return line + "\n"


# The JSON line of a row, as _dumps(row.to_dict()) writes it, at a third of the cost: a live
# storm writes a row per event, and json.dumps builds an encoder per call while to_dict loops
# in Python. The dict comes from one zip over an attrgetter, the encoder is made once; without
# the C encoder (not CPython) the plain path is used. tests/test_rows.py pins the equality.
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = (
    _C_ENCODER(None, json.JSONEncoder().default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    if _C_ENCODER is not None
    else None
)
_KEYS: dict[type, tuple[str, ...]] = {cls: ("table", *cols) for cls, cols in _COLUMNS.items()}
_GET = {cls: attrgetter(*cols) for cls, cols in _COLUMNS.items()}


def row_line(row: Row) -> str:
    """One row as its JSON line (with the newline)."""
    cls = type(row)
    if _ENCODE is None or cls not in _KEYS:
        return _dumps(row.to_dict())
    line = "".join(_ENCODE(dict(zip(_KEYS[cls], (row.table, *_GET[cls](row)), strict=True)), 0))
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates (bytes that were not UTF-8): escape them
            return _dumps(row.to_dict())
    return line + "\n"
