"""``kaudit replay SOURCE... [--output FILE] [flags]``: recorded audit records to table rows.

Each SOURCE goes through the same pipeline ``kaudit collect`` uses (``collector.pipeline``),
so a capture replayed gives the rows the live run gave. Rows are written as JSON lines, one
object per row, ``{"table": ..., column: value}``, integer columns as numbers.

Sources are read by a *format*: ``pcap`` (LINKTYPE_NETLINK captures, e.g. ``kaudit record
--pcap``), ``scenario`` (kaudit scenario files: their recorded kernel messages, without faults,
timing or expectations; that is ``kaudit check``) and ``auditlog`` (audit.log and ``ausearch
--format raw`` text, with or without ``node=`` prefixes), detected in that order. A format is
a ``SourceFormat`` (a name, a ``detect`` on the file name and its first bytes, and a ``feed``
that pushes the source into a pipeline); ``register_source_format`` adds one. The pcap and
scenario readers are the scenario engine's (``simulator.scenario.detect_format`` and
``load_messages``), imported when first needed. ``-`` reads standard input.

Each source gets its own pipeline (its serials are its own: a gap between two files is not a
lost event); event ids continue across sources and the counters are summed.

Exit codes: 0 done; 1 the record ledger did not balance (a pipeline bug, reported);
2 usage: an unknown flag, a SOURCE that does not exist or cannot be read, a scenario file or
capture that cannot be used (``file:line: problem``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, BinaryIO

from collector.flags import AuditFlags, add_flag_arguments
from collector.pipeline import DEFAULT_TIMEOUT_MS, Pipeline, PipelineStats, report_stats
from collector.rows import RowWriter

__all__ = [
    "SOURCE_FORMATS",
    "SourceError",
    "SourceFormat",
    "register",
    "register_source_format",
    "replay_sources",
    "run",
]

EXIT_OK, EXIT_LEDGER, EXIT_USAGE = 0, 1, 2
# replay shows both tables unless a flag turns one off (osquery's default has sockets off)
REPLAY_DEFAULTS = AuditFlags(allow_sockets=True, allow_process_events=True)


class SourceError(OSError):
    """A SOURCE that cannot be read; the message names it and says why."""


@dataclass(slots=True, frozen=True)
class SourceFormat:
    """How to read one kind of source into a pipeline."""

    name: str
    detect: Callable[[str, bytes], bool]  # (source name, first bytes) -> is it mine?
    feed: Callable[[BinaryIO, Pipeline], None]
    description: str = ""


def _feed_auditlog(stream: BinaryIO, pipeline: Pipeline) -> None:
    # lines as bytes: the parser decides about invalid UTF-8 (counted, never a crash)
    pipeline.feed_stream(stream)


AUDITLOG = SourceFormat(
    "auditlog",
    lambda name, head: True,  # the fallback: any text with audit records
    _feed_auditlog,
    "audit.log / ausearch --format raw text (node= prefixes allowed)",
)

# tried in order; the first whose detect() says yes reads the source
SOURCE_FORMATS: list[SourceFormat] = [AUDITLOG]
_AUDIT_REPLACE = 1329  # a kernel message, not a record: the reader never passes it on either


def register_source_format(fmt: SourceFormat) -> None:
    """Add a format before the catch-all ``auditlog`` (scenario files, pcaps)."""
    if any(f.name == fmt.name for f in SOURCE_FORMATS):
        raise ValueError(f"source format {fmt.name!r} is already registered")
    SOURCE_FORMATS.insert(len(SOURCE_FORMATS) - 1, fmt)


def _detect_capture(kind: str) -> Callable[[str, bytes], bool]:
    def detect(name: str, head: bytes) -> bool:
        try:
            from simulator.scenario import detect_format
        except ImportError:  # a collector installed without the simulator reads text logs only
            return False
        return detect_format(name, head) == kind

    return detect


def _feed_capture(stream: BinaryIO, pipeline: Pipeline) -> None:
    """A pcap or scenario file: its kernel messages, records as the daemon receives them."""
    from simulator.scenario import ScenarioError, load_messages

    try:
        msgs = load_messages(stream, getattr(stream, "name", None))
    except ScenarioError as exc:
        raise SourceError(str(exc)) from None  # file:line: problem
    pipeline.feed_messages(m for m in msgs if m.is_record and m.type != _AUDIT_REPLACE)


for _kind, _what in (
    ("pcap", "LINKTYPE_NETLINK capture of the kernel's audit messages (kaudit record --pcap, nlmon)"),
    ("scenario", "kaudit scenario file: its recorded kernel messages (no faults, timing or expectations)"),
):
    register_source_format(SourceFormat(_kind, _detect_capture(_kind), _feed_capture, _what))


def _format_by_name(name: str) -> SourceFormat:
    for f in SOURCE_FORMATS:
        if f.name == name:
            return f
    raise ValueError(f"unknown source format {name!r} (known: {', '.join(f.name for f in SOURCE_FORMATS)})")


def check_sources(sources: list[str]) -> None:
    """Every SOURCE must exist and be a readable file before any row is written."""
    if sources.count("-") > 1:
        raise SourceError("'-' (standard input) can be given only once")
    for src in sources:
        if src == "-":
            continue
        if not os.path.exists(src):
            raise SourceError(f"{src}: no such file")
        if os.path.isdir(src):
            raise SourceError(f"{src}: is a directory, not an audit log")
        if not os.access(src, os.R_OK):
            raise SourceError(f"{src}: permission denied")


def _open(src: str) -> BinaryIO:
    if src == "-":
        return sys.stdin.buffer
    try:
        return open(src, "rb")  # noqa: SIM115 - closed by the caller
    except OSError as exc:
        raise SourceError(f"{src}: {exc.strerror or exc}") from exc


def _detect(src: str, stream: BinaryIO, forced: str | None) -> SourceFormat:
    if forced:
        return _format_by_name(forced)
    head = b""
    peek = getattr(stream, "peek", None)
    if peek is not None:
        try:
            head = peek(4096)[:4096]
        except OSError:
            head = b""
    for fmt in SOURCE_FORMATS:
        if fmt.detect(src, head):
            return fmt
    raise SourceError(f"{src}: not a format kaudit can replay")  # pragma: no cover - auditlog takes all


def replay_sources(
    sources: list[str],
    flags: AuditFlags,
    emit: Callable[[list], None] | None,
    *,
    timeout_ms: int = DEFAULT_TIMEOUT_MS,
    source_format: str | None = None,
) -> PipelineStats:
    """Run every source through its own pipeline; return the summed counters."""
    check_sources(sources)
    total = PipelineStats()
    opts = flags.table_options()
    for src in sources:
        pipeline = Pipeline(opts, emit, timeout_ms=timeout_ms, uptime=None, first_eid=1 + total.rows)
        stream = _open(src)
        try:
            fmt = _detect(src, stream, source_format)
            fmt.feed(stream, pipeline)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        total.merge(pipeline.finish())
    return total


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="turn recorded audit logs into socket_events/process_events rows (JSON lines)",
        description=(
            "Read audit.log / 'ausearch --format raw' files, pcap captures of audit netlink traffic or "
            "kaudit scenario files and write osquery socket_events and process_events rows as JSON "
            "lines. Both tables are on unless a flag turns one off."
        ),
        allow_abbrev=False,
    )
    p.add_argument(
        "sources", nargs="+", metavar="SOURCE", help="audit log, pcap or scenario file, or - for standard input"
    )
    p.add_argument("--output", "-o", metavar="FILE", help="write rows here (default: standard output)")
    p.add_argument("--stats", action="store_true", help="print the counters and the record ledger on stderr")
    p.add_argument("--stats-json", metavar="FILE", help="write the counters as JSON to FILE")
    p.add_argument(
        "--timeout-ms",
        type=int,
        default=DEFAULT_TIMEOUT_MS,
        metavar="MS",
        help=f"complete an event without EOE after this much audit time (default {DEFAULT_TIMEOUT_MS})",
    )
    p.add_argument(
        "--format",
        dest="source_format",
        choices=None,
        metavar="FORMAT",
        help="read every SOURCE as FORMAT instead of detecting it (known: "
        + ", ".join(f.name for f in SOURCE_FORMATS)
        + ")",
    )
    add_flag_arguments(p, REPLAY_DEFAULTS)
    p.set_defaults(func=run)


def _err(msg: str) -> None:
    print(f"kaudit replay: {msg}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    flags: AuditFlags = args.audit_flags
    try:
        check_sources(args.sources)
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    if args.source_format:
        try:
            _format_by_name(args.source_format)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_USAGE
    out: IO[str]
    if args.output and args.output != "-":
        try:
            out = open(args.output, "w", encoding="utf-8")  # noqa: SIM115 - closed below
        except OSError as exc:
            _err(f"--output {args.output}: {exc.strerror or exc}")
            return EXIT_USAGE
    else:
        out = sys.stdout
    writer = RowWriter(out)
    try:
        stats = replay_sources(
            args.sources, flags, writer.write, timeout_ms=args.timeout_ms, source_format=args.source_format
        )
    except SourceError as exc:
        _err(str(exc))
        return EXIT_USAGE
    finally:
        if out is not sys.stdout:
            out.close()
    report_stats(stats, text=args.stats, json_path=args.stats_json)
    if not stats.ledger.balanced:
        _err(
            f"record ledger does not balance: {stats.ledger.unaccounted} record(s) unaccounted (a kaudit bug)"
        )
        return EXIT_LEDGER
    return EXIT_OK
