"""``python -m bench SUB ...``: the same sub-benchmarks as ``kaudit bench SUB ...``."""

from __future__ import annotations

import argparse
import sys

from bench.cli import add_benchmarks


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="kaudit's benchmarks (bench/README.md).")
    add_benchmarks(parser)
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
