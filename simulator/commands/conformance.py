"""``kaudit conformance``: compare the simulator with the real kernel, case by case."""

from __future__ import annotations

import argparse
import json
import sys

from simulator.conformance import CASES, CaseResult, KernelUnreachable, run_conformance


def _line(res: CaseResult) -> str:
    return f"{res.name}: identical" if res.identical else f"{res.name}: different: {res.difference}"


def main(args: argparse.Namespace) -> int:
    if args.list:
        for c in CASES:
            print(f"{c.name}: {c.doc}")
        return 0
    progress = None if args.json else (lambda res: print(_line(res), flush=True))
    try:
        results = run_conformance(args.case, hz=args.hz, progress=progress)
    except KernelUnreachable as exc:
        print(f"kaudit conformance: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"kaudit conformance: {exc}", file=sys.stderr)
        return 2
    same = sum(r.identical for r in results)
    summary = f"conformance: {same}/{len(results)} cases identical"
    if args.json:
        doc = {
            "cases": [
                {"name": r.name, "description": r.doc, "identical": r.identical, "difference": r.difference,
                 "kernel": r.kernel, "simulator": r.simulator}
                for r in results
            ],
            "identical": same,
            "total": len(results),
            "summary": summary,
        }
        print(json.dumps(doc, indent=1))
    else:
        print(summary)
    return 0 if same == len(results) else 1


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "conformance",
        help="run control-plane cases against the real kernel and the simulator and compare",
        description=(
            "Send the same audit netlink requests to the real kernel and to the simulator and compare the "
            "answers message by message. Changes the kernel's audit state only under the live lock and "
            "restores it after every case (except the lost and backlog_wait_time_actual counters, which the "
            "lost-reset cases leave at 0); never sets failure=2 or enabled=2."
        ),
    )
    p.add_argument("--json", action="store_true", help="one JSON document with every transcript")
    p.add_argument("--case", action="append", metavar="NAME", help="run only this case (repeatable)")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    p.add_argument("--hz", type=int, default=None, help="the kernel's HZ (default: from its config, else 250)")
    p.set_defaults(func=main)
