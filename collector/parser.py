"""Record text -> ``Record``: the audit header parsed eagerly, the fields lazily.

This is the collector's hot path (every record the kernel sends passes here, and most are
never looked at again), so ``parse_record`` does the least it can: one compiled regex for the
header, three ``int()`` calls and a slots dataclass. The body is kept as one string and split
into fields only when a table first asks for one, by one ``findall`` into ``(key, raw)``
tuples; there is no per-field object and no value decoding here (``collector.decode`` does
that, for the fields a table reads).

Forms accepted:

* netlink: the type comes from the netlink header and the payload is
  ``audit(SEC.MSEC:SERIAL): key=value ...`` (trailing NULs and newlines ignored);
* audit.log / ``ausearch --format raw``: ``[node=NAME ]type=NAME msg=audit(SEC.MSEC:SERIAL): ...``
  where NAME is auditd's type name or ``UNKNOWN[n]``. auditd's own DAEMON_* records write
  ``audit(...) text`` without the colon; that is accepted too.

Enriched lines (auditd ``log_format=ENRICHED``, laurel) append a 0x1D (group separator) and
the daemon's interpretations (``ARCH=x86_64 SYSCALL=execve AUID="user"``). Those are not
part of the record the kernel sent: ``Record.text`` stops before the 0x1D and the rest is kept
in ``Record.enrichment``, never split into fields.

Fields (``Record.items()``) follow the kernel's ``key=value`` text: values are ``"quoted"``
(never containing a space or a quote, the kernel hex-encodes such strings), hex, bare tokens,
or ``(null)``; a field with an empty value (``mac= ``) is not listed, as in auparse and
go-libaudit. Words without ``=`` are real in some records and are skipped there, as auparse
skips them: SELinux's ``avc:  denied  { read } for  pid=...`` (reported, as auparse and
go-libaudit do, as ``seresult=denied seperms=read``), old kernels' ``login pid=1 uid=0 old
auid=4294967295 new auid=0``, ``tty pid=...``, auditd's ``auditd start, ver=...``. A
user-space message's ``msg='...'`` is opened and its fields listed in its place, as auparse
and go-libaudit do (``msg`` itself is not a field; ``text`` still has it), and the old PAM
punctuation ``(hostname=?, addr=?, terminal=cron res=success)`` is dropped as auparse drops it.
AppArmor's ``info="same as current profile, skipping"`` (a quoted value with spaces, which
the kernel's AppArmor code does write) stays one value; auparse cuts it at the first space.

The records the tables read are the kernel's syscall-exit records, which every kernel
version writes as pure ``key=value`` (SYSCALL, PATH, SOCKADDR, CWD, EXECVE, PROCTITLE, EOE,
URINGOP: ``STRICT_TYPES``). A word without ``=`` in one of those means its text is not what a
kernel wrote (an unencoded ``exe=/tmp/my prog`` would otherwise silently become
``exe=/tmp/my``), so ``items()`` raises ``RecordError("field_without_equals")`` for it and the
event yields no row.

Bad input raises ``RecordError`` whose ``reason`` is a stable counter name (``too_long``,
``bad_utf8``, ``no_header``, ``bad_header``, ``unknown_type``, ``field_without_equals``), so
that a collector loop counts and skips: it never crashes on what a kernel or a file says.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from collector.protocol.records import record_type_name, record_type_number

__all__ = [
    "MAX_AUDIT_MESSAGE_LENGTH",
    "STRICT_TYPES",
    "Record",
    "RecordError",
    "iter_log_records",
    "parse_log_line",
    "parse_record",
]

# libaudit.h: the longest message auditd accepts (PATH_MAX*2 + CONTEXT_SIZE*2 + 11 + 256 + 1).
# The kernel keeps its records under it (audit_log_execve_info splits arguments so that an
# EXECVE record stays near 7500 bytes) and auditd reads into a buffer of exactly this size, so
# a longer "record" did not come from a kernel. Measured on the message from ``audit(`` to the
# end of the kernel's text (node/type prefix and enrichment excluded); in characters for
# ``str`` input, bytes for ``bytes`` input.
MAX_AUDIT_MESSAGE_LENGTH = 8970

_GS = "\x1d"  # group separator: start of auditd/laurel enrichment

_NETLINK_HEADER = re.compile(r"audit\((\d+)\.(\d+):(\d+)\)(?:: ?| |$)")
_LOG_HEADER = re.compile(r"(?:node=(\S*) )?type=(\S+) msg=audit\((\d+)\.(\d+):(\d+)\)(?:: ?| |$)")

# key=value; the value is "double quoted", 'single quoted' (user-space msg='...') or a bare token
_KV = re.compile(r"""([^\s=]+)=("[^"]*"|'[^']*'|\S*)""")
# the same, or a word without '=' (group 3): used only when the fast path sees something odd
_TOKEN = re.compile(r"""([^\s=]+)=("[^"]*"|'[^']*'|\S*)|(\S+)""")

