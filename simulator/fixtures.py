"""pytest fixtures for an in-process simulator: the kernel model, its endpoint, and clients.

Import them into a conftest (``from simulator.fixtures import *``). The endpoint listens on a
short path under /tmp because unix socket paths are limited to 107 bytes and pytest's own
tmp_path is often longer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator

import pytest

from collector.protocol import netlink as nl
from collector.protocol.status import AuditStatus
from collector.transport import Transport
from simulator.endpoint import EndpointServer
from simulator.kernel import AuditKernel, Client

REQ_ACK = nl.NLM_F_REQUEST | nl.NLM_F_ACK


class KernelHarness:
    """Drive an :class:`AuditKernel` without sockets: send one request, see what each socket got.

    Every datagram the kernel sends is kept per socket (``datagrams(client)``), so a test can
    check what reached the daemon, a multicast reader or the requester, byte for byte.
    """

    def __init__(self, kernel: AuditKernel | None = None, **kw: object) -> None:
        self.kernel = kernel if kernel is not None else AuditKernel(**kw)  # type: ignore[arg-type]
        self._got: dict[int, list[bytes]] = {}

    def sock(self, pid: int = 4242, *, groups: int = 0, **identity: object) -> Client:
        """A bound socket of process ``pid`` (``groups=1``: a multicast reader)."""
        c = self.kernel.connect(pid, **identity)
        err = self.kernel.bind(c, groups=groups)
        if err:
            raise OSError(-err, f"bind refused with {err}")
        return c

    def pump(self, *, daemon_ready: bool = True) -> None:
        self.kernel.deliver_records(daemon_ready=daemon_ready)
        for d in self.kernel.take_outputs():
            self._got.setdefault(id(d.client), []).append(d.data)

    def send_raw(self, c: Client, data: bytes, *, daemon_ready: bool = True) -> list[nl.NetlinkMessage]:
        """Feed one datagram from ``c``; returns the messages ``c`` received because of it."""
        before = len(self._got.get(id(c), []))
        self.kernel.receive(c, data)
        self.pump(daemon_ready=daemon_ready)
        return [m for d in self._got.get(id(c), [])[before:] for m in nl.decode_datagram(d)]

    def send(self, c: Client, mtype: int, payload: bytes = b"", *, flags: int = REQ_ACK, seq: int = 7,
             daemon_ready: bool = True) -> list[nl.NetlinkMessage]:
        data = nl.encode(nl.NetlinkMessage(mtype, flags, seq, 0, payload), short_len=False)
        return self.send_raw(c, data, daemon_ready=daemon_ready)

    def status(self, c: Client) -> AuditStatus:
        return AuditStatus.decode([m for m in self.send(c, 1000) if m.type == 1000][0].payload)

    def datagrams(self, c: Client) -> list[bytes]:
        return list(self._got.get(id(c), []))

    def records(self, c: Client) -> list[tuple[int, bytes]]:
        """(type, text after the audit(...) stamp) of every record ``c`` received."""
        out = []
        for data in self._got.get(id(c), []):
            for m in nl.decode_datagram(data):
                if m.payload.startswith(b"audit("):
                    out.append((m.type, m.payload.split(b"): ", 1)[1]))
        return out


def errors(msgs: list[nl.NetlinkMessage]) -> list[int]:
    """The error field of every NLMSG_ERROR in ``msgs`` (0 = ACK, negative = errno)."""
    return [nl.parse_error(m.payload).error for m in msgs if m.type == nl.NLMSG_ERROR]


@pytest.fixture
def kernel_harness() -> KernelHarness:
    """A fresh kernel model behind a :class:`KernelHarness`."""
    return KernelHarness()


@pytest.fixture
def sim_kernel() -> AuditKernel:
    """A fresh kernel model in the boot state of this machine's kernel (audit off, failure 1)."""
    return AuditKernel()


@pytest.fixture
def sim_server(sim_kernel: AuditKernel) -> Iterator[EndpointServer]:
    """The endpoint serving ``sim_kernel`` in a background thread, listening on a unix path."""
    tmp = tempfile.mkdtemp(prefix="kaudit-sim-")
    server = EndpointServer(sim_kernel)
    server.listen(os.path.join(tmp, "sim.sock"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def sim_endpoint(sim_server: EndpointServer) -> str:
    """``unix:PATH`` of the running simulator (for open_transport and the CLI)."""
    return sim_server.endpoint


@pytest.fixture
def sim_transport(sim_server: EndpointServer) -> Iterator[Transport]:
    """A unicast transport over an in-process socket pair to the simulator."""
    t = Transport.over_socket(sim_server.connect_pair())
    try:
        yield t
    finally:
        t.close()


__all__ = ["KernelHarness", "errors", "kernel_harness", "sim_endpoint", "sim_kernel", "sim_server", "sim_transport"]
