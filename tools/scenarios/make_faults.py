"""Fault scenarios built on real traffic recorded here (scenarios/python-tcp4-connect.yaml).

``python tools/scenarios/make_faults.py [NAME ...]`` (re)writes every fault-*.yaml made below,
or only the NAMEs given, into scenarios/ of this checkout. No kernel is touched: the faults are
injected by the replay engine (simulator/replay.py) when the scenario runs.
"""
import copy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.scenario import (  # noqa: E402 - after the checkout is on the path
    CounterExpect,
    Fault,
    Message,
    Timing,
    dump_scenario,
    load_scenario,
    parse_scenario_text,
)

D = ROOT / "scenarios"
ONLY = set(sys.argv[1:])
MADE: list[str] = []
base = load_scenario(D / "python-tcp4-connect.yaml")
msgs = base.messages()
E1, E2, E3 = msgs[0:8], msgs[8:12], msgs[12:16]
assert [m.type for m in E2] == [1300, 1306, 1327, 1320] and [m.type for m in E3] == [1300, 1306, 1327, 1320]
ROWS = base.expect.rows
P, BIND, CONN = ROWS

def F(kind, **kw):
    return Fault(kind, **kw)

def C(**kw):
    out = {}
    for k, v in kw.items():
        k = k.replace("__", ".")
        if isinstance(v, str):
            op = v[:2] if v[:2] in (">=", "<=", "!=") else v[:1]
            out[k] = CounterExpect(op, int(v[len(op):]))
        else:
            out[k] = CounterExpect("==", v)
    return out

def make(name, desc, steps, rows, counters, *, kernel=None, timing=None, flags=None, expect_kernel=None):
    MADE.append(name)
    if ONLY and name not in ONLY:
        return
    sc = copy.deepcopy(base)
    sc.name, sc.description = name, desc
    sc.origin = {"source": "python-tcp4-connect.yaml (recorded on this machine) with an injected fault",
                 "tool": "kaudit scenario fault"}
    for m in steps:
        if isinstance(m, Message):
            m.at = None
    sc.steps = steps
    sc.expect.rows = [copy.deepcopy(r) for r in rows]
    sc.expect.counters = counters
    if kernel:
        for k, v in kernel.items():
            setattr(sc.kernel, k, v)
    if timing:
        sc.timing = timing
    if flags is not None:
        sc.flags = flags
    if expect_kernel:
        sc.expect.kernel = expect_kernel
    text = dump_scenario(sc)
    parse_scenario_text(text, name)
    (D / f"{name}.yaml").write_text(text)

c = copy.deepcopy
make("fault-enobufs", "ENOBUFS between two events, nothing lost with it: every row still comes, the overrun is counted",
     c(E1) + c(E2) + [F("enobufs", count=0)] + c(E3), [P, BIND, CONN], C(kernel__enobufs=1, lost_serials=0))
make("fault-enobufs-lost-event", "ENOBUFS that swallowed a whole event (the bind): its serial is a gap, its row is missing",
     c(E1) + [F("enobufs", count=4)] + c(E2) + c(E3), [P, CONN], C(kernel__enobufs=1, lost_serials=1))
make("fault-drop-serial-gap", "the kernel lost the connect event (backlog overflow): a serial gap and the kernel's lost counter",
     c(E1) + c(E2) + [F("drop", count=4)] + c(E3), [P, BIND], C(lost_serials=1, kernel__lost=4))
make("fault-reorder-records", "SOCKADDR arrives before its SYSCALL: the event is still assembled by its id",
     c(E1) + c(E2) + [F("reorder", order=(1, 0, 2, 3), count=4)] + c(E3), [P, BIND, CONN],
     C(lost_serials=0, duplicates=0, events_by_reason__eoe=3))
make("fault-reorder-events", "the connect event arrives before the bind event: out of order is not lost",
     c(E1) + [F("reorder", order=(4, 5, 6, 7, 0, 1, 2, 3), count=8)] + c(E2) + c(E3), [P, BIND, CONN],
     C(lost_serials=0, events_by_reason__eoe=3))
make("fault-interleave-events", "the records of all three events interleaved one by one",
     [F("interleave", count=3)] + c(E1) + c(E2) + c(E3), [P, BIND, CONN], C(lost_serials=0, events_by_reason__eoe=3))
