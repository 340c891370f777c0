"""`kaudit simulate --listen unix:PATH SCENARIO` end to end: a `kaudit collect` process gets the rows.

Both are real processes, as a user runs them: the simulator loads the scenario's kernel state
and replays its messages (with their faults) once the collector has registered as the audit
daemon or joined the multicast group; the collector's rows and counters must be what the
scenario expects. ``attach_scenario`` itself is also driven in-process, where the model can be
looked at. Nothing here touches the machine's kernel.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from collector.cli import main
from collector.commands.collect import Collector
from collector.protocol.records import AUDIT_GET
from collector.protocol.status import AuditStatus
from collector.transport import open_transport
from simulator.check import RunResult, compare
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel
from simulator.replay import attach_scenario, flatten_counters, scenario_flags
from simulator.scenario import Scenario, load_scenario

ROOT = Path(__file__).resolve().parents[1]
SCENARIOS = ROOT / "scenarios"
ENV = dict(os.environ, PYTHONPATH=str(ROOT))


@pytest.fixture
def sockdir():
    # unix socket paths are limited to 107 bytes; pytest's tmp_path may be longer
    d = Path(tempfile.mkdtemp(prefix="kaudit-sim-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


class StderrLines:
    """A process's stderr lines, read by a thread as they come.

    Why a thread and not ``select`` + ``readline``: ``readline`` on a text pipe reads a whole
    chunk into Python's buffer and returns one line of it. When the process wrote two lines
    before we read (``replaying ...`` and ``scenario replayed`` come back to back under load),
    the second waits in that buffer where ``select`` on the file descriptor cannot see it, and
    the waiter never learned it was there: the "intermittent hang" of kaudit simulate was this
    lost line, not the simulator.
    """

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.eof = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, args=(stream,), name="stderr-lines", daemon=True)
        self._thread.start()

    def _pump(self, stream: Any) -> None:
        try:
            for line in stream:
                with self._cond:
                    self.lines.append(line)
                    self._cond.notify_all()
        except (OSError, ValueError):
            pass  # closed under us by stop(): the lines read so far are all there is
        finally:
            with self._cond:
                self.eof = True
                self._cond.notify_all()

    def wait_for(self, text: str, timeout: float) -> str | None:
        """The first line containing ``text``; None at EOF or after ``timeout`` seconds without one."""
        end = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if text in line:
                        return line
                left = end - time.monotonic()
                if self.eof or left <= 0:
                    return None
                self._cond.wait(left)

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)


class Simulate:
    """A `kaudit simulate` process; its stderr lines are collected as they come."""

    def __init__(self, path: Path, scenario: Path) -> None:
        self.endpoint = f"unix:{path}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "collector.cli", "simulate", "--listen", self.endpoint, str(scenario)],
            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
        )
        assert self.proc.stderr is not None
        self.stderr = StderrLines(self.proc.stderr)

    @property
    def lines(self) -> list[str]:
        return list(self.stderr.lines)

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        line = self.stderr.wait_for(text, timeout)
        if line is None:
            raise AssertionError(f"simulate never said {text!r}; it said: {''.join(self.lines)!r}")
        return line

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.stderr.join(5)  # every line the process wrote, before the stream is closed
            assert self.proc.stderr is not None
            self.proc.stderr.close()


def _collect(endpoint: str, sc: Scenario, out: Path, stats: Path, *, duration: float = 30.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "collector.cli", "collect", "--endpoint", endpoint, "--output", str(out),
         "--stats-json", str(stats), "--status-interval", "0.2", "--duration", str(duration),
         "--state-file", "none", *sc.flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
    )


def _status(endpoint: str) -> AuditStatus:
    with open_transport(endpoint) as t:
        return next(AuditStatus.decode(m.payload) for m in t.request(AUDIT_GET) if m.type == AUDIT_GET)


@pytest.mark.parametrize(
    "name",
    [
        "python-tcp4-connect",  # plain replay to the registered daemon
        "fault-enobufs",  # a fault injected through the endpoint (ENOBUFS as the socket error)
        "fault-steal-pid",  # another "process" takes the daemon pid; the collector takes it back
        "fault-immutable-kernel",  # enabled=2: the collector reads the multicast copy
    ],
)
def test_collect_gets_the_scenarios_rows_from_kaudit_simulate(name, sockdir):
    path = SCENARIOS / f"{name}.yaml"
    sc = load_scenario(path)
    sim = Simulate(sockdir / "audit.sock", path)
    out, stats = sockdir / "rows.jsonl", sockdir / "stats.json"
    collector = None
    try:
        sim.wait_for("listening on unix:")
        collector = _collect(sim.endpoint, sc, out, stats)
        sim.wait_for("scenario replayed", timeout=90)
        time.sleep(0.5)  # the collector writes the rows of the last events it read
        collector.send_signal(signal.SIGTERM)
        _, err = collector.communicate(timeout=30)
        assert collector.returncode == 143, err
        after = _status(sim.endpoint)
    finally:
        if collector is not None and collector.poll() is None:
            collector.kill()
            collector.wait()
        rc = sim.stop()
    assert rc == 0, "".join(sim.lines)
    rows = [json.loads(line) for line in out.read_text().splitlines() if line.strip()]
    counters = flatten_counters(json.loads(stats.read_text()))
    # config.* counters are what the in-process replay adds from the Collector object; the
    # command line's --stats-json has the pipeline's, the reader's and the transport's
    judged = copy.deepcopy(sc)
    judged.expect.counters = {k: v for k, v in sc.expect.counters.items() if not k.startswith("config.")}
    judged.expect.kernel = {}
    ok, diff = compare(judged, RunResult(rows=rows, counters=counters))
    assert ok, f"{diff}\nsimulate said:\n{''.join(sim.lines)}\ncollect said:\n{err}"
    assert rows, "a scenario with expected rows produced none"
    # the collector put the kernel back as it found it (the scenario's initial state)
    want = sc.expect.kernel.get("status", {})
    for field_name, value in want.items():
        assert getattr(after, field_name) == value, field_name
    assert after.pid == 0
    mode = "multicast reader" if sc.kernel.immutable else "the audit daemon"
    assert any(mode in line for line in sim.lines), sim.lines


def test_stderr_lines_sees_lines_written_together():
    """Two lines in one write must both be seen: the lost line that made this file's end-to-end
    test hang once in three runs under load (see StderrLines)."""
    proc = subprocess.Popen(
        ["sh", "-c", "printf 'replaying 1 message(s)\\nscenario replayed: 1 message(s) sent\\n' >&2; exec sleep 30"],
        stderr=subprocess.PIPE, text=True,
    )
    assert proc.stderr is not None
    lines = StderrLines(proc.stderr)
    try:
        assert lines.wait_for("replaying", 10) is not None
        assert lines.wait_for("scenario replayed", 2) is not None
    finally:
        proc.kill()
        proc.wait()
        lines.join(5)
        proc.stderr.close()


def test_a_missing_or_broken_scenario_is_exit_2_naming_the_file(sockdir, capsys):
    rc = main(["simulate", "--listen", f"unix:{sockdir}/s.sock", str(sockdir / "none.yaml")])
    assert rc == 2
    assert f"{sockdir / 'none.yaml'}: cannot read" in capsys.readouterr().err
    bad = sockdir / "bad.yaml"
    bad.write_text("name: x\nmessages:\n  - fault: nosuch\n")
    rc = main(["simulate", "--listen", f"unix:{sockdir}/s.sock", str(bad)])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "nosuch" in err
    assert not (sockdir / "s.sock").exists()  # nothing left listening


def _serve(sockdir: Path, kernel: AuditKernel | None = None) -> EndpointServer:
    server = EndpointServer(kernel or AuditKernel())
    server.listen(str(sockdir / "a.sock"))
    return server


def test_attach_loads_the_state_and_waits_for_a_reader(sockdir):
    sc = load_scenario(SCENARIOS / "fault-rule-add-refused.yaml")
    server = _serve(sockdir)
    feed = attach_scenario(server, sc)
    server.start()
    try:
        k = server.kernel
        assert k.enabled == sc.kernel.status["enabled"] and k.backlog_limit == sc.kernel.status["backlog_limit"]
        assert k.refuse == {1011: 1}  # ADD_RULE refused with EPERM, through the model's hook
        # a client that only asks for the status is not a reader: nothing is replayed to it
        assert _status(server.endpoint).enabled == 1
        time.sleep(0.3)
        assert not feed.started.is_set() and k.serial == 0
    finally:
        feed.stop()
        server.stop()
    assert feed.done.is_set() and feed.error is None


def test_attach_replays_to_an_in_process_collector_whose_pid_is_a_recorded_one(sockdir):
    """Own-pid exclusion is for the real kernel only: a replayed pid equal to ours keeps its rows."""
    sc = load_scenario(SCENARIOS / "python-tcp4-connect.yaml")
    recorded = {r.columns["pid"] for r in sc.expect.rows or []}
    assert len(recorded) == 1
    text = (SCENARIOS / "python-tcp4-connect.yaml").read_text()
    mine = sockdir / "mine.yaml"
    mine.write_text(text.replace(f"pid={recorded.pop()} ", f"pid={os.getpid()} "))
    sc = load_scenario(mine)
    server = _serve(sockdir)
    feed = attach_scenario(server, mine)
    server.start()
    import io

    out = io.StringIO()
    col = Collector(server.endpoint, scenario_flags(list(sc.flags)), out, status_interval=0.2, state_path=None)
    assert col.exclude_pids == frozenset()
    th = threading.Thread(target=col.run, daemon=True)
    try:
        th.start()
        assert col.ready.wait(10), "the collector never became ready"
        assert feed.done.wait(20) and feed.error is None
        time.sleep(0.3)
    finally:
        col.stop.reason = "test done"
        th.join(15)
        feed.stop()
        server.stop()
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == len(sc.expect.rows or []) and {r["pid"] for r in rows} == {os.getpid()}
    assert feed.feeder is not None and feed.feeder.sent == len(sc.messages())
