"""``bench replay``: kaudit's pipeline against auparse, laurel and ausearch on the same records.

One run builds the corpus (bench/corpus.py: real connect and execve events repeated, about
5 records per event, every event ending in EOE) at each size asked (200,000 and 2,000,000
records by default) in a temporary directory, then times every tool on it, each in its own
child process so that wall time, CPU time and peak RSS are measured the same way for all
(``bench.peers.measure``: ``os.wait4`` on that child):

==================  ==========================================================================
kaudit-text         ``collector.commands.replay.replay_sources``: the ``kaudit replay`` pipeline,
                    audit.log text to rows (rows built, not serialised)
kaudit-netlink      the records as the kernel's unicast netlink datagrams, through
                    ``collector.protocol.netlink.decode_datagram`` and ``Pipeline.feed_netlink``,
                    as ``kaudit collect`` receives them
kaudit-replay-cli   ``kaudit replay FILE --output OUT``: the command, rows written as JSON lines
auparse             Debian python3-audit from /usr/bin/python3: every record, every field
laurel              Debian laurel reading stdin, writing its JSON log into a temporary folder
ausearch            ``ausearch --format raw -if FILE`` to a file
==================  ==========================================================================

Rates are records (and events) of the corpus divided by the child's wall time, start to exit:
interpreter start-up and imports included for everyone. For the Python tools the in-loop time
is reported as well. ``ratio`` columns compare each tool with kaudit-text. Each tool runs
``--repeat`` times, round robin (so a burst of background load hits every tool alike), and the
median wall time is reported; peak RSS is the largest seen.

What each tool counted is kept (``seen``): a tool that skipped records cannot pass for a fast
one. auparse 3.0.9 reports fewer records than the file holds: it ends an event at PROCTITLE
and drops the EOE that follows (the corpus has 2,759 such EOEs per 200,000 records).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.corpus import CorpusInfo, build_corpus
from bench.machine import machine_info, machine_line, write_outputs
from bench.peers import (
    Measured,
    auparse_command,
    ausearch_command,
    count_lines,
    laurel_command,
    measure,
    peer_versions,
    unavailable,
)

__all__ = ["BASELINE", "TOOLS", "ToolResult", "format_report", "register", "run_replay_bench"]

REPO_ROOT = Path(__file__).resolve().parents[1]
BASELINE = "kaudit-text"
TOOLS = ("kaudit-text", "kaudit-netlink", "kaudit-replay-cli", "auparse", "laurel", "ausearch")
KAUDIT_TOOLS = ("kaudit-text", "kaudit-netlink", "kaudit-replay-cli")
DEFAULT_SIZES = (200_000, 2_000_000)
LABELS = {
    "kaudit-text": "kaudit text->rows",
    "kaudit-netlink": "kaudit netlink->rows",
    "kaudit-replay-cli": "kaudit replay (JSON out)",
    "auparse": "auparse Python loop",
    "laurel": "laurel (stdin)",
    "ausearch": "ausearch --format raw",
}


@dataclass(slots=True)
class ToolResult:
    """One tool on one corpus size (medians over the repeats)."""

    tool: str
    label: str
    size: int  # corpus records
    records: int  # corpus records (the work every tool was given)
    events: int
    wall_s: float | None = None
    wall_samples: list[float] = field(default_factory=list)
    user_s: float | None = None
    sys_s: float | None = None
    cpu_s: float | None = None
    maxrss_kb: int | None = None
    loop_s: float | None = None  # in-process loop time (Python tools)
    records_per_s: float | None = None
    events_per_s: float | None = None
    loop_records_per_s: float | None = None
    ratio_to_kaudit: float | None = None  # this tool's records/s / kaudit-text's
    kaudit_speedup: float | None = None  # kaudit-text's records/s / this tool's
    seen: dict = field(default_factory=dict)  # what the tool itself counted
    error: str | None = None
    check: str | None = None  # a count that does not match the corpus

    def as_dict(self) -> dict:
        return asdict(self)


# --- the kaudit workers (run in a child: python -m bench.replay _worker TOOL FILE) -------------------


def _worker(tool: str, path: str, out: str | None) -> dict:
    t0 = time.perf_counter()
    from collector.commands.replay import REPLAY_DEFAULTS, replay_sources
    from collector.pipeline import Pipeline

    t1 = time.perf_counter()
    if tool == "kaudit-text":
        stats = replay_sources([path], REPLAY_DEFAULTS, None)
    elif tool == "kaudit-netlink":
        from bench.corpus import iter_netlink_datagrams
        from collector.protocol.netlink import NetlinkError, decode_datagram

        pipeline = Pipeline(REPLAY_DEFAULTS.table_options(), None, uptime=None)
        feed = pipeline.feed_messages
        bad = 0
        batch: list = []
        # batches of datagrams, as the live reader hands them to the pipeline (Reader.drain)
        for dgram in iter_netlink_datagrams(path):
            try:
                batch.extend(decode_datagram(dgram))
            except NetlinkError:
                bad += 1
                continue
            if len(batch) >= 4096:
                feed(batch)
                batch = []
        feed(batch)
        stats = pipeline.finish()
        stats.transport["bad_datagram"] = bad
    else:
        raise SystemExit(f"unknown worker tool {tool!r}")
    t2 = time.perf_counter()
    return {
        "records": stats.records,
        "events": stats.events,
        "rows": stats.rows,
        "rows_by_table": dict(stats.table.rows),
        "lost_serials": stats.lost_serials,
        "drops": sum(stats.drops.values()),
        "balanced": stats.ledger.balanced,
        "import_s": t1 - t0,
        "loop_s": t2 - t1,
    }


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    return env


# --- one tool, one sample ---------------------------------------------------------------------------


def _sample(tool: str, info: CorpusInfo, workdir: Path, timeout: float) -> tuple[Measured, dict, str | None]:
    """Run the tool once; return the measurement, what it counted, and a count mismatch if any."""
    log, nlfile = info.log_path, info.netlink_path
    seen: dict = {}
    check = None
    if tool in ("kaudit-text", "kaudit-netlink"):
        src = log if tool == "kaudit-text" else nlfile
        m = measure(
            [sys.executable, "-m", "bench.replay", "_worker", tool, src],
            cwd=REPO_ROOT,
            env=_child_env(),
            timeout=timeout,
        )
        seen = m.json_out()
        if not m.failure():
            if seen.get("records") != info.records or seen.get("events") != info.events:
                check = f"saw {seen.get('records')} records / {seen.get('events')} events"
            elif not seen.get("balanced") or seen.get("lost_serials"):
                check = f"ledger balanced={seen.get('balanced')} lost={seen.get('lost_serials')}"
    elif tool == "kaudit-replay-cli":
        out = workdir / "kaudit-rows.jsonl"
        m = measure(
            [sys.executable, "-m", "collector.cli", "replay", log, "--output", str(out)],
            cwd=REPO_ROOT,
            env=_child_env(),
            timeout=timeout,
        )
        if not m.failure():
            seen = {"rows": count_lines(out)}
        out.unlink(missing_ok=True)
    elif tool == "auparse":
        m = measure(auparse_command(log, workdir), timeout=timeout)
        seen = m.json_out()
        if not m.failure() and seen.get("events") != info.events:
            check = f"saw {seen.get('events')} events"
    elif tool == "laurel":
        argv, out = laurel_command(workdir)
        m = measure(argv, stdin_path=log, cwd=workdir, timeout=timeout)
        if not m.failure():
            seen = {"events": count_lines(out) if out.exists() else 0}
            if seen["events"] != info.events:
                check = f"wrote {seen['events']} events"
        shutil.rmtree(out.parent, ignore_errors=True)
    elif tool == "ausearch":
        out = workdir / "ausearch.out"
        m = measure(ausearch_command(log), stdout_path=out, timeout=timeout)
        if not m.failure():
            seen = {"records": count_lines(out, b"type=")}
            if seen["records"] != info.records:
                check = f"printed {seen['records']} records"
        out.unlink(missing_ok=True)
    else:
        raise ValueError(f"unknown tool {tool!r} (known: {', '.join(TOOLS)})")
    return m, seen, check


def _why_unavailable(tool: str) -> str | None:
    if tool in KAUDIT_TOOLS:
        return None
    return unavailable(tool)


def run_replay_bench(
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    tools: tuple[str, ...] = TOOLS,
    *,
    workdir: str | os.PathLike[str] | None = None,
    repeat: int = 3,
    keep: bool = False,
    corpus_dir: str | os.PathLike[str] | None = None,
    timeout: float = 3600.0,
    progress=None,
) -> dict:
    """Build the corpora, run every tool ``repeat`` times on each; return the report (JSON-ready)."""
    for t in tools:
        if t not in TOOLS:
            raise ValueError(f"unknown tool {t!r} (known: {', '.join(TOOLS)})")
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    say = progress or (lambda msg: None)
    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="kaudit-bench-replay-")) if own_tmp else Path(workdir)
    base.mkdir(parents=True, exist_ok=True)
    report: dict = {
        "benchmark": "replay",
        "machine": machine_info(),
        "versions": peer_versions(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": repeat,
        "sizes": [],
    }
    skipped = {t: why for t in tools if (why := _why_unavailable(t))}
    try:
        for size in sizes:
            cdir = base / f"corpus-{size}"
            say(f"building the {size:,}-record corpus in {cdir}")
            info = build_corpus(cdir, size, corpus_dir=corpus_dir)
            results = {
                t: ToolResult(t, LABELS[t], size, info.records, info.events, error=skipped.get(t)) for t in tools
            }
            samples: dict[str, list[Measured]] = {t: [] for t in tools}
            for i in range(repeat):
                for t in tools:
                    res = results[t]
                    if res.error:
                        continue
                    say(f"  {size:,} records: {t} (run {i + 1}/{repeat})")
                    m, seen, check = _sample(t, info, cdir, timeout)
                    fail = m.failure()
                    if fail:
                        res.error = fail
                        continue
                    samples[t].append(m)
                    res.seen = seen
                    res.check = res.check or check
            for t in tools:
                _summarise(results[t], samples[t])
            _ratios(results)
            report["sizes"].append(
                {"size": size, "corpus": info.as_dict(), "results": [results[t].as_dict() for t in tools]}
            )
            if not keep:
                shutil.rmtree(cdir, ignore_errors=True)
    finally:
        if own_tmp and not keep:
            shutil.rmtree(base, ignore_errors=True)
    report["rss_scaling"] = _rss_scaling(report)
    report["targets"] = _targets(report)
    return report


def _summarise(res: ToolResult, ms: list[Measured]) -> None:
    if not ms:
        return
    res.wall_samples = [round(m.wall_s, 4) for m in ms]
    ordered = sorted(ms, key=lambda m: m.wall_s)
    mid = ordered[(len(ordered) - 1) // 2]
    res.wall_s = mid.wall_s
    res.user_s, res.sys_s, res.cpu_s = mid.user_s, mid.sys_s, mid.cpu_s
    res.maxrss_kb = max(m.maxrss_kb for m in ms)
    res.records_per_s = res.records / mid.wall_s if mid.wall_s > 0 else None
    res.events_per_s = res.events / mid.wall_s if mid.wall_s > 0 else None
    loops = [m.json_out().get("loop_s") for m in ms]
    loops = [x for x in loops if isinstance(x, (int, float)) and x > 0]
    if loops:
        res.loop_s = statistics.median(loops)
        res.loop_records_per_s = res.records / res.loop_s


def _ratios(results: dict[str, ToolResult]) -> None:
    base = results.get(BASELINE)
    if base is None or not base.records_per_s:
        return
    for res in results.values():
        if res.records_per_s:
            res.ratio_to_kaudit = res.records_per_s / base.records_per_s
            res.kaudit_speedup = base.records_per_s / res.records_per_s


def _rss_scaling(report: dict) -> dict:
    """Peak RSS of each tool on the largest size over that on the smallest."""
    sizes = report["sizes"]
    if len(sizes) < 2:
        return {}
    small, big = sizes[0], sizes[-1]
    out = {}
    for rs, rb in zip(small["results"], big["results"], strict=True):
        if rs["maxrss_kb"] and rb["maxrss_kb"]:
            out[rs["tool"]] = {
                "small_kb": rs["maxrss_kb"],
                "big_kb": rb["maxrss_kb"],
                "growth": rb["maxrss_kb"] / rs["maxrss_kb"] - 1,
            }
    return out


def _targets(report: dict) -> dict:
    """Issue 6's replay targets, as measured: >= 1.0x auparse, >= 2x laurel, RSS within 10%."""
    out: dict = {}
    first = report["sizes"][0] if report["sizes"] else None
    if first:
        by = {r["tool"]: r for r in first["results"]}
        k = by.get(BASELINE, {}).get("records_per_s")
        for peer, goal in (("auparse", 1.0), ("laurel", 2.0)):
            p = by.get(peer, {}).get("records_per_s")
            if k and p:
                out[f"vs_{peer}"] = {"goal": goal, "speedup": k / p, "met": k / p >= goal}
    scaling = report.get("rss_scaling", {}).get(BASELINE)
    if scaling:
        out["rss_2m_vs_200k"] = {"goal": 0.10, "growth": scaling["growth"], "met": scaling["growth"] <= 0.10}
    return out


