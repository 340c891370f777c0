"""``kaudit check`` (run scenario files against the full collector) and ``kaudit record``
(turn live kernel traffic during a command into a scenario)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

DEFAULT_DIR = "scenarios"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "check",
        help="replay scenario files through the simulator into the collector and compare rows",
        description=(
            "Serve each scenario through the simulated NETLINK_AUDIT endpoint into the full collector "
            "(configuration, reader, pipeline) and compare the rows and counters with its expectations. "
            "PATH may be a directory (its *.yaml files), a scenario file, an audit.log / ausearch --format raw "
            "file or a pcap of netlink traffic (those have no expectations: their rows are reported). "
            "Exit status 1 when any scenario fails."
        ),
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help=f"scenario files or directories (default: {DEFAULT_DIR}/)")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report to FILE")
    p.add_argument(
        "-j", "--jobs", type=int, default=0, metavar="N", help="scenarios run at once (default: one per core)"
    )
    p.add_argument("--rows", action="store_true", help="print the rows each scenario produced (JSON lines)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the totals line")
    p.set_defaults(func=run_check)

    r = sub.add_parser(
        "record",
        help="capture the real kernel's audit traffic during COMMAND into a scenario",
        description=(
            "Configure the real kernel as `kaudit collect` does (restoring it afterwards), run COMMAND, and "
            "write every audit message the kernel sent meanwhile, with the rows the live collector produced "
            "as the expectations (volatile columns left out), as a scenario file. Holds /tmp/kaudit-live.lock."
        ),
    )
    r.add_argument("--output", "-o", required=True, metavar="FILE", help="scenario file to write")
    r.add_argument("--duration", type=float, default=None, metavar="S",
                   help="keep capturing S seconds after COMMAND exits (default 1); without COMMAND: capture S seconds")
    r.add_argument("--pcap", metavar="FILE", help="also write the traffic as a LINKTYPE_NETLINK pcap")
    r.add_argument("--rows", metavar="FILE", default="-",
                   help="write the rows the live collector produced as JSON lines to FILE (default: stdout)")
    r.add_argument("--name", help="scenario name (default: the output file's stem)")
    r.add_argument("--description", default="", help="scenario description")
    r.add_argument("--flag", dest="flags", action="append", default=[], metavar="FLAG",
                   help="collector flag for the capture and the scenario (repeatable), e.g. --flag=--audit_allow_unix")
    r.add_argument("--all-processes", action="store_true",
                   help="keep the events and rows of every process (default: COMMAND and its descendants only)")
    r.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    r.set_defaults(func=run_record)


def run_check(args: argparse.Namespace) -> int:
    from simulator.check import check_paths, discover, format_failures, format_table, write_junit

    paths = args.paths or [DEFAULT_DIR]
    try:
        files = discover(paths)
    except FileNotFoundError as exc:
        print(f"kaudit check: {exc}", file=sys.stderr)
        return 2
    if not files:
        print(f"kaudit check: no scenario files in {' '.join(map(str, paths))}", file=sys.stderr)
        return 2

    def progress(o) -> None:  # noqa: ANN001
        if not args.quiet and sys.stderr.isatty():
            print(f"  {o.verdict:5} {o.name}", file=sys.stderr)

    outcomes = check_paths(files, jobs=args.jobs or (os.cpu_count() or 1), on_outcome=progress)
    if args.rows:
        import json

        for o in outcomes:
            for row in o.rows:
                print(json.dumps({"scenario": o.name, **row}, ensure_ascii=False))
    table = format_table(outcomes)
    if args.quiet:
        table = table.splitlines()[-1]
    failures = format_failures(outcomes)
    if failures:
        print(failures)
    print(table)
    if args.junit:
        write_junit(outcomes, args.junit)
    return 0 if all(o.ok for o in outcomes) else 1


def run_record(args: argparse.Namespace) -> int:
    from simulator.record import RecordError, record

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command and args.duration is None:
        print("kaudit record: give a COMMAND (after --) or --duration", file=sys.stderr)
        return 2
    out = Path(args.output)
    try:
        result = record(
            command,
            output=out,
            duration=args.duration,
            pcap=Path(args.pcap) if args.pcap else None,
            name=args.name,
            description=args.description,
            flags=args.flags,
            only_command=not args.all_processes,
        )
    except RecordError as exc:
        print(f"kaudit record: {exc}", file=sys.stderr)
        return 2
    import json

    lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in result.live_rows)
    if args.rows == "-":
        sys.stdout.write(lines)
        sys.stdout.flush()
    else:
        Path(args.rows).write_text(lines, encoding="utf-8")
    for w in result.warnings:
        print(f"kaudit record: warning: {w}", file=sys.stderr)
    print(
        f"kaudit record: {out}: {result.messages} messages, {result.rows} rows"
        + (f"; {args.pcap}: {result.packets} packets" if args.pcap else "")
        + f"; command exit status {result.returncode}",
        file=sys.stderr,
    )
    return 0
