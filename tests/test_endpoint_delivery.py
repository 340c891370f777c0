"""Delivery through the endpoint: records, overruns, backlog, injected errors, panics."""

from __future__ import annotations

import os
import time

from collector.protocol.status import AuditStatus, status_set
from collector.transport import Transport, TransportEvent, open_transport
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel


def wait_for(pred, timeout: float = 2.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_records_reach_the_daemon_and_readers_through_the_endpoint(sim_server: EndpointServer, sim_endpoint: str) -> None:
    daemon = Transport.over_socket(sim_server.connect_pair())
    reader = open_transport(sim_endpoint, multicast=True)
    try:
        daemon.request(1001, status_set(pid=os.getpid()).encode())
        daemon.request(1001, status_set(enabled=1).encode())
        sim_server.emit_record(1300, "arch=c000003e syscall=42")
        (d,) = daemon.recv(2)
        (m,) = reader.recv(2)
        assert d.short_len and not m.short_len and d.payload == m.payload
        assert d.payload.endswith(b"): arch=c000003e syscall=42")
    finally:
        daemon.close()
        reader.close()


def test_an_injected_enobufs_is_an_event_not_an_exception(sim_server: EndpointServer) -> None:
    t = Transport.over_socket(sim_server.connect_pair())
    try:
        t.request(1000)
        assert sim_server.inject_error(t.port_id, 105)
        got = t.recv(2)
        assert isinstance(got, TransportEvent) and got.kind == "enobufs" and got.errno == 105
        assert t.counters["enobufs"] == 1
        assert sim_server.inject_error(t.port_id, 4)
        assert t.recv(2) == TransportEvent("eintr", 4, "reported by the simulator endpoint")
        assert t.request(1000)  # still usable
        assert not sim_server.inject_error(999999, 105)
    finally:
        t.close()


def test_a_reader_that_does_not_read_is_overrun_with_enobufs() -> None:
    with EndpointServer(AuditKernel(enabled=1), queue_limit=1000) as server:
        server.start()
        reader = Transport.over_socket(server.connect_pair(), multicast=True, rcvbuf=4096)
        try:
            for i in range(3000):
                server.emit_record(1300, f"n={i} " + "x" * 200)
            assert wait_for(lambda: server.counters["multicast_overrun"] > 0)
            kinds, records = [], 0
            while (got := reader.recv(0.5)) != []:
                if isinstance(got, TransportEvent):
                    kinds.append(got.kind)
                else:
                    records += len(got)
            assert "enobufs" in kinds and reader.counters["enobufs"] >= 1
            assert 0 < records < 3000  # some copies were dropped, the rest arrived
        finally:
            reader.close()


def test_a_slow_daemon_makes_backlog_and_lost() -> None:
    kernel = AuditKernel(backlog_limit=10, enabled=1)
    with EndpointServer(kernel, queue_limit=1) as server:
        server.start()
        daemon = Transport.over_socket(server.connect_pair(), rcvbuf=4096)
        other = Transport.over_socket(server.connect_pair())
        try:
            daemon.request(1001, status_set(pid=os.getpid()).encode())
            for i in range(400):
                server.emit_record(1300, f"n={i} " + "y" * 400)
            st = AuditStatus.decode(other.request(1000)[0].payload)
            assert st.backlog > 0 and st.lost > 0
        finally:
            daemon.close()
            other.close()


def test_a_simulated_panic_closes_every_connection() -> None:
    kernel = AuditKernel(failure=2, rate_limit=1, enabled=1)
    with EndpointServer(kernel) as server:
        server.start()
        t = Transport.over_socket(server.connect_pair())
        server.emit_record(1300, "a=1")
        server.emit_record(1300, "b=1")
        assert wait_for(lambda: server.panic_message is not None)
        got = t.recv(2)
        assert isinstance(got, TransportEvent) and got.kind == "closed"
        t.close()


def test_any_datagram_from_any_sender_and_waiting_until_the_client_has_read(sim_server: EndpointServer) -> None:
    t = Transport.over_socket(sim_server.connect_pair())
    try:
        t.request(1000)
        assert sim_server.wait_drained(t.port_id)
        assert sim_server.send_datagram(t.port_id, b"\x10\x00\x00\x00\xe8\x03", sender=0)  # truncated
        assert sim_server.send_datagram(t.port_id, bytes(16), sender=4242)  # not the kernel
        assert sim_server.pending_bytes(t.port_id) > 0
        assert t.recv(0.3) == []
        assert t.counters["bad_datagram"] == 1 and t.counters["dropped_sender"] == 1
        assert sim_server.wait_drained(t.port_id) and sim_server.pending_bytes(t.port_id) == 0
        assert not sim_server.send_datagram(424242, b"")
    finally:
        t.close()
