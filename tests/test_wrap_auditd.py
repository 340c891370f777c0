"""Debian's auditd, unmodified, in front of the simulator: it registers, logs the scenario's records
exactly as it logs the kernel's, and stops cleanly.

auditd runs with a temporary configuration (log file in the test's directory, no plugins,
no disk-space actions) and never daemonises: ``-n`` (no fork; events go to log_file) or ``-f``
(foreground; events go to stdout, messages to stderr). It runs in a private mount namespace
with its own /run, so its pid file cannot touch the machine's. Its NETLINK_AUDIT socket is
redirected (``kaudit wrap --scenario``): it must never reach the real kernel, which the
``kernel_untouched`` fixture checks (under the live lock, as a live test would).

The oracle is computed here from the scenario's steps, independently of the replay engine:
the records the kernel delivers (a ``drop`` or an ``enobufs`` with ``drop: N`` loses the next
messages), minus EOE (auditd does not write EOE to disk). Each logged record must have the
scenario record's type, time stamp and text byte for byte, the same fields in the same order,
and serials mapped one to one (the replay moves recorded serials onto the model's own line).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from collector.parser import parse_log_line, parse_record
from collector.protocol.status import AuditStatus
from collector.transport import kernel_unreachable_reason, live_lock, open_transport
from simulator.conformance import KernelSnapshot
from simulator.redirect import ShimBuildError, shim_path
from simulator.scenario import Fault, Scenario, load_scenario, parse_scenario_text
from simulator.wrap import WrapResult, run_with_scenario

AUDITD = "/usr/sbin/auditd"
ROOT = Path(__file__).resolve().parents[1]
EOE, CONFIG_CHANGE, EVENT_LISTENER = 1320, 1305, 1335

pytestmark = [
    pytest.mark.xdist_group("live"),
    pytest.mark.skipif(not os.access(AUDITD, os.X_OK), reason=f"{AUDITD} (package auditd) is not installed"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is needed for a private /run"),
]

_LONG_ARG = ("x" * 1500).encode().hex().upper()

EXECVE = f"""\
name: wrap-auditd-execve
description: two execve events (one with a long hex-encoded argument) logged by auditd.
kernel: {{status: {{enabled: 1, failure: 1, backlog_limit: 8192}}}}
messages:
  - record: 'type=SYSCALL msg=audit(1795601700.120:2001): arch=c000003e syscall=59 success=yes exit=0 a0=55d0c1e0a2b0 a1=55d0c1e0a2d8 a2=55d0c1e0a2f0 a3=8 items=2 ppid=1201 pid=1250 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="ls" exe="/usr/bin/ls" key="kaudit-exec"'
  - record: 'type=EXECVE msg=audit(1795601700.120:2001): argc=3 a0="ls" a1="-l" a2=2F746D702F6120622063'
  - record: 'type=CWD msg=audit(1795601700.120:2001): cwd="/home/user"'
  - record: 'type=PATH msg=audit(1795601700.120:2001): item=0 name="/usr/bin/ls" inode=1835202 dev=fe:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0'
  - record: 'type=PATH msg=audit(1795601700.120:2001): item=1 name="/lib64/ld-linux-x86-64.so.2" inode=1836001 dev=fe:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0'
  - record: 'type=PROCTITLE msg=audit(1795601700.120:2001): proctitle=6C73002D6C002F746D702F612062206320'
  - record: 'type=EOE msg=audit(1795601700.120:2001): '
  - record: 'type=SYSCALL msg=audit(1795601700.388:2002): arch=c000003e syscall=59 success=yes exit=0 a0=55d0c1e0b000 a1=55d0c1e0b028 a2=55d0c1e0b040 a3=8 items=2 ppid=1201 pid=1251 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="echo" exe="/usr/bin/echo" key="kaudit-exec"'
  - record: 'type=EXECVE msg=audit(1795601700.388:2002): argc=2 a0="echo" a1={_LONG_ARG}'
  - record: 'type=CWD msg=audit(1795601700.388:2002): cwd="/home/user"'
  - record: 'type=PATH msg=audit(1795601700.388:2002): item=0 name="/usr/bin/echo" inode=1835190 dev=fe:01 mode=0100755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0'
  - record: 'type=EOE msg=audit(1795601700.388:2002): '
