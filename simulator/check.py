"""Compare what a scenario produced with what it expects, and report it for people and CI.

``kaudit check`` and the pytest plugin share this module: the comparison, the row diff shown
on a mismatch, the summary table and the JUnit XML. Running a scenario is
``simulator.replay``; this module only judges the result.

A row matches an expected row when every column the expected row lists has the same value
(columns it does not list are free). Matching is a maximum bipartite matching, not first
come first served, so a loosely written expected row cannot steal the row a stricter one
needed. Rows the scenario does not list are a mismatch unless ``extra_rows: true``.
"""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from .scenario import ExpectedRow, Scenario, ScenarioError, load_any

__all__ = [
    "Outcome",
    "RunResult",
    "check_one",
    "check_paths",
    "compare",
    "discover",
    "format_table",
    "match_rows",
    "write_junit",
]

SCENARIO_SUFFIXES = (".yaml", ".yml")
CAPTURE_SUFFIXES = (".log", ".raw", ".pcap", ".pcapng", ".cap")


@dataclass(slots=True)
class RunResult:
    """What one run of the collector against a scenario produced."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    kernel: dict[str, Any] = field(default_factory=dict)  # the simulated kernel after the collector exited
    seconds: float = 0.0
    error: str | None = None  # the collector failed or the run timed out
    log: str = ""  # what the collector wrote on stderr


@dataclass(slots=True)
class Outcome:
    """The verdict on one scenario: ``pass``, ``fail`` (mismatch) or ``error`` (could not run)."""

    path: str
    name: str
    verdict: str
    expected: int | None = None  # expected rows (None: the input states no expectation)
    got: int | None = None
    seconds: float = 0.0
    diff: str = ""  # readable explanation of a fail / error
    rows: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.verdict == "pass"


# --------------------------------------------------------------------------- comparison


def _row_matches(exp: dict[str, Any], got: dict[str, Any]) -> bool:
    return all(k in got and got[k] == v for k, v in exp.items())


def match_rows(expected: Sequence[ExpectedRow], got: Sequence[dict[str, Any]]) -> dict[int, int]:
    """Maximum matching expected index -> got index (Kuhn's augmenting paths; rows are few)."""
    adj = [[j for j, g in enumerate(got) if _row_matches(e.columns, g)] for e in expected]
    owner: dict[int, int] = {}  # got index -> expected index

    def augment(i: int, seen: set[int]) -> bool:
        for j in adj[i]:
            if j in seen:
                continue
            seen.add(j)
            if j not in owner or augment(owner[j], seen):
                owner[j] = i
                return True
        return False

    for i in range(len(expected)):
        augment(i, set())
    return {i: j for j, i in owner.items()}


def _fmt_value(v: Any) -> str:
    return json.dumps(v, ensure_ascii=False)


def _fmt_row(row: dict[str, Any], keys: Iterable[str] | None = None) -> str:
    keys = list(keys) if keys is not None else list(row)
    return "{" + ", ".join(f"{k}: {_fmt_value(row.get(k))}" for k in keys if k in row) + "}"


def _closest(exp: dict[str, Any], candidates: list[tuple[int, dict[str, Any]]]) -> tuple[int, list[str]] | None:
    best: tuple[int, int, list[str]] | None = None
    for j, g in candidates:
        if g.get("table") != exp.get("table"):
            continue
        wrong = [k for k, v in exp.items() if g.get(k, _MISSING) != v]
        if best is None or len(wrong) < best[1]:
            best = (j, len(wrong), wrong)
    return (best[0], best[2]) if best else None


_MISSING = object()


def compare(sc: Scenario, result: RunResult) -> tuple[bool, str]:
    """(ok, readable diff). The diff names each expected row not produced with the closest
    row that was (and the columns that differ), each unexpected row, and each counter off."""
    lines: list[str] = []
    exp = sc.expect
    got = result.rows
    if result.error:
        lines.append(f"the run failed: {result.error}")
        if result.log:
            lines.append("collector log:\n" + "\n".join("    " + ln for ln in result.log.splitlines()[-20:]))
    if exp.rows is not None:
        matched = match_rows(exp.rows, got)
        used = set(matched.values())
        unused = [(j, g) for j, g in enumerate(got) if j not in used]
        for i, e in enumerate(exp.rows):
            if i in matched:
                continue
            where = f" (line {e.line})" if e.line else ""
            lines.append(f"- expected row {i + 1}{where} not produced: {_fmt_row(e.columns)}")
            near = _closest(e.columns, unused)
            if near is None:
                lines.append(f"    no {e.table} row was left to compare with")
            else:
                j, wrong = near
                diffs = ", ".join(
                    f"{k}: expected {_fmt_value(e.columns[k])}, got "
                    + ("(no such column)" if k not in got[j] else _fmt_value(got[j][k]))
                    for k in wrong
                )
                lines.append(f"    closest: got row {j + 1}: {diffs}")
        if not exp.extra_rows:
            for j, g in unused:
                lines.append(f"+ unexpected row {j + 1}: {_fmt_row(g, _interesting(g))}")
    for name, want in exp.counters.items():
        have = int(result.counters.get(name, 0))
        if not want.holds(have):
            known = "" if name in result.counters else " (the collector has no such counter)"
            lines.append(f"! counter {name}: expected {want}, got {have}{known}")
    if exp.kernel:
        lines.extend(_compare_kernel(exp.kernel, result.kernel))
    return (not lines), "\n".join(lines)


def _interesting(row: dict[str, Any]) -> list[str]:
    """Columns worth showing for a row nobody asked for: skip empty and volatile ones."""
    volatile = {"uptime", "eid"}
    return [k for k, v in row.items() if k == "table" or (v not in ("", 0, None, -1) and k not in volatile)]


def _compare_kernel(want: dict[str, Any], have: dict[str, Any]) -> list[str]:
    out: list[str] = []
    status = have.get("status", {})
    for k, v in (want.get("status") or {}).items():
        if status.get(k) != v:
            out.append(f"! kernel after exit: {k} expected {v}, got {status.get(k)}")
    if "rules" in want and list(want["rules"]) != list(have.get("rules", [])):
        out.append(f"! kernel rules after exit: expected {want['rules']}, got {have.get('rules', [])}")
    return out


# --------------------------------------------------------------------------- running


def _default_runner(sc: Scenario) -> RunResult:
    from .replay import run_scenario

    return run_scenario(sc)


def check_scenario(sc: Scenario, runner: Callable[[Scenario], RunResult] | None = None) -> Outcome:
    """Run one loaded scenario and judge it."""
    run = runner or _default_runner
    t0 = time.monotonic()
    expected = len(sc.expect.rows) if sc.expect.rows is not None else None
    try:
        result = run(sc)
    except ScenarioError as exc:
        return Outcome(sc.path, sc.name, "error", expected, None, time.monotonic() - t0, str(exc))
    except Exception as exc:  # noqa: BLE001 - one scenario's crash must not stop the others
        tb = traceback.format_exc(limit=6)
        return Outcome(sc.path, sc.name, "error", expected, None, time.monotonic() - t0,
                       f"{type(exc).__name__}: {exc}\n{tb}")
    ok, diff = compare(sc, result)
    seconds = result.seconds or (time.monotonic() - t0)
    verdict = "pass" if ok else ("error" if result.error and not result.rows else "fail")
    return Outcome(sc.path, sc.name, verdict, expected, len(result.rows), seconds, diff, list(result.rows))


def check_one(path: str | Path, runner: Callable[[Scenario], RunResult] | None = None) -> Outcome:
    """Load, run and judge one file; a file that cannot be loaded is an ``error`` outcome."""
    t0 = time.monotonic()
    try:
        sc = load_any(path)
    except ScenarioError as exc:
        return Outcome(str(path), Path(path).stem, "error", None, None, time.monotonic() - t0, str(exc))
    return check_scenario(sc, runner)


def discover(paths: Sequence[str | Path]) -> list[Path]:
    """Scenario files under directories (sorted, recursive) and files given by name.

    Directories contribute ``*.yaml`` / ``*.yml``; a file named on the command line is taken
    whatever its suffix (an audit.log or a pcap). A missing path raises FileNotFoundError.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in SCENARIO_SUFFIXES))
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def check_paths(
    paths: Sequence[str | Path],
    *,
    jobs: int | None = None,
    runner: Callable[[Scenario], RunResult] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Check every file, ``jobs`` at a time in worker processes (default: one per core).

    Each scenario gets its own endpoint and collector, so they do not share state; the
    outcomes come back in the order of ``paths`` whatever order they finished in.
    """
    files = [Path(p) for p in paths]
    n = jobs if jobs and jobs > 0 else (os.cpu_count() or 1)
    n = max(1, min(n, len(files)))
    if n == 1 or runner is not None:
        outs = []
        for f in files:
            o = check_one(f, runner)
            if on_outcome:
                on_outcome(o)
            outs.append(o)
        return outs
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    results: dict[int, Outcome] = {}
    with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futs = {pool.submit(check_one, str(f)): i for i, f in enumerate(files)}
        from concurrent.futures import as_completed

        for fut in as_completed(futs):
            i = futs[fut]
            try:
                o = fut.result()
            except Exception as exc:  # noqa: BLE001 - a worker died: that scenario's error
                o = Outcome(str(files[i]), files[i].stem, "error", diff=f"worker failed: {exc!r}")
            results[i] = o
            if on_outcome:
                on_outcome(o)
    return [results[i] for i in range(len(files))]


# --------------------------------------------------------------------------- reporting


def format_table(outcomes: Sequence[Outcome]) -> str:
    """The summary table: scenario, rows expected/got, verdict, time; then a totals line."""
    head = ("scenario", "expected", "got", "verdict", "time")
    body = [
        (
            o.name,
            "-" if o.expected is None else str(o.expected),
            "-" if o.got is None else str(o.got),
            o.verdict.upper() if o.verdict != "pass" else "pass",
            f"{o.seconds:.2f}s",
        )
        for o in outcomes
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    aligns = ["<", ">", ">", "<", ">"]

    def fmt(r: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, a, w in zip(r, aligns, widths, strict=True)).rstrip()

    lines = [fmt(head), fmt(["-" * w for w in widths])]
    lines.extend(fmt(r) for r in body)
    passed = sum(o.ok for o in outcomes)
    failed = sum(o.verdict == "fail" for o in outcomes)
    errors = sum(o.verdict == "error" for o in outcomes)
    total = sum(o.seconds for o in outcomes)
    lines.append("")
    lines.append(f"{len(outcomes)} scenarios: {passed} passed, {failed} failed, {errors} errors ({total:.1f}s of work)")
    return "\n".join(lines)


def format_failures(outcomes: Sequence[Outcome]) -> str:
    """The diff of every scenario that did not pass, headed by its file."""
    parts = []
    for o in outcomes:
        if o.ok:
            continue
        parts.append(f"=== {o.name} ({o.path}): {o.verdict}")
        parts.append(o.diff or "(no detail)")
        parts.append("")
    return "\n".join(parts)


def write_junit(outcomes: Sequence[Outcome], path: str | Path, *, suite: str = "kaudit-check") -> None:
    """JUnit XML (one testcase per scenario) as CI systems read it."""
    ts = ET.Element(
        "testsuite",
        name=suite,
        tests=str(len(outcomes)),
        failures=str(sum(o.verdict == "fail" for o in outcomes)),
        errors=str(sum(o.verdict == "error" for o in outcomes)),
        skipped="0",
        time=f"{sum(o.seconds for o in outcomes):.3f}",
    )
    for o in outcomes:
        tc = ET.SubElement(ts, "testcase", classname="scenarios", name=o.name, file=o.path, time=f"{o.seconds:.3f}")
        if o.verdict == "fail":
            el = ET.SubElement(tc, "failure", message=f"rows expected {o.expected}, got {o.got}")
            el.text = o.diff
        elif o.verdict == "error":
            first = (o.diff.splitlines() or ["error"])[0]
            el = ET.SubElement(tc, "error", message=first[:500])
            el.text = o.diff
    root = ET.Element("testsuites")
    root.append(ts)
    ET.indent(root)
    Path(path).write_bytes(ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n")
