"""``kaudit bench SUB ...`` (and ``python -m bench SUB ...``): the benchmarks' one entry point.

Sub-benchmarks register themselves the way kaudit's commands do (``register(subparsers)``),
so this file stays a list. Modules are imported only when ``kaudit`` builds its parser, and
each sub-benchmark imports the code it measures only when it runs.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["BENCHMARKS", "add_benchmarks", "register"]

# module -> sub-benchmark it registers
BENCHMARKS = (
    "bench.replay",  # replay
    "bench.storm",  # storm
)


def add_benchmarks(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    sub.required = True
    for name in BENCHMARKS:
        importlib.import_module(name).register(sub)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench",
        help="benchmarks: replay (kaudit vs auparse, laurel, ausearch), storm (live, vs auditd)",
        description="kaudit's benchmarks. Each prints a table; --json FILE writes the figures, "
        "--plot FILE.png draws them. See bench/README.md and docs/performance.md.",
    )
    add_benchmarks(p)