"""

CONNECT = """\
name: wrap-auditd-connect
description: a non-blocking IPv4 connect (-EINPROGRESS) and an IPv6 one, logged by auditd.
kernel: {status: {enabled: 1, failure: 1, backlog_limit: 8192}}
messages:
  - record: 'type=SYSCALL msg=audit(1795601611.485:1327823): arch=c000003e syscall=42 success=no exit=-115 a0=5 a1=7ffd3c1e2a40 a2=10 a3=0 items=0 ppid=14960 pid=14967 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601611.485:1327823): saddr=0200B3E37F0000010000000000000000'
  - record: 'type=PROCTITLE msg=audit(1795601611.485:1327823): proctitle=6375726C00687474703A2F2F3132372E302E302E313A34363035312F'
  - record: 'type=EOE msg=audit(1795601611.485:1327823): '
  - record: 'type=SYSCALL msg=audit(1795601611.502:1327824): arch=c000003e syscall=42 success=yes exit=0 a0=6 a1=7ffd3c1e2b80 a2=1c a3=0 items=0 ppid=14960 pid=14967 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=3 comm="curl" exe="/usr/bin/curl" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601611.502:1327824): saddr=0A00B3E3000000000000000000000000000000000000000100000000'
  - record: 'type=EOE msg=audit(1795601611.502:1327824): '
"""

ENOBUFS = """\
name: wrap-auditd-enobufs
description: the daemon's socket overflows (ENOBUFS) in the middle of an event; one record is lost with it.
kernel: {status: {enabled: 1, failure: 1, backlog_limit: 8192}}
messages:
  - record: 'type=SYSCALL msg=audit(1795601800.001:3001): arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffe5e4c0a10 a2=10 a3=0 items=0 ppid=900 pid=901 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="nc" exe="/usr/bin/nc.openbsd" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601800.001:3001): saddr=02000050C0A800010000000000000000'
  - record: 'type=EOE msg=audit(1795601800.001:3001): '
  - record: 'type=SYSCALL msg=audit(1795601800.207:3002): arch=c000003e syscall=42 success=yes exit=0 a0=3 a1=7ffe5e4c0a10 a2=10 a3=0 items=0 ppid=900 pid=902 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="nc" exe="/usr/bin/nc.openbsd" key="kaudit-net"'
  - fault: {enobufs: {drop: 1}}
  - record: 'type=SOCKADDR msg=audit(1795601800.207:3002): saddr=020001BBC0A800020000000000000000'
  - record: 'type=EOE msg=audit(1795601800.207:3002): '
  - record: 'type=SYSCALL msg=audit(1795601800.415:3003): arch=c000003e syscall=42 success=no exit=-111 a0=3 a1=7ffe5e4c0a10 a2=10 a3=0 items=0 ppid=900 pid=903 auid=0 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=1 comm="nc" exe="/usr/bin/nc.openbsd" key="kaudit-net"'
  - record: 'type=SOCKADDR msg=audit(1795601800.415:3003): saddr=02000016C0A800030000000000000000'
  - record: 'type=EOE msg=audit(1795601800.415:3003): '
"""

OURS = {"execve": EXECVE, "connect": CONNECT, "enobufs": ENOBUFS}


class Unsupported(Exception):
    """A scenario whose faults make auditd's log something this oracle does not predict."""


def expected_records(sc: Scenario) -> list:
    """The scenario's records as the kernel delivers them to auditd, minus EOE."""
    out, lose = [], 0
    for step in sc.steps:
        if isinstance(step, Fault):
            if step.kind in ("enobufs", "drop"):
                lose += step.count
            elif step.kind != "delay":
                raise Unsupported(f"fault {step.kind}")
            continue
        if step.kind != "record":
            raise Unsupported(f"a {step.kind} message")
        if lose:
            lose -= 1
            continue
        if step.type != EOE:
            out.append(parse_record(step.type, step.payload))
    return out


def bundled() -> list[Path]:
    """scenarios/*.yaml that this oracle can judge (records, drop/enobufs/delay faults)."""
    out = []
    for p in sorted((ROOT / "scenarios").glob("*.yaml")):
        try:
            sc = load_scenario(p)
            if sc.messages() and expected_records(sc):
                out.append(p)
        except Exception:  # noqa: BLE001 - not for this test; `kaudit check` judges it
            continue
    return out


# --- the run -------------------------------------------------------------------------------------


