"""The accounting invariant: every record received ends dispatched, dropped by reason, or in flight.

Checked on every public capture in ../shared/corpus (with the default and a zero timeout, so
that events complete both ways), against an independent count of what the lines are, in the
``--stats`` text, and live: ``kaudit collect``'s Collector on the real kernel with a tap on
its transports counting what its reader receives, under a loopback-connect + exec workload.
The per-fault form (every fault the simulator injects) is in tests/test_fault_matrix.py.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from collector.parser import RecordError, parse_log_line
from collector.pipeline import Pipeline
from collector.tables.options import TableOptions

ALL_TABLES = TableOptions(
    allow_sockets=True,
    allow_process_events=True,
    allow_failed_socket_events=True,
    allow_unix=True,
    allow_fork_process_events=True,
    allow_kill_process_events=True,
)
AUDIT_REPLACE = 1329


def _keep(events: list, inner):
    """An on_event that keeps each event and passes it on to the pipeline's own handler."""

    def on_event(event) -> None:
        events.append(event)
        inner(event)

    return on_event


def _logs(corpus: Path) -> list[Path]:
    return sorted(p for p in corpus.rglob("*") if p.suffix in (".log", ".txt") and p.is_file()
                  and p.name not in ("SOURCES.md",))


@pytest.mark.parametrize("timeout_ms", [0, 2000])
def test_corpus_ledgers_balance(corpus: Path, timeout_ms: int) -> None:
    files = _logs(corpus)
    assert files, "no audit logs in the corpus"
    total = Counter()
    for path in files:
        lines = path.read_bytes().split(b"\n")
        pipe = Pipeline(ALL_TABLES, uptime=None, timeout_ms=timeout_ms)
        events: list = []
        pipe.publisher.on_event = _keep(events, pipe.publisher.on_event)
        pipe.feed_lines(lines)
        st = pipe.finish()
        led = st.ledger
        assert led.balanced, (path.name, led.as_dict())
        # an independent count of what each line is
        records = errors = skipped = 0
        for line in lines:
            try:
                rec = parse_log_line(line)
            except RecordError:
                errors += 1
                continue
            if rec is None:
                skipped += 1
            else:
                records += 1
        assert (led.received, st.lines_skipped) == (records + errors, skipped), path.name
        parser_drops = sum(v for k, v in led.dropped.items()
                           if k not in ("duplicate_syscall", "late", "single_tail", "orphan_eoe"))
        assert parser_drops == errors, path.name
        # dispatched + in flight is exactly what the events hold (records, plus the EOE that ended one)
        held = sum(len(e.records) + (e.reason == "eoe") for e in events)
        assert led.dispatched + led.in_flight == held, path.name
        assert led.in_flight == sum(len(e.records) for e in events if e.reason == "flush")
        total.update(received=led.received, dispatched=led.dispatched, dropped=sum(led.dropped.values()),
                     in_flight=led.in_flight)
    assert total["received"] > 500
    assert total["received"] == total["dispatched"] + total["dropped"] + total["in_flight"]


def test_stats_text_prints_the_ledger() -> None:
    pipe = Pipeline(ALL_TABLES, uptime=None)
    pipe.feed_lines([
        'type=SYSCALL msg=audit(1795601611.485:10): arch=c000003e syscall=42 success=yes exit=0 pid=1 ppid=0',
        "type=EOE msg=audit(1795601611.485:10): ",
        "not audit text",
        'type=SYSCALL msg=audit(1795601611.490:11): arch=c000003e syscall=42 success=yes exit=0 pid=1 ppid=0',
    ])
    text = pipe.finish().format_text()
    line = next(s for s in text.splitlines() if s.startswith("ledger"))
    assert line.split() == ["ledger", "received", "4", "=", "dispatched", "2", "+", "dropped", "1", "+",
                            "in", "flight", "at", "exit", "1"], line
    assert "UNACCOUNTED" not in text


def test_an_unbalanced_ledger_is_reported() -> None:
    pipe = Pipeline(ALL_TABLES, uptime=None)
    pipe.feed_lines(["type=EOE msg=audit(1795601611.485:10): "])
    st = pipe.finish()
    st.ledger.received += 1  # a record the pipeline lost track of
    assert not st.ledger.balanced and st.ledger.unaccounted == 1
    assert "UNACCOUNTED 1" in st.format_text()


# ---- live ----------------------------------------------------------------------------------


def _workload(stop: threading.Event) -> int:
    """Loopback connects and execs at a modest fixed rate until ``stop``; returns the count."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    n = 0
    try:
        while not stop.is_set():
            c = socket.create_connection(("127.0.0.1", port))
            a, _ = srv.accept()
            a.close()
            c.close()
            # grandchildren: the collector leaves out its own process and its children
            subprocess.run(["/bin/sh", "-c", "/bin/true; /bin/true"], check=True)
            n += 1
            time.sleep(0.05)
    finally:
        srv.close()
    return n


@pytest.mark.live
def test_live_ledger_accounts_for_every_record_received(live_audit) -> None:
    """The real kernel: what the reader received is exactly what the ledger accounts for."""
    from collector.commands.collect import Collector
    from collector.flags import parse_flags
    from collector.transport import open_transport

    received = {"n": 0}

    def factory(endpoint, **kw):
        t = open_transport(endpoint, **kw)
        inner = t.recv

        def recv(timeout):
            got = inner(timeout)
            if isinstance(got, list):
                received["n"] += sum(1 for m in got if m.type >= 1100 and m.type != AUDIT_REPLACE)
            return got

        t.recv = recv
        return t

    flags = parse_flags(["--audit_allow_config=true", "--audit_allow_sockets=true"], warn=lambda m: None)
    out = io.StringIO()
    col = Collector("kernel", flags, out, duration=4.0, status_interval=1.0, transport_factory=factory)
    stop = threading.Event()
    worker = threading.Thread(target=_workload, args=(stop,), daemon=True)
    result: dict = {}

    def run() -> None:
        try:
            result["stats"] = col.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            result["error"] = exc

    th = threading.Thread(target=run)
    th.start()
    time.sleep(1.0)
    worker.start()
    th.join(30)
    stop.set()
    worker.join(10)
    assert not th.is_alive()
    if "error" in result:
        raise result["error"]
    st = result["stats"]
    led = st.ledger
    assert led.balanced, led.as_dict()
    assert led.received == received["n"], (led.as_dict(), received)
    assert led.received > 10, "the workload produced no records"
    assert st.rows > 0  # process rows of other processes (ours are left out, as osquery leaves its own)
    assert not col.restore_errors, col.restore_errors
    assert os.getpid() not in (st.kernel or {}).values()