_TYPE_NUMBERS: dict[str, int] = {}
_RECORD_STARTS = frozenset(("type=", "node=", b"type=", b"node="))

_AVC = record_type_number("AVC")

# record types whose body is key=value only in every kernel version (see module doc)
STRICT_TYPES: frozenset[int] = frozenset(
    record_type_number(n)
    for n in ("SYSCALL", "PATH", "SOCKADDR", "CWD", "EXECVE", "PROCTITLE", "EOE", "URINGOP")
)


class RecordError(ValueError):
    """A record kaudit cannot parse; ``reason`` is a short stable counter name."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


@dataclass(slots=True)
class Record:
    """One audit record: header parsed, body kept as text and split on first access.

    ``type`` is the record type number (1300 = SYSCALL), ``sec``/``msec``/``serial`` the
    ``audit(SEC.MSEC:SERIAL)`` stamp, ``node`` the ``node=`` prefix of an aggregated log (else
    None), ``text`` the body after ``): `` exactly as the kernel wrote it (not decoded; a
    leading space, as CWD has, is kept), ``enrichment`` what an enriching daemon appended
    after 0x1D, if anything.
    """

    type: int
    sec: int
    msec: int
    serial: int
    node: str | None
    text: str
    enrichment: str | None = None
    _items: list[tuple[str, str]] | None = field(default=None, init=False, repr=False, compare=False)
    _fields: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def items(self) -> list[tuple[str, str]]:
        """Ordered ``(key, raw value)`` pairs, duplicates kept; quotes kept in the values.

        Raises RecordError ``field_without_equals`` for a corrupt body (see module doc).
        """
        items = self._items
        if items is None:
            items = self._items = _split_fields(self.text, self.type)
        return items

    def fields(self) -> dict[str, str]:
        """``key -> raw value``; when a key repeats, its first occurrence wins."""
        fields = self._fields
        if fields is None:
            fields = self._fields = dict(reversed(self.items()))
        return fields

    def get(self, key: str, default: str | None = None) -> str | None:
        """The raw value token of ``key`` (first occurrence), or ``default``."""
        fields = self._fields
        if fields is None:
            fields = self.fields()
        return fields.get(key, default)

    @property
    def type_name(self) -> str:
        """auditd's name for the type (``SYSCALL``, ``UNKNOWN[1399]``)."""
        return record_type_name(self.type)

    @property
    def audit_id(self) -> str:
        """``SEC.MSEC:SERIAL``, the id ausearch and osquery print."""
        return f"{self.sec}.{self.msec:03d}:{self.serial}"

    @property
    def time_ms(self) -> int:
        """The stamp in milliseconds since the epoch (the publisher's audit clock)."""
        return self.sec * 1000 + self.msec

    def log_line(self) -> str:
        """The record in audit.log form (``[node=N ]type=NAME msg=audit(...): text``).

        Enrichment is left out; a DAEMON record written ``audit(...) text`` comes back with
        the usual ``): ``.
        """
        prefix = f"node={self.node} " if self.node is not None else ""
        sep = ": " if self.text else ":"
        return f"{prefix}type={self.type_name} msg=audit({self.audit_id}){sep}{self.text}"


def _split_fields(text: str, rtype: int) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = _KV.findall(text)
    # fast path: every whitespace-separated word was one key=value with a value, and nothing
    # is single-quoted (the kernel's own records, i.e. nearly all of them)
    if "'" not in text and "= " not in text and text[-1:] != "=" and len(pairs) == len(text.split()):
        return pairs
    if rtype in STRICT_TYPES:
        return _split_strict(text)
    return _split_loose(text, rtype == _AVC)