CONF = """\
local_events = yes
write_logs = yes
log_file = {log}
log_format = {fmt}
flush = DATA
freq = 0
max_log_file = 0
max_log_file_action = IGNORE
num_logs = 0
priority_boost = 0
name_format = NONE
space_left = 2
space_left_action = IGNORE
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
distribute_network = no
q_depth = 2000
overflow_action = IGNORE
max_restarts = 10
plugin_dir = {plugins}
end_of_event_timeout = 2
"""


@pytest.fixture(scope="module")
def shim() -> str:
    try:
        return str(shim_path())
    except ShimBuildError as exc:
        pytest.skip(str(exc))


def _auditd_pids() -> set[int]:
    r = subprocess.run(["pgrep", "-x", "auditd"], capture_output=True, text=True)
    return {int(x) for x in r.stdout.split()}


@pytest.fixture
def kernel_untouched(shim: str) -> Iterator[None]:
    """auditd must never reach the real kernel, and no auditd may outlive the test.

    Where the kernel's audit is reachable this holds the live lock (so that a redirect gone
    wrong could not disturb another live test) and checks the daemon pid, enabled flag and
    rules are what they were; whatever happened, the kernel is restored.
    """
    before_pids = _auditd_pids()
    reason = kernel_unreachable_reason()
    try:
        if reason:
            yield
            return
        with live_lock():
            with open_transport("kernel", rcvbuf=0) as t:
                snap = KernelSnapshot.take(t)
            try:
                yield
            finally:
                with open_transport("kernel", rcvbuf=0) as t:
                    now = AuditStatus.decode(t.request(1000)[0].payload)
                    rules = [m.payload for m in t.request(1013)]
                    changed = snap.restore(t)
                assert now.pid == snap.status.pid, f"the real kernel's audit pid became {now.pid}"
                assert now.enabled == snap.status.enabled, "the real kernel's enabled flag changed"
                assert rules == snap.rules, "the real kernel's rules changed"
                assert not changed, f"the real kernel had to be restored: {changed}"
    finally:
        left = _auditd_pids() - before_pids
        for pid in left:  # ours (they were not there before): never leave one running
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        assert not left, f"auditd processes left running: {sorted(left)}"


def write_conf(d: Path, fmt: str = "RAW") -> tuple[Path, Path]:
    conf, plugins = d / "conf", d / "conf" / "plugins.d"
    plugins.mkdir(parents=True)
    conf.chmod(0o700)
    log = d / "log" / "audit.log"
    log.parent.mkdir(mode=0o700)
    f = conf / "auditd.conf"
    f.write_text(CONF.format(log=log, fmt=fmt, plugins=plugins))
    f.chmod(0o600)
    return conf, log


def auditd_command(conf: Path, mode: str) -> list[str]:
    """auditd in a private mount namespace whose /run is its own (its pid file lands there)."""
    flag = "-f" if mode == "foreground" else "-n"
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
            f"mount -t tmpfs kaudit-run /run && exec {AUDITD} {flag} -c {conf}"]


