"""`kaudit` entry point.

Each subcommand lives in the module that owns its behaviour and registers itself through a
``register(subparsers)`` function, so this file stays a list and never grows logic.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# module -> subcommands it registers (documentation only; the module's register() is the truth)
COMMAND_MODULES = (
    "collector.commands.status",  # status
    "collector.commands.rules",  # rules list|add|delete|clear
    "collector.commands.collect",  # collect
    "collector.commands.replay",  # replay
    "simulator.commands.simulate",  # simulate
    "simulator.commands.conformance",  # conformance
    "simulator.commands.check",  # check, record
    "simulator.commands.verify",  # verify
    "simulator.commands.wrap",  # wrap
    "bench.cli",  # bench
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kaudit",
        description="Test harness and kernel-audit simulator for Linux audit collectors.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue  # that part of kaudit is not installed in this build
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
