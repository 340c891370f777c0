"""kaudit's benchmarks: ``python -m bench SUB ...`` or ``kaudit bench SUB ...``.

Sub-benchmarks (each prints a table, ``--json FILE`` writes the figures, ``--plot FILE.png``
draws them): ``replay`` (bench/replay.py: text and netlink bytes to rows, against auparse,
laurel and ausearch) and ``storm`` (bench/storm.py: live syscall storms, kaudit collect
against auditd). ``bench.fuzz`` is the fuzzing harness, a separate entry point.

This package imports nothing at import time: ``bench.fuzz`` must import the code under test
inside its coverage instrumentation, and ``kaudit --help`` should not pay for benchmarks.
"""
