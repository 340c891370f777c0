"""Soak: a live ``kaudit collect`` for N minutes under a steady mixed workload.

``python -m bench.soak [--minutes 10] [--json FILE]`` runs ``kaudit collect`` on the real kernel
(both tables on) while a workload process connects on loopback and execs ``/bin/true`` at a
modest fixed rate, samples the collector's RSS every few seconds, and checks at the end:

- the ledger is exact: every record received is dispatched, dropped by reason, or in flight at
  exit (``unaccounted == 0``), from ``kaudit collect --stats-json``;
- memory is flat: RSS at the end within 10% of its value after the first minute (after the
  first third of the run for runs shorter than three minutes), i.e. in-flight events are
  bounded and nothing grows with time;
- the kernel is as found: ``kaudit collect`` restored it itself (the snapshot restore after it
  has nothing to change), and ``collect`` exited 0.

Why a separate process per role: the collector leaves its own process's events out (as osquery
does), so the workload must not be the collector, and RSS must be the collector's alone. The
whole run holds /tmp/kaudit-live.lock and puts back the kernel state it found in a ``finally``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

__all__ = ["SoakReport", "evaluate", "rss_kb", "run_soak"]

REPO = Path(__file__).resolve().parents[1]
RSS_TOLERANCE = 0.10

# the workload: one process, a listener on loopback, a connect every 1/CONNECTS s and an exec
# every 1/EXECS s, until SIGTERM; prints its counts as JSON when it stops
_WORKLOAD = r"""
import json, signal, socket, subprocess, sys, time
rate_c, rate_e = float(sys.argv[1]), float(sys.argv[2])
stop = False
def handler(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, handler)
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(128)
port = srv.getsockname()[1]
n = {"connects": 0, "execs": 0, "errors": 0}
t0 = time.monotonic(); next_c = next_e = t0
while not stop:
    now = time.monotonic()
    if now >= next_c:
        try:
            c = socket.create_connection(("127.0.0.1", port), timeout=2)
            a, _ = srv.accept(); a.close(); c.close(); n["connects"] += 1
        except OSError:
            n["errors"] += 1
        next_c += 1.0 / rate_c
    if now >= next_e:
        try:
            subprocess.run(["/bin/true"], check=True); n["execs"] += 1
        except (OSError, subprocess.CalledProcessError):
            n["errors"] += 1
        next_e += 1.0 / rate_e
    time.sleep(max(0.0, min(next_c, next_e) - time.monotonic()))
