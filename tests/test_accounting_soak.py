"""The soak's machinery (bench/soak.py): its verdict logic, and a short live run of it.

The real soak runs 10 minutes and is run by hand (``python -m bench.soak --json FILE``); here
``evaluate`` is checked on made-up samples (a flat RSS passes, growth or an inexact ledger
fails), and the whole loop runs for 0.2 minutes on the real kernel (marker ``live``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # bench/ is not an installed package: run from the repository
    sys.path.insert(0, str(ROOT))

from bench.soak import SoakReport, baseline_time, evaluate, rss_kb, run_soak  # noqa: E402

GOOD_LEDGER = {"received": 100, "dispatched": 90, "dropped": 4, "in_flight": 6, "unaccounted": 0, "balanced": True}


def _report(samples: list[tuple[float, int]], seconds: float = 600.0, rc: int = 0) -> SoakReport:
    return SoakReport(minutes=seconds / 60, seconds=seconds, samples=samples, returncode=rc)


def test_flat_rss_and_exact_ledger_pass() -> None:
    samples = [(t, 30000 + (t % 7)) for t in range(0, 601, 5)]
    rep = evaluate(_report(samples), {"ledger": GOOD_LEDGER, "rows_by_table": {"socket_events": 3}})
    assert rep.passed, rep.failures
    assert rep.rss_baseline_kb == samples[12][1]  # the sample at 60 s
    assert rep.rss_end_kb == samples[-1][1]


def test_rss_growth_fails() -> None:
    samples = [(t, 30000 + 10 * t) for t in range(0, 601, 5)]  # +5 MB over 9 minutes
    rep = evaluate(_report(samples), {"ledger": GOOD_LEDGER})
    assert not rep.passed
    assert any("RSS moved" in f for f in rep.failures)
    assert rep.rss_change > 0.10


def test_inexact_ledger_fails() -> None:
    samples = [(t, 30000) for t in range(0, 601, 5)]
    bad = {**GOOD_LEDGER, "received": 101, "unaccounted": 1, "balanced": False}
    rep = evaluate(_report(samples), {"ledger": bad})
    assert not rep.passed and any("ledger" in f for f in rep.failures)


def test_collect_failure_and_missing_stats_fail() -> None:
    samples = [(t, 30000) for t in range(0, 601, 5)]
    rep = evaluate(_report(samples, rc=1), None)
    assert not rep.passed
    assert len(rep.failures) == 2


def test_baseline_is_the_first_minute_or_the_first_third() -> None:
    assert baseline_time(600) == 60
    assert baseline_time(12) == 4


def test_rss_of_this_process_is_read() -> None:
    import os

    kb = rss_kb(os.getpid())
    assert kb is not None and kb > 1000
    assert rss_kb(2**22 + 12345) is None


@pytest.mark.live
def test_short_live_soak(live_audit, tmp_path) -> None:
    rep = run_soak(0.2, sample_seconds=1.0, workdir=tmp_path, log=lambda m: None)
    assert rep.returncode == 0, rep.failures
    assert rep.ledger.get("balanced") is True and rep.ledger.get("unaccounted") == 0, rep.ledger
    assert rep.ledger["received"] > 0
    assert rep.workload.get("connects", 0) > 20 and rep.workload.get("execs", 0) > 10, rep.workload
    assert rep.rows_by_table.get("socket_events", 0) > 0
    assert rep.restore_fixups == [], "kaudit collect did not restore the kernel itself"
    assert len(rep.samples) >= 5
    # a 12-second run is too short for a memory verdict to mean much, but not for a gross leak
    assert abs(rep.rss_change) < 0.5, rep.as_dict()
