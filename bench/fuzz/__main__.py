"""``python -m bench.fuzz --target NAME --seconds N [--json FILE]``: fuzz and report.

``--target all`` runs every target in turn, ``--list`` names them. The report gives per
target the engine, seconds, executions, distinct crashes and where their minimised inputs
are. Exit status: 0 without crashes, 1 when a target crashed, 2 for a usage problem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import TARGETS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    p.add_argument("--target", "-t", action="append", metavar="NAME",
                   help=f"target to fuzz, repeatable, or 'all' ({', '.join(TARGETS)})")
    p.add_argument("--seconds", "-s", type=float, default=60.0, help="time budget per target (default 60)")
    p.add_argument("--engine", choices=("auto", "atheris", "hypothesis"), default="auto",
                   help="atheris when installed (auto), else hypothesis")
    p.add_argument("--workdir", type=Path, default=None,
                   help="corpus, crashes and logs (default /tmp/kaudit-fuzz/<target>)")
    p.add_argument("--json", metavar="FILE", help="write the reports as JSON to FILE")
    p.add_argument("--list", action="store_true", help="list the targets and exit")
    p.add_argument("--quiet", "-q", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:10} {t.description}")
        return 0
    names: list[str] = []
    for item in args.target or ["all"]:
        names.extend(TARGETS if item == "all" else [item])
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        print(f"bench.fuzz: unknown target(s) {', '.join(unknown)} (known: {', '.join(TARGETS)})", file=sys.stderr)
        return 2
    if args.seconds <= 0:
        print("bench.fuzz: --seconds must be > 0", file=sys.stderr)
        return 2
    from .engine import run_target

    reports = []
    for name in names:
        try:
            rep = run_target(name, args.seconds, engine=args.engine, workdir=args.workdir, quiet=args.quiet)
        except RuntimeError as exc:
            print(f"bench.fuzz: {exc}", file=sys.stderr)
            return 2
        reports.append(rep)
        print(
            f"{rep.target:10} {rep.engine:10} {rep.seconds:7.0f} s {rep.executions:10d} execs "
            f"({rep.execs_per_second:7.0f}/s)  crashes {rep.crashes}"
            + (f"  cov {rep.coverage}" if rep.coverage else "")
        )
        for sig, path in zip(rep.signatures, rep.crash_files, strict=False):
            print(f"    {sig}  {path}")
        for note in rep.notes:
            print(f"    note: {note}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_dict() for r in reports], indent=1) + "\n", "utf-8")
    return 1 if any(r.crashes for r in reports) else 0


if __name__ == "__main__":
    sys.exit(main())
