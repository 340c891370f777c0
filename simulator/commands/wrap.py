"""``kaudit wrap``: run an unmodified program with its NETLINK_AUDIT socket on the simulator.

``kaudit wrap --endpoint unix:PATH -- COMMAND ...`` replaces itself with COMMAND, redirected to
an endpoint served elsewhere (``kaudit simulate``); ``kaudit wrap --scenario FILE -- COMMAND``
serves a private simulator replaying FILE for COMMAND's lifetime. Either way the exit code is
COMMAND's (128 + N when signal N ended it); 2 means kaudit could not do its part (no C
compiler for the redirector, a scenario that does not load, a command that never registered
within --ready-timeout).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from simulator.redirect import ShimBuildError


def _command(args: argparse.Namespace) -> list[str]:
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    return cmd


def main(args: argparse.Namespace) -> int:
    from simulator.wrap import WrapError, exec_wrapped, run_with_scenario

    cmd = _command(args)
    if not cmd:
        print("kaudit wrap: no command given (kaudit wrap --endpoint unix:PATH -- COMMAND [ARGS...])", file=sys.stderr)
        return 2
    if bool(args.endpoint) == bool(args.scenario):
        print("kaudit wrap: give exactly one of --endpoint unix:PATH and --scenario FILE", file=sys.stderr)
        return 2
    try:
        if args.endpoint:
            exec_wrapped(cmd, args.endpoint, on_close=args.on_close or "errno")
            return 2  # not reached: exec replaced us
        return _scenario(cmd, args, run_with_scenario)
    except (ShimBuildError, WrapError, ValueError, OSError) as exc:
        print(f"kaudit wrap: {exc}", file=sys.stderr)
        return 127 if isinstance(exc, WrapError) and "not found" in str(exc) else 2


def _scenario(cmd: list[str], args: argparse.Namespace, run: Callable[..., Any]) -> int:
    from simulator.scenario import ScenarioError, load_scenario

    try:
        sc = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"kaudit wrap: {exc}", file=sys.stderr)
        return 2
    procs: list = []

    def forward(signum: int, _frame: object) -> None:
        for p in procs:
            try:
                os.killpg(p.pid, signum)
            except OSError:
                pass

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run(
            cmd,
            sc,
            ready_timeout=args.ready_timeout,
            linger=args.linger,
            grace=args.grace,
            stop=not args.keep_running,
            on_close=args.on_close or "term",
            on_start=lambda _server, proc: procs.append(proc),
        )
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    for note in result.notes:
        print(f"kaudit wrap: {note}", file=sys.stderr)
    if not args.quiet:
        who = f"pid {result.reader_pid} ({result.mode})" if result.registered else "nobody"
        state = "all read" if result.delivered else "not all read"
        print(
            f"kaudit wrap: scenario {sc.name}: {result.messages} messages for {who}, {state}; "
            f"command ended by {result.stopped_by} with status {result.returncode}",
            file=sys.stderr,
        )
    if result.error:
        print(f"kaudit wrap: {result.error}", file=sys.stderr)
        return 2
    return result.returncode


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "wrap",
        help="run an unmodified collector with its NETLINK_AUDIT socket on the simulator",
        description=(
            "Run COMMAND with an LD_PRELOAD redirector that turns its NETLINK_AUDIT sockets into "
            "connections to a kaudit simulator (docs/wrap.md). Statically linked and Go programs "
            "bypass libc and are not reached."
        ),
        epilog="examples:\n  kaudit wrap --endpoint unix:/tmp/audit.sock -- auditctl -s\n"
        "  kaudit wrap --scenario scenarios/x.yaml -- auditd -f -c /tmp/auditd-conf",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--endpoint", metavar="unix:PATH", help="a running simulator endpoint (kaudit simulate)")
    p.add_argument("--scenario", metavar="FILE", help="serve a private simulator replaying FILE")
    p.add_argument("--ready-timeout", type=float, default=None, metavar="S",
                   help="--scenario: fail when COMMAND has not registered (or joined multicast) within S seconds")
    p.add_argument("--linger", type=float, default=0.5, metavar="S",
                   help="--scenario: let COMMAND run S seconds after the last message was read (default 0.5)")
    p.add_argument("--grace", type=float, default=10.0, metavar="S",
                   help="--scenario: seconds between SIGTERM and SIGKILL (default 10)")
    p.add_argument("--keep-running", action="store_true",
                   help="--scenario: do not stop COMMAND when the scenario ends; serve until it exits")
    p.add_argument("--on-close", choices=("errno", "term"), default=None,
                   help="when the endpoint goes away: calls fail with ECONNREFUSED (errno), and also "
                        "SIGTERM the process (term; the default with --scenario)")
    p.add_argument("--quiet", "-q", action="store_true", help="--scenario: no summary line on stderr")
    p.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARGS...]")
    p.set_defaults(func=main)