def _split_strict(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value, word in _TOKEN.findall(text):
        if word:
            raise RecordError("field_without_equals", f"word {_short(word, 40)} in {_short(text)}")
        if value:
            out.append((key, value))
    return out


def _split_loose(text: str, avc: bool) -> list[tuple[str, str]]:
    """Fields of a record that may carry free text, read as auparse reads them.

    Words without ``=`` are skipped, except SELinux's unlabelled AVC verdict and permissions
    (``avc:  denied  { read write } for``), which auparse and go-libaudit both report as
    ``seresult=denied`` and ``seperms=read,write``. Values lose the punctuation of the old PAM
    format ``(hostname=?, addr=?, terminal=cron res=success)``: a ``(`` before a key, a
    ``:``, ``,`` or ``)`` after an unquoted value (``(none)`` and ``(null)`` keep theirs).
    Empty values are dropped. ``msg='...'`` is opened in place.
    """
    out: list[tuple[str, str]] = []
    tokens = _TOKEN.findall(text)
    i = 0
    n = len(tokens)
    while i < n:
        key, value, word = tokens[i]
        i += 1
        if word:
            if avc and not out and not word.startswith("avc"):
                out.append(("seresult", word))
            elif avc and len(out) == 1 and out[0][0] == "seresult" and word == "{":
                perms = []
                while i < n and tokens[i][2] and tokens[i][2] != "}":
                    perms.append(tokens[i][2])
                    i += 1
                i += 1  # the closing brace
                out.append(("seperms", ",".join(perms)))
            continue
        if key == "msg" and value[:1] == "'" and len(value) >= 2 and value[-1] == "'":
            out.extend(_split_loose(value[1:-1], False))
            continue
        if key[0] == "(" and len(key) > 1:
            key = key[1:]
        if value and value[0] not in "\"'":
            if value[-1] == ":":
                value = value[:-1]
            if value[-1:] == ",":
                value = value[:-1]
            if value[-1:] == ")" and value not in ("(none)", "(null)"):
                value = value[:-1]
        if value:
            out.append((key, value))
    return out


def _type_number(name: str) -> int:
    num = _TYPE_NUMBERS.get(name)
    if num is None:
        try:
            num = int(name) if name.isdigit() else record_type_number(name)
        except (KeyError, ValueError):
            raise RecordError("unknown_type", f"unknown record type name {_short(name, 40)}") from None
        _TYPE_NUMBERS[name] = num
    return num


def _header_error(text: str, form: str) -> RecordError:
    if "audit(" not in text:
        return RecordError("no_header", f"no audit(SEC.MSEC:SERIAL) header in {form} record {_short(text)}")
    return RecordError(
        "bad_header",
        f"malformed audit(SEC.MSEC:SERIAL): header (or no '): ') in {form} record {_short(text)}",
    )


def parse_record(type_number: int | None, data: bytes | bytearray | memoryview | str) -> Record:
    """Parse one record.

    ``type_number`` is the netlink message type for a record read from the kernel (the
    payload then starts with ``audit(``), or None for an audit.log line (which names its type:
    ``type=SYSCALL msg=audit(...)``). Raises RecordError naming the reason and the input.
    """
    if isinstance(data, str):
        text = data
        size = len(data)
    else:
        size = len(data)  # bytes: the guard below must not under-count multi-byte text
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(
                "bad_utf8", f"invalid UTF-8 at byte {exc.start}: {bytes(data[:80])!r}"
            ) from None
    if text[-1:] in ("\n", "\x00", "\r"):
        text = text.rstrip("\n\r\x00")

    if type_number is not None:
        m = _NETLINK_HEADER.match(text)
        if m is None:
            raise _header_error(text, "netlink")
        sec, msec, serial = m.groups()
        node = None
        start = 0
        rtype = type_number
    else:
        m = _LOG_HEADER.match(text)
        if m is None:
            raise _header_error(text, "audit.log")
        node, name, sec, msec, serial = m.groups()
        start = m.start(3) - 6  # where "audit(" begins: the kernel's message
        rtype = _TYPE_NUMBERS.get(name) or _type_number(name)  # no call for a name seen before

    body = text[m.end() :]
    enrichment = None
    cut = body.find(_GS)
    if cut >= 0:
        body, enrichment = body[:cut], body[cut + 1 :]
    if size - start > MAX_AUDIT_MESSAGE_LENGTH:
        kernel_text = text[start : m.end()] + body
        length = len(kernel_text) if isinstance(data, str) else len(kernel_text.encode("utf-8"))
        if length > MAX_AUDIT_MESSAGE_LENGTH:
            raise RecordError(
                "too_long",
                f"record of {length} {'characters' if isinstance(data, str) else 'bytes'} exceeds "
                f"MAX_AUDIT_MESSAGE_LENGTH "
                f"({MAX_AUDIT_MESSAGE_LENGTH}): {_short(text)}",
            )
    return Record(rtype, int(sec), int(msec), int(serial), node, body, enrichment)


def parse_log_line(line: bytes | str) -> Record | None:
    """An audit.log / ``ausearch --format raw`` line as a Record; None for a non-record line.

    Blank lines, ``#`` comments, and the ``----`` / ``time->...`` separators of ausearch's
    default output are not records (None). Anything else must parse; RecordError otherwise.
    """
    start = line[:5]
    if not isinstance(start, (str, bytes)):
        start = bytes(start)
    if start not in _RECORD_STARTS:  # not "type=" or "node=": look closer (rare)
        if isinstance(line, str):
            head = line.lstrip()[:6]
        else:
            head = bytes(line[:64]).lstrip().decode("ascii", "replace")[:6]
        if not head or head[0] == "#" or head.startswith(("----", "time->")):
            return None
    return parse_record(None, line)


def iter_log_records(lines: Iterable[bytes | str]) -> Iterator[tuple[int, Record | RecordError]]:
    """``(line number, Record or RecordError)`` for each record line of a log, in order.

    Errors are yielded, not raised, so that a reader counts them by ``reason`` and goes on;
    non-record lines (see ``parse_log_line``) are skipped. Line numbers start at 1.
    """
    for lineno, line in enumerate(lines, 1):
        try:
            rec = parse_log_line(line)
        except RecordError as exc:
            yield lineno, exc
            continue
        if rec is not None:
            yield lineno, rec