print(json.dumps(n), flush=True)
"""


@dataclass(slots=True)
class SoakReport:
    minutes: float
    seconds: float = 0.0
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    returncode: int | None = None
    ledger: dict = field(default_factory=dict)
    rss_baseline_kb: int = 0  # after the first minute (or first third)
    rss_end_kb: int = 0
    rss_min_kb: int = 0
    rss_max_kb: int = 0
    rss_change: float = 0.0  # (end - baseline) / baseline
    samples: list[tuple[float, int]] = field(default_factory=list)
    workload: dict = field(default_factory=dict)
    rows_by_table: dict = field(default_factory=dict)
    events: int = 0
    kernel: dict = field(default_factory=dict)  # lost, enobufs, backlog_max ... from --stats-json
    restore_fixups: list[str] = field(default_factory=list)  # what the snapshot restore had to change

    def as_dict(self) -> dict:
        d = asdict(self)
        d["rss_change"] = round(self.rss_change, 4)
        d["seconds"] = round(self.seconds, 1)
        return d


def rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fp:
            for line in fp:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def baseline_time(seconds: float) -> float:
    """When the RSS baseline is taken: after the first minute, or the first third of a short run."""
    return min(60.0, seconds / 3.0)


def evaluate(report: SoakReport, stats: dict | None, tolerance: float = RSS_TOLERANCE) -> SoakReport:
    """Fill in the verdict from the RSS samples and the collector's ``--stats-json``."""
    fails = report.failures
    if report.returncode != 0:
        fails.append(f"kaudit collect exited with {report.returncode}")
    if stats is None:
        fails.append("no --stats-json from kaudit collect")
    else:
        led = stats.get("ledger", {})
        report.ledger = led
        report.rows_by_table = stats.get("rows_by_table", {})
        report.events = stats.get("events", 0)
        report.kernel = stats.get("kernel", {})
        if not led.get("balanced") or led.get("unaccounted", 1) != 0:
            fails.append(f"ledger not exact: {led}")
        if not led.get("received"):
            fails.append("the collector received no records")
    base_t = baseline_time(report.seconds)
    after = [kb for t, kb in report.samples if t >= base_t]
    if len(after) < 2:
        fails.append(f"too few RSS samples after {base_t:.0f} s ({len(after)})")
    else:
        report.rss_baseline_kb, report.rss_end_kb = after[0], after[-1]
        report.rss_min_kb = min(kb for _t, kb in report.samples)
        report.rss_max_kb = max(kb for _t, kb in report.samples)
        report.rss_change = (report.rss_end_kb - report.rss_baseline_kb) / report.rss_baseline_kb
        if abs(report.rss_change) > tolerance:
            fails.append(
                f"RSS moved {report.rss_change:+.1%} from {report.rss_baseline_kb} kB after {base_t:.0f} s "
                f"to {report.rss_end_kb} kB at the end (allowed ±{tolerance:.0%})"
            )
    if report.restore_fixups:
        fails.append(f"kaudit collect left the kernel changed: {report.restore_fixups}")
    report.passed = not fails
    return report


def _collect_cmd(seconds: float, stats_path: Path, rows_path: Path) -> list[str]:
    return [
        sys.executable, "-m", "collector.cli", "collect", "--no-lock",
        "--duration", f"{seconds:.1f}", "--stats-json", str(stats_path), "--output", str(rows_path),
        "--status-interval", "5",
        "--audit_allow_config=true", "--audit_allow_sockets=true", "--audit_allow_process_events=true",
    ]


