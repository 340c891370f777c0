"""The transport on the real NETLINK_AUDIT socket (skipped where the kernel's audit is unreachable)."""

from __future__ import annotations

import os

import pytest

from collector.protocol.status import AuditStatus, status_set
from collector.transport import KernelError, kernel_unreachable_reason, open_transport

REASON = kernel_unreachable_reason()
needs_kernel = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@needs_kernel
def test_get_status_from_the_kernel() -> None:
    with open_transport("kernel") as t:
        (reply,) = t.request(1000)
        assert reply.pid == 0 and len(reply.payload) >= 32
        assert AuditStatus.decode(reply.payload).feature_bitmap
        assert t.last_ack.error == 0
        assert t.port_id != 0


@needs_kernel
def test_the_kernel_refusal_is_a_kernel_error() -> None:
    with open_transport("kernel") as t:
        with pytest.raises(KernelError) as info:
            t.request(999, b"abcd", reply=False)
        assert info.value.name == "EINVAL"


@needs_kernel
def test_the_receive_buffer_is_sized_as_root() -> None:
    with open_transport("kernel", rcvbuf=4 << 20) as t:
        if os.geteuid() == 0:
            assert t.rcvbuf >= 4 << 20  # SO_RCVBUFFORCE ignores rmem_max (Linux doubles the value)
        else:
            assert t.rcvbuf > 0


@needs_kernel
def test_a_multicast_reader_binds_to_readlog() -> None:
    with open_transport("kernel", multicast=True) as t:
        port, groups = t._backend.sock.getsockname()
        assert groups == 1 and port == t.port_id


@pytest.mark.live
def test_registered_daemon_socket_receives_short_records(live_audit) -> None:
    with open_transport("kernel") as daemon, open_transport("kernel", multicast=True) as reader:
        daemon.request(1001, status_set(pid=os.getpid()).encode())
        try:
            daemon.request(1001, status_set(enabled=1).encode())
            daemon.request(1001, status_set(rate_limit=live_audit.status.rate_limit).encode())  # logs CONFIG_CHANGE
            got = []
            while (msgs := daemon.recv(0.5)) and not any(m.type == 1305 for m in got):
                got.extend(msgs)
            change = [m for m in got if m.type == 1305]
            assert change and change[0].short_len and b"op=set audit_rate_limit=" in change[0].payload
            mine = []
            while (msgs := reader.recv(0.5)) and not any(m.type == 1305 for m in mine):
                mine.extend(msgs)
            assert any(m.type == 1305 and not m.short_len for m in mine)
        finally:
            daemon.request(1001, status_set(enabled=live_audit.status.enabled).encode())
            daemon.request(1001, status_set(pid=0).encode())