# --- output -----------------------------------------------------------------------------------------


def _fmt(x: float | None, spec: str) -> str:
    width = int("".join(c for c in spec.split(".")[0] if c.isdigit()) or 0)
    return "-".rjust(width) if x is None else format(x, spec)


def format_report(report: dict) -> str:
    lines = [f"kaudit bench replay  ({report['started']}, median of {report['repeat']} runs)", machine_line(report["machine"])]
    v = report.get("versions", {})
    lines.append("peers: " + ", ".join(f"{k} {v.get(k) or 'n/a'}" for k in ("auparse", "laurel", "ausearch")))
    for block in report["sizes"]:
        c = block["corpus"]
        lines.append("")
        lines.append(
            f"{c['records']:,} records, {c['events']:,} events "
            f"({c['events_by_kind'].get('connect', 0):,} connect, {c['events_by_kind'].get('execve', 0):,} execve), "
            f"{c['log_bytes'] / 1e6:.1f} MB of text"
        )
        lines.append(
            f"  {'tool':26s} {'wall s':>7s} {'records/s':>10s} {'events/s':>9s} {'in-loop r/s':>11s} "
            f"{'CPU s':>6s} {'peak RSS MB':>11s} {'÷ kaudit':>8s} {'kaudit ×':>8s}"
        )
        for r in block["results"]:
            if r["error"]:
                lines.append(f"  {r['label']:26s} skipped: {r['error']}")
                continue
            lines.append(
                f"  {r['label']:26s} {_fmt(r['wall_s'], '7.2f')} {_fmt(r['records_per_s'], '10,.0f')} "
                f"{_fmt(r['events_per_s'], '9,.0f')} {_fmt(r['loop_records_per_s'], '11,.0f')} "
                f"{_fmt(r['cpu_s'], '6.2f')} {_fmt(r['maxrss_kb'] and r['maxrss_kb'] / 1024, '11.1f')} "
                f"{_fmt(r['ratio_to_kaudit'], '8.2f')} {_fmt(r['kaudit_speedup'], '8.2f')}"
                + (f"  CHECK: {r['check']}" if r["check"] else "")
            )
    if report.get("rss_scaling"):
        lines.append("")
        lines.append("peak RSS, largest corpus vs smallest:")
        for tool, s in report["rss_scaling"].items():
            lines.append(f"  {LABELS.get(tool, tool):26s} {s['small_kb'] / 1024:7.1f} -> {s['big_kb'] / 1024:7.1f} MB ({s['growth']:+.1%})")
    if report.get("targets"):
        lines.append("")
        t = report["targets"]
        parts = []
        for key, label in (("vs_auparse", "auparse"), ("vs_laurel", "laurel")):
            if key in t:
                parts.append(f"{t[key]['speedup']:.2f}x {label} (goal {t[key]['goal']:.1f}x: {'met' if t[key]['met'] else 'NOT met'})")
        if "rss_2m_vs_200k" in t:
            g = t["rss_2m_vs_200k"]
            parts.append(f"RSS growth {g['growth']:+.1%} (goal <= 10%: {'met' if g['met'] else 'NOT met'})")
        lines.append("targets: kaudit text->rows is " + "; ".join(parts))
    return "\n".join(lines)