def run_auditd(tmp_path: Path, sc: Scenario, *, mode: str = "nofork", fmt: str = "RAW",
               **kw: object) -> tuple[WrapResult, list, str]:
    conf, log = write_conf(tmp_path, fmt)
    out_path, err_path = tmp_path / "stdout", tmp_path / "stderr"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        res = run_with_scenario(auditd_command(conf, mode), sc, ready_timeout=30, linger=0.3, grace=15,
                                stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    stderr = err_path.read_text(errors="replace")
    source = out_path if mode == "foreground" else log
    assert source.exists(), f"auditd wrote no log ({res}); stderr:\n{stderr}"
    records = [r for r in (parse_log_line(ln) for ln in source.read_text(errors="replace").split("\n")) if r]
    return res, records, stderr


def check_log(sc: Scenario, records: list) -> None:
    want = expected_records(sc)
    daemon = [r for r in records if 1200 <= r.type < 1300]
    assert daemon and daemon[0].type_name == "DAEMON_START" and daemon[-1].type_name == "DAEMON_END", (
        "auditd started and stopped cleanly"
    )
    wanted_keys = {(w.type, w.text) for w in want}
    got = [r for r in records
           if not (1200 <= r.type < 1300)
           and not (r.type in (CONFIG_CHANGE, EVENT_LISTENER) and (r.type, r.text) not in wanted_keys)]
    assert [r.type_name for r in got] == [w.type_name for w in want]
    serials: dict[int, int] = {}
    for g, w in zip(got, want, strict=True):
        assert (g.sec, g.msec) == (w.sec, w.msec), f"time stamp of {w.log_line()}"
        assert g.text == w.text, f"text of {w.type_name}:\n got {g.text}\nwant {w.text}"
        assert g.items() == w.items(), f"fields of {w.type_name}"
        assert serials.setdefault(w.serial, g.serial) == g.serial, "one recorded serial became two"
    assert len(set(serials.values())) == len(serials), "two recorded serials became one"
    olds = sorted(serials)
    assert [serials[o] for o in olds] == sorted(serials.values()), "serial order changed"


# --- the tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["nofork", "foreground"])
@pytest.mark.parametrize("name", sorted(OURS))
def test_auditd_logs_the_scenario_exactly(tmp_path: Path, kernel_untouched: None, name: str, mode: str) -> None:
    sc = parse_scenario_text(OURS[name], f"<{name}>")
    res, records, stderr = run_auditd(tmp_path, sc, mode=mode)
    assert res.error is None, (res, stderr)
    assert res.registered and res.mode == "unicast", "auditd registers with AUDIT_SET pid"
    assert res.delivered, res.notes
    assert res.stopped_by == "SIGTERM" and res.returncode == 0, (res, stderr)  # a clean stop
    assert res.kernel["status"]["pid"] == 0, "auditd unregistered itself on the way out"
    check_log(sc, records)
    # AUDIT_SIGNAL_INFO: the kernel tells auditd who sent the SIGTERM (here: kaudit, this process)
    assert f"pid={os.getpid()} " in records[-1].text, records[-1].log_line()
    if name == "enobufs" and mode == "foreground":
        assert "Error receiving audit netlink packet (No buffer space available)" in stderr


def test_auditd_enriched_format(tmp_path: Path, kernel_untouched: None) -> None:
    sc = parse_scenario_text(EXECVE, "<execve>")
    res, records, stderr = run_auditd(tmp_path, sc, fmt="ENRICHED")
    assert res.error is None and res.returncode == 0, (res, stderr)
    check_log(sc, records)
    syscall = next(r for r in records if r.type_name == "SYSCALL")
    assert syscall.enrichment and "SYSCALL=execve" in syscall.enrichment  # auditd interpreted it


@pytest.mark.parametrize("path", bundled(), ids=lambda p: p.stem)
def test_auditd_logs_bundled_scenarios(tmp_path: Path, kernel_untouched: None, path: Path) -> None:
    sc = load_scenario(path)
    res, records, stderr = run_auditd(tmp_path, sc)
    assert res.error is None and res.delivered and res.returncode == 0, (res, stderr)
    check_log(sc, records)


def test_auditd_stops_when_the_endpoint_goes_away(tmp_path: Path, kernel_untouched: None) -> None:
    """The simulator vanishes under a running auditd: it is told (SIGTERM) and exits; nothing hangs."""
    sc = parse_scenario_text(CONNECT.replace("messages:\n", "messages:\n  - fault: {delay: 30}\n", 1), "<gone>")
    stopper: list[threading.Thread] = []

    def on_start(server, proc) -> None:  # noqa: ANN001
        def stop_soon() -> None:
            end = time.monotonic() + 30
            while time.monotonic() < end and not server.kernel.auditd_pid:
                time.sleep(0.05)
            time.sleep(0.3)
            server.stop()

        t = threading.Thread(target=stop_soon, daemon=True)
        t.start()
        stopper.append(t)

    t0 = time.monotonic()
    res, records, stderr = run_auditd(tmp_path, sc, mode="foreground", stop=False, on_start=on_start)
    assert time.monotonic() - t0 < 25, "auditd kept running after its endpoint was gone"
    assert res.registered and res.stopped_by == "exit" and res.returncode == 0, (res, stderr)
    assert "closed the connection" in stderr and "ECONNREFUSED" in stderr
    assert records[-1].type_name == "DAEMON_END"


def test_oracle_follows_the_faults() -> None:
    sc = parse_scenario_text(ENOBUFS, "<enobufs>")
    texts = [r.text for r in expected_records(sc)]
    assert len(texts) == 5 and not any("020001BB" in t for t in texts)  # the dropped SOCKADDR
    with pytest.raises(Unsupported):
        expected_records(parse_scenario_text(CONNECT.replace("messages:\n", "messages:\n  - fault: duplicate\n", 1),
                                             "<dup>"))