make("fault-duplicate-record", "the connect SYSCALL record is delivered twice: counted as a duplicate, one row",
     c(E1) + c(E2) + [F("duplicate", count=1)] + c(E3), [P, BIND, CONN], C(duplicates=1))
make("fault-truncated-message", "the bind's SOCKADDR datagram is cut to 30 bytes: a bad datagram, skipped",
     c(E1) + c(E2[:1]) + [F("truncate", nbytes=30)] + c(E2[1:]) + c(E3), [P, CONN], C(transport__bad_datagram=1))
make("fault-non-kernel-sender", "the connect SYSCALL arrives from netlink port 4242, not the kernel: dropped",
     c(E1) + c(E2) + [F("sender", sender=4242)] + c(E3), [P, BIND], C(transport__dropped_sender=1))
make("fault-garbage-text", "a record message whose text is not audit text, between two events",
     c(E1) + [F("garbage", message=Message(1300, b"this is not audit text", kind="garbage"))] + c(E2) + c(E3),
     [P, BIND, CONN], C(drops__no_header=1))
make("fault-timeout-delay", "the bind event's EOE never comes; 2.5 s of silence complete it by timeout (read-only collector; the other timeout is the kernel's EVENT_LISTENER record for the multicast join, which has no EOE either)",
     c(E1) + c(E2[:3]) + [F("delay", seconds=2.5)] + c(E3), [P, BIND, CONN],
     C(events_by_reason__timeout=2, events_by_reason__eoe=2, records_by_type__EVENT_LISTENER=1, config__read_only=1),
     kernel={"status": {**base.kernel.status, "enabled": 1}},
     flags=[f for f in base.flags if not f.startswith("--audit_allow_config")])
make("fault-steal-pid", "another process (pid 31337) registers as the audit daemon; the collector takes it back",
     c(E1) + c(E2) + [F("steal_pid", pid=31337)] + c(E3), [P, BIND, CONN], C(kernel__pid_lost=1, kernel__pid_retaken=1))
make("fault-audit-disabled", "auditctl -e 0 from another process mid-stream, collector without --audit_persist: the "
     "disabled kernel is counted (kernel_disabled) but left off, and generates nothing while audit is off",
     c(E1) + c(E2) + [F("disable")] + c(E3), [P, BIND],
     C(events_by_reason__eoe=2, kernel__kernel_disabled=1, kernel__kernel_reenabled=0),
     timing=Timing(fault_wait=1.0), flags=base.flags + ["--audit_persist=false"])
make("fault-audit-disabled-reenabled", "auditctl -e 0 from another process mid-stream; with --audit_persist (the default) "
     "the collector sees enabled=0 in its next status poll, counts it and switches audit back on: the connect after it "
     "is recorded",
     c(E1) + c(E2) + [F("disable")] + c(E3), [P, BIND, CONN],
     C(events_by_reason__eoe=3, kernel__kernel_disabled=1, kernel__kernel_reenabled=1),
     timing=Timing(fault_wait=5.0), expect_kernel={"status": {"enabled": 0, "pid": 0}, "rules": []})
make("fault-immutable-kernel", "the kernel is immutable (enabled=2): the collector changes nothing and reads the multicast copy",
     c(E1) + c(E2) + c(E3), [P, BIND, CONN], C(config__read_only=1, config__multicast=1, config__rules_added=0),
     kernel={"immutable": True}, expect_kernel={"status": {"enabled": 2, "pid": 0}, "rules": []})
make("fault-rule-add-refused", "the kernel refuses the collector's rule add (EPERM): it undoes its changes and reads read-only",
     c(E1) + c(E2) + c(E3), [P, BIND, CONN], C(config__read_only=1, config__rules_added=0),
     kernel={"status": {**base.kernel.status, "enabled": 1}, "refuse": {"ADD_RULE": 1}},
     expect_kernel={"status": {"enabled": 1, "pid": 0, "backlog_limit": base.kernel.status["backlog_limit"]}, "rules": []})
unknown = ONLY - set(MADE)
if unknown:
    sys.exit(f"make_faults: unknown scenario(s): {', '.join(sorted(unknown))}")
print("ok")