# --- command line -------------------------------------------------------------------------------------


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(x.replace("_", "")) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: expected comma-separated record counts") from None
    if not sizes or any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes {text!r}: every size must be >= 1")
    return sizes


def _tools(text: str) -> tuple[str, ...]:
    tools = tuple(t.strip() for t in text.split(",") if t.strip())
    bad = [t for t in tools if t not in TOOLS]
    if bad or not tools:
        raise argparse.ArgumentTypeError(f"--tools: unknown {', '.join(bad) or '(none)'}; known: {', '.join(TOOLS)}")
    return tools


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sizes", type=_sizes, default=DEFAULT_SIZES, metavar="N,N",
                   help="corpus sizes in records (default 200000,2000000)")
    p.add_argument("--tools", type=_tools, default=TOOLS, metavar="T,T", help=f"tools to run (default all: {','.join(TOOLS)})")
    p.add_argument("--repeat", type=int, default=3, metavar="N", help="runs per tool; the median is reported (default 3)")
    p.add_argument("--work-dir", metavar="DIR", help="where to build the corpora (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the corpora and outputs")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="draw records/s and peak RSS per tool (needs matplotlib)")
    p.add_argument("--corpus-dir", metavar="DIR", help="the public captures (default ../shared/corpus)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    say = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        report = run_replay_bench(
            args.sizes, args.tools, workdir=args.work_dir, repeat=args.repeat, keep=args.keep,
            corpus_dir=args.corpus_dir, progress=say,
        )
    except (FileNotFoundError, ValueError) as exc:
        print(f"bench replay: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    from bench.plot import plot_replay

    if write_outputs(report, args.json, args.plot, plot_replay, "replay"):
        return 2
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "replay",
        help="replay benchmark: kaudit text/netlink to rows vs auparse, laurel, ausearch",
        description=__doc__.split("\n\n")[0],
    )
    add_arguments(p)
    p.set_defaults(func=run)


def _main(argv: list[str]) -> int:
    if len(argv) >= 3 and argv[0] == "_worker":
        print(json.dumps(_worker(argv[1], argv[2], argv[3] if len(argv) > 3 else None)))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.replay", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