def run_soak(
    minutes: float,
    *,
    sample_seconds: float = 5.0,
    connects_per_second: float = 10.0,
    execs_per_second: float = 5.0,
    workdir: Path | None = None,
    log=print,
) -> SoakReport:
    """Run the soak on the real kernel (holds the live lock, restores the kernel it found)."""
    from collector.transport import kernel_unreachable_reason, live_lock, open_transport
    from simulator.conformance import KernelSnapshot

    reason = kernel_unreachable_reason()
    if reason:
        raise RuntimeError(reason)
    seconds = minutes * 60.0
    report = SoakReport(minutes=minutes)
    tmp = Path(workdir or tempfile.mkdtemp(prefix="kaudit-soak-"))
    tmp.mkdir(parents=True, exist_ok=True)
    stats_path, rows_path = tmp / "stats.json", tmp / "rows.jsonl"
    sample_every = min(sample_seconds, max(0.5, seconds / 20))
    with live_lock():
        with open_transport("kernel", rcvbuf=0) as t:
            snapshot = KernelSnapshot.take(t)
        collect = workload = None
        try:
            collect = subprocess.Popen(_collect_cmd(seconds, stats_path, rows_path), cwd=REPO,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            _wait_registered(collect)
            workload = subprocess.Popen(
                [sys.executable, "-c", _WORKLOAD, str(connects_per_second), str(execs_per_second)],
                stdout=subprocess.PIPE, text=True,
            )
            t0 = time.monotonic()
            next_sample = t0
            while collect.poll() is None:
                now = time.monotonic()
                if now >= next_sample:
                    kb = rss_kb(collect.pid)
                    if kb is not None:
                        report.samples.append((round(now - t0, 1), kb))
                    next_sample += sample_every
                    if len(report.samples) % 12 == 1:
                        log(f"soak: {now - t0:6.0f} s  collector RSS {kb} kB")
                time.sleep(min(0.2, max(0.0, next_sample - time.monotonic())))
            report.seconds = time.monotonic() - t0
            report.returncode = collect.returncode
            err = collect.stderr.read() if collect.stderr else ""
            if collect.returncode != 0:
                report.failures.append(f"collect stderr: {err.strip()[-2000:]}")
        finally:
            if workload is not None:
                workload.send_signal(signal.SIGTERM)
                try:
                    out, _ = workload.communicate(timeout=30)
                    report.workload = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
                except (subprocess.TimeoutExpired, ValueError):
                    workload.kill()
            if collect is not None and collect.poll() is None:
                collect.send_signal(signal.SIGTERM)
                try:
                    collect.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    collect.kill()
            with open_transport("kernel", rcvbuf=0) as t:
                report.restore_fixups = snapshot.restore(t)
    try:
        stats = json.loads(stats_path.read_text("utf-8"))
    except (OSError, ValueError):
        stats = None
    evaluate(report, stats)
    if rows_path.exists():
        tables = Counter()
        with open(rows_path, encoding="utf-8") as fp:
            for line in fp:
                if line.startswith('{"table": "'):
                    tables[line[11:].split('"', 1)[0]] += 1
        report.rows_by_table = report.rows_by_table or dict(tables)
    return report


def _wait_registered(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the collector is the registered daemon (its configuration is done)."""
    from collector.protocol.records import AUDIT_GET
    from collector.protocol.status import AuditStatus
    from collector.transport import open_transport

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"kaudit collect exited early ({proc.returncode}): {proc.stderr.read()[-2000:]}")
        with open_transport("kernel", rcvbuf=0) as t:
            if AuditStatus.decode(t.request(AUDIT_GET)[0].payload).pid == proc.pid:
                return
        time.sleep(0.1)
    raise RuntimeError("kaudit collect did not register as the audit daemon in time")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0, help="how long collect runs (default 10)")
    p.add_argument("--sample-seconds", type=float, default=5.0, help="RSS sampling period (default 5)")
    p.add_argument("--connects", type=float, default=10.0, help="loopback connects per second (default 10)")
    p.add_argument("--execs", type=float, default=5.0, help="execs of /bin/true per second (default 5)")
    p.add_argument("--workdir", type=Path, help="where the rows and stats go (default: a temporary directory)")
    p.add_argument("--json", metavar="FILE", help="write the figures as JSON")
    args = p.parse_args(argv)
    if args.minutes <= 0:
        print("bench.soak: --minutes must be > 0", file=sys.stderr)
        return 2
    try:
        rep = run_soak(args.minutes, sample_seconds=args.sample_seconds, connects_per_second=args.connects,
                       execs_per_second=args.execs, workdir=args.workdir,
                       log=lambda m: print(m, file=sys.stderr))
    except RuntimeError as exc:
        print(f"bench.soak: {exc}", file=sys.stderr)
        return 2
    led = rep.ledger
    print(f"soak {'PASS' if rep.passed else 'FAIL'}: {rep.seconds:.0f} s, workload {rep.workload}")
    print(f"  ledger: received {led.get('received')} = dispatched {led.get('dispatched')} + dropped "
          f"{led.get('dropped')} + in flight {led.get('in_flight')} (unaccounted {led.get('unaccounted')})")
    print(f"  rows {rep.rows_by_table}  events {rep.events}  kernel {rep.kernel}")
    print(f"  RSS {rep.rss_baseline_kb} kB after the first minute -> {rep.rss_end_kb} kB at the end "
          f"({rep.rss_change:+.1%}; min {rep.rss_min_kb}, max {rep.rss_max_kb}, {len(rep.samples)} samples)")
    for f in rep.failures:
        print(f"  failure: {f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rep.as_dict(), indent=1) + "\n", "utf-8")
    return 0 if rep.passed else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
