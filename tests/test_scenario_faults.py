"""Each fault moves the counters its scenario asserts: without the fault they do not hold."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from simulator.check import compare
from simulator.replay import run_scenario
from simulator.scenario import Fault, Timing, load_scenario

ROOT = Path(__file__).resolve().parents[1]
TOLERATED = {"reorder", "interleave"}  # faults a collector must absorb without a trace


def _key(row: dict) -> str:
    return repr(sorted((k, v) for k, v in row.items() if k not in ("uptime", "eid")))


FAULT_FILES = sorted((ROOT / "scenarios").glob("fault-*.yaml"))


@pytest.mark.skipif(not FAULT_FILES, reason="no bundled fault scenarios")
@pytest.mark.parametrize("path", FAULT_FILES, ids=lambda p: p.stem)
def test_fault_scenario_passes_and_its_counters_depend_on_the_fault(path):
    sc = load_scenario(path)
    assert sc.expect.counters, f"{path.name}: a fault scenario must assert counters"
    result = run_scenario(sc)
    ok, diff = compare(sc, result)
    assert ok, diff
    plain = copy.deepcopy(sc)
    plain.steps = [s for s in sc.steps if not isinstance(s, Fault)]
    plain.kernel.immutable = False
    plain.kernel.refuse = {}
    plain.timing = Timing()
    if not sc.faults() and not (sc.kernel.immutable or sc.kernel.refuse):
        pytest.fail(f"{path.name} injects no fault")
    without = run_scenario(plain)
    kinds = {f.kind for f in sc.faults()}
    if kinds and kinds <= TOLERATED:
        # reordering loses nothing: the same rows and the same (zero) loss counters as in order
        assert sorted(map(_key, without.rows)) == sorted(map(_key, result.rows))
        for n, want in sc.expect.counters.items():
            assert want.holds(int(without.counters.get(n, 0))), n
        return
    moved = [n for n, want in sc.expect.counters.items() if not want.holds(int(without.counters.get(n, 0)))]
    assert moved, f"{path.name}: the asserted counters {list(sc.expect.counters)} hold without the fault too"


def test_replay_is_deterministic_and_keeps_serials_gap_free():
    sc = load_scenario(ROOT / "scenarios" / "python-tcp4-connect.yaml")
    a, b = run_scenario(sc), run_scenario(sc)
    strip = lambda rows: [{k: v for k, v in r.items() if k not in ("uptime", "eid")} for r in rows]  # noqa: E731
    assert strip(a.rows) == strip(b.rows) and a.rows
    assert a.counters.get("lost_serials") == 0 and a.counters.get("ledger.balanced") == 1
    assert a.kernel["status"]["pid"] == 0 and a.kernel["rules"] == []  # the collector restored the kernel
