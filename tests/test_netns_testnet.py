"""The test network: made, used, and removed on every path; leftovers of killed runs cleaned.

Needs root (network namespaces, veth). No audit state is touched, so these run in parallel
with everything else; every namespace they make has the ``kaudit-`` prefix and a run id of
this test process, so a parallel run is never disturbed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

pytest.importorskip("pyroute2")

from simulator import workloads  # noqa: E402
from simulator.workloads.base import WireExpectation, WorkloadContext  # noqa: E402
from simulator.workloads.netns import (  # noqa: E402
    NETNS_DIR,
    NetnsError,
    TestNet,
    cleanup_leftovers,
    in_netns,
    list_ours,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")

REPO = Path(__file__).resolve().parents[1]
NETWORK = [w for w in workloads.ALL if w.needs_network]


def _exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # reaped: gone (reuse within the test is vanishingly unlikely)


def test_create_and_close_leave_nothing():
    with TestNet.create() as net:
        assert _exists(net.client_ns) and _exists(net.server_ns)
        assert net.client_ns.startswith("kaudit-") and net.server_ns.startswith("kaudit-")
        from pyroute2 import IPRoute

        with IPRoute(netns=net.client_path) as ipr:
            idx = ipr.link_lookup(ifname=net.client_if)[0]
            addrs = {a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=idx)}
            assert {net.client_v4, net.client_v6} <= addrs
            # nothing routes out of the client namespace: only the two on-link prefixes exist
            routes = [r for r in ipr.get_routes(family=2) if r.get_attr("RTA_TABLE") == 254]
            assert all(r["dst_len"] > 0 for r in routes), "a default route would let traffic leave"
        with in_netns(net.server_path):
            # in_netns really moves the thread: the server's address is local there, not here
            with open("/proc/thread-self/net/fib_trie") as fp:
                assert net.server_v4 in fp.read()
        with open("/proc/thread-self/net/fib_trie") as fp:
            assert net.server_v4 not in fp.read()
        names = (net.client_ns, net.server_ns)
    assert not any(_exists(n) for n in names)


def test_exception_inside_removes_the_network():
    with pytest.raises(RuntimeError, match="boom"):
        with TestNet.create() as net:
            names = (net.client_ns, net.server_ns)
            raise RuntimeError("boom")
    assert not any(_exists(n) for n in names)


def test_sigterm_removes_the_network(tmp_path: Path):
    script = textwrap.dedent(
        """
        import sys, time
        from simulator.workloads.netns import TestNet
        with TestNet.create() as net:
            print(net.client_ns, net.server_ns, flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        names = proc.stdout.readline().split()
        assert len(names) == 2 and all(_exists(n) for n in names)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not any(_exists(n) for n in names)


def test_leftover_of_a_killed_run_is_removed_at_start():
    from pyroute2 import netns

    dead = f"kaudit-{_dead_pid()}-dead-c"
    alive = f"kaudit-{os.getpid()}-a11e-c"  # this process is alive: not a leftover
    netns.create(os.path.join(NETNS_DIR, dead))
    netns.create(os.path.join(NETNS_DIR, alive))
    try:
        removed = cleanup_leftovers()
        assert dead in removed and not _exists(dead)
        assert alive not in removed and _exists(alive)
    finally:
        for name in (dead, alive):
            if _exists(name):
                netns.remove(os.path.join(NETNS_DIR, name))


def test_sigkilled_run_is_cleaned_by_the_next():
    script = "from simulator.workloads.netns import TestNet\nimport time\nnet = TestNet.create()\nprint(net.client_ns, net.server_ns, flush=True)\ntime.sleep(60)\n"
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    names = proc.stdout.readline().split()
    proc.kill()
    proc.wait(timeout=10)
    assert all(_exists(n) for n in names)  # SIGKILL: nothing could run
    with TestNet.create() as net:
        assert not any(_exists(n) for n in names)
        assert set(names) <= set(net.leftovers_removed)


def test_name_collision_is_refused_and_leaves_the_other_alone():
    with TestNet.create() as net:
        with pytest.raises(NetnsError, match="already exists"):
            TestNet.create(run_id=net.run_id)
        assert _exists(net.client_ns) and _exists(net.server_ns)


@pytest.fixture(scope="module")
def net():
    with TestNet.create() as n:
        yield n


@pytest.mark.parametrize("wl", NETWORK, ids=[w.name for w in NETWORK])
def test_network_workload_puts_its_packet_on_the_wire(wl, net, tmp_path: Path):
    from simulator.workloads.wire import WireWatch

    with WireWatch(net) as wire:
        ctx = WorkloadContext(tmp_path.resolve(), net=net)
        try:
            rows = wl.run(ctx)
        finally:
            ctx.reap()
        time.sleep(0.2)
        results = wire.check(ctx.wire)
    assert rows and ctx.wire, "a network workload must promise rows and a packet"
    assert all(r.ok for r in results), [r.describe() for r in results]
    assert all(r.columns["pid"] in ctx.pids for r in rows)


def test_blackhole_never_answers(net):
    # no RST, no ICMP: the blocking connect runs into its own SO_SNDTIMEO, which means -EINPROGRESS
    t0 = time.monotonic()
    out = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(workloads.base.PROG),
            "tcp-connect",
            net.client_path,
            net.blackhole_v4,
            "9",
            "sndtimeo=1.5",
        ],
        check=True,
        capture_output=True,
        timeout=20,
    )
    assert json.loads(out.stdout)["errno"] == 115
    assert time.monotonic() - t0 >= 1.4


def test_wire_check_fails_for_a_packet_never_sent(net):
    from simulator.workloads.wire import WireWatch

    with WireWatch(net) as wire:
        subprocess.run(
            [
                sys.executable,
                "-I",
                "-S",
                str(workloads.base.PROG),
                "udp-send",
                net.client_path,
                net.server_v4,
                "9",
            ],
            check=True,
            capture_output=True,
            timeout=20,
        )
        time.sleep(0.2)
        sent = wire.check([WireExpectation("udp", net.client_v4, 0, net.server_v4, 9)])
        other_port = wire.check([WireExpectation("udp", net.client_v4, 0, net.server_v4, 10)])
        other_proto = wire.check([WireExpectation("tcp", net.client_v4, 0, net.server_v4, 9)])
    assert sent[0].ok
    assert not other_port[0].ok and not other_proto[0].ok
    assert "NOT SEEN" in other_port[0].describe()


def test_network_workload_without_a_network_is_an_error(tmp_path: Path):
    from simulator.workloads.base import WorkloadError

    with pytest.raises(WorkloadError, match="needs the test network"):
        NETWORK[0].run(WorkloadContext(tmp_path))


def test_list_ours_reports_only_prefixed_names(net):
    ours = list_ours()
    assert net.client_ns in ours and all(n.startswith("kaudit-") for n in ours)
    assert json.dumps(ours)  # plain strings
