"""``kaudit simulate``: serve a simulated audit kernel on a unix socket until stopped.

Any client of the endpoint wire protocol (kaudit's own transport, the LD_PRELOAD shim, a test
in another language) then talks to it as it would talk to NETLINK_AUDIT. With a SCENARIO
(scenario file, pcap or audit log) the simulated kernel starts in the scenario's state and
replays its messages, with their timing and faults, to the first client that registers as the
audit daemon or joins the multicast group (``simulator.replay.attach_scenario``). ``--from-kernel``
starts from the real kernel's current status, features and rules, which makes the simulator a
safe stand-in for experiments that must not touch the machine.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading

from collector.transport import KernelError, TransportError, open_transport
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel


def _scenario_hook():
    """The scenario engine's attach function, once that part of kaudit exists."""
    try:
        mod = importlib.import_module("simulator.scenario")
    except ModuleNotFoundError as exc:
        if exc.name and "simulator.scenario".startswith(exc.name):
            return None
        raise
    return getattr(mod, "attach_scenario", None)


def main(args: argparse.Namespace) -> int:
    if not args.listen.startswith("unix:") or len(args.listen) <= 5:
        print(f"kaudit simulate: --listen {args.listen!r}: expected unix:PATH", file=sys.stderr)
        return 2
    attach = None
    if args.scenario:
        attach = _scenario_hook()
        if attach is None:
            print(
                f"kaudit simulate: cannot replay {args.scenario}: scenario replay is not part of this build yet "
                "(simulator.scenario.attach_scenario is missing); run without SCENARIO for a control-plane simulator",
                file=sys.stderr,
            )
            return 2
    if args.from_kernel:
        from simulator.conformance import KernelSnapshot, detect_hz

        try:
            with open_transport("kernel", rcvbuf=0) as t:
                kernel = KernelSnapshot.take(t).simulator(hz=args.hz or detect_hz())
        except (TransportError, KernelError) as exc:
            print(f"kaudit simulate: --from-kernel: {exc}", file=sys.stderr)
            return 2
    else:
        kernel = AuditKernel(hz=args.hz or 250)
    server = EndpointServer(kernel)
    try:
        server.listen(args.listen[5:])
    except OSError as exc:
        print(f"kaudit simulate: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 2
    feed = None
    if attach is not None:
        from simulator.scenario import ScenarioError

        try:
            feed = attach(server, args.scenario, log=lambda m: print(f"kaudit simulate: {m}", file=sys.stderr, flush=True))
        except ScenarioError as exc:
            server.stop()
            print(f"kaudit simulate: {exc}", file=sys.stderr)
            return 2
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    print(f"kaudit simulate: listening on {args.listen}", file=sys.stderr, flush=True)
    if feed is not None:
        print(
            f"kaudit simulate: {args.scenario}: waiting for a client to register as the audit daemon "
            "or join the multicast group",
            file=sys.stderr,
            flush=True,
        )
    try:
        while not done.wait(0.5):
            if server.panic_message:
                break
    finally:
        if feed is not None:
            feed.stop()
        server.stop()
    if server.panic_message:
        print(f"kaudit simulate: simulated kernel panic: {server.panic_message}", file=sys.stderr)
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate",
        help="serve a simulated audit kernel on a unix socket",
        description="Serve the kernel-audit simulator at unix:PATH (SOCK_SEQPACKET, see docs/internals.md).",
    )
    p.add_argument("--listen", required=True, metavar="unix:PATH", help="where to listen")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", help="a scenario file to replay (scenario engine)")
    p.add_argument("--from-kernel", action="store_true",
                   help="start from the real kernel's status, features and rules")
    p.add_argument("--hz", type=int, default=None, help="the simulated kernel's HZ (backlog_wait_time is in jiffies)")
    p.set_defaults(func=main)
