"""Workloads whose connects cross the veth between our two namespaces.

Clients run in the client namespace, servers in the server namespace (the helper setns()es
itself before touching a socket, so its pid, argv and exec are as plain as any other child's).
Each workload also promises the packet its connect put on the wire (``ctx.expect_packet``):
verify confirms it with scapy, independently of audit.

The address that never answers is ``net.blackhole_v4``: the client has a permanent neighbour
entry for it, so the SYN leaves, and the server namespace drops it silently. The client uses a
*blocking* socket with SO_SNDTIMEO = 1 s to bound the wait; when that timer runs out the
kernel's connect returns -EINPROGRESS (``__inet_stream_connect``: a timed-out wait keeps the
in-progress error), so the row says ``in_progress`` even though the socket was blocking.
"""

from __future__ import annotations

from simulator.workloads.base import ExpectedRow, Workload, WorkloadContext, WorkloadError, resolve_exe
from simulator.workloads.sockets import (
    accept_row,
    check_accepted,
    connect_row,
    curl_argv,
    http_url,
    parse_curl_report,
    server_rows,
    start_server,
)

__all__ = ["Blackhole", "CurlVeth", "RefusedVeth", "TcpVeth", "UdpVeth"]


def _net(ctx: WorkloadContext):
    if ctx.net is None:
        raise WorkloadError("this workload needs the test network, and there is none")
    return ctx.net


class TcpVeth(Workload):
    needs_network = True

    def __init__(self, version: int) -> None:
        self.version = version
        self.name = f"tcp{version}-veth"
        self.description = (
            f"blocking TCP connect over the veth (IPv{version}), accepted by a server in the peer namespace"
        )

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        net = _net(ctx)
        host = net.server_v4 if self.version == 4 else net.server_v6
        server, port = start_server(ctx, "tcp", host, netns=net.server_path)
        client = ctx.prog("tcp-connect", net.client_path, host, port)
        report = client.read_json()
        client.wait()
        if report["errno"] != 0:
            raise WorkloadError(f"connect to {host} port {port} failed with errno {report['errno']}")
        accepted = server.read_json()
        server.wait()
        check_accepted(accepted, report)
        lhost, lport = report["local"]
        ctx.expect_packet("tcp", lhost, lport, host, port, why="client SYN")
        return [
            *server_rows(server, host, why=f"tcp{self.version}"),
            accept_row(server, lhost, lport, why="server accepts the client"),
            *client.spawn_rows(why="client"),
            connect_row(client, host, port, "succeeded", why="blocking connect across the veth"),
        ]


class UdpVeth(Workload):
    needs_network = True

    def __init__(self, version: int) -> None:
        self.version = version
        self.name = f"udp{version}-veth"
        self.description = (
            f"UDP connect + send over the veth (IPv{version}) to a server in the peer namespace"
        )

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        net = _net(ctx)
        host = net.server_v4 if self.version == 4 else net.server_v6
        server, port = start_server(ctx, "udp", host, netns=net.server_path)
        client = ctx.prog("udp-send", net.client_path, host, port)
        report = client.read_json()
        client.wait()
        if report["errno"] != 0:
            raise WorkloadError(f"UDP connect to {host} port {port} failed with errno {report['errno']}")
        received = server.read_json()
        server.wait()
        if received.get("received") != report["local"]:
            raise WorkloadError(
                f"server received from {received.get('received')}, client is {report['local']}"
            )
        lhost, lport = report["local"]
        ctx.expect_packet("udp", lhost, lport, host, port, why="client datagram")
        return [
            *server_rows(server, host, why=f"udp{self.version}"),
            *client.spawn_rows(why="client"),
            connect_row(client, host, port, "succeeded", why="UDP connect (sets the peer; sends nothing)"),
        ]


class Blackhole(Workload):
    name = "connect-timeout"
    description = "blocking connect to an address in the test network that never answers (SO_SNDTIMEO 1s)"
    needs_network = True
    port = 9

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        net = _net(ctx)
        client = ctx.prog("tcp-connect", net.client_path, net.blackhole_v4, self.port, "sndtimeo=1")
        report = client.read_json(timeout=15)
        client.wait()
        if report["errno"] != 115:
            raise WorkloadError(
                f"connect to the blackhole returned errno {report['errno']}, expected EINPROGRESS (timeout)"
            )
        lhost, lport = report["local"]
        ctx.expect_packet("tcp", lhost, lport, net.blackhole_v4, self.port, why="SYN that nobody answers")
        return [
            *client.spawn_rows(why="client"),
            connect_row(client, net.blackhole_v4, self.port, "in_progress", why="blocking connect timed out"),
        ]


class RefusedVeth(Workload):
    name = "refused-veth"
    description = "blocking connect over the veth to a closed port: the peer answers RST, status failed"
    needs_network = True
    port = 7

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        net = _net(ctx)
        client = ctx.prog("tcp-connect", net.client_path, net.server_v4, self.port)
        report = client.read_json()
        client.wait()
        if report["errno"] != 111:
            raise WorkloadError(
                f"connect to closed port {self.port} returned errno {report['errno']}, expected ECONNREFUSED"
            )
        # a refused connect resets the socket's source address to 0.0.0.0 but keeps its port
        ctx.expect_packet(
            "tcp", net.client_v4, int(report["local"][1]), net.server_v4, self.port, why="SYN answered by RST"
        )
        return [
            *client.spawn_rows(why="client"),
            connect_row(
                client, net.server_v4, self.port, "failed", why="connect refused by the peer namespace"
            ),
        ]


class CurlVeth(Workload):
    name = "curl-veth"
    description = "curl in the client namespace fetches a page from a server in the peer namespace"
    needs_network = True

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        net = _net(ctx)
        host = net.server_v4
        server, port = start_server(ctx, "http", host, netns=net.server_path)
        curl_exe = resolve_exe("curl")
        argv = curl_argv(http_url(host, port))
        # the helper enters the client namespace and execs curl in place: one pid, two execs
        child = ctx.prog("exec-in-netns", net.client_path, curl_exe, *argv)
        out, _ = child.proc.communicate(timeout=10)
        code, local_ip, local_port = parse_curl_report(child, out)
        if child.proc.returncode != 0 or code != 200:
            raise WorkloadError(f"curl exited {child.proc.returncode} with HTTP {code}; expected 0 and 200")
        accepted = server.read_json()
        server.wait()
        if accepted.get("accepted") != [local_ip, local_port]:
            raise WorkloadError(
                f"server accepted {accepted}, curl says it connected from {local_ip}:{local_port}"
            )
        ctx.expect_packet("tcp", local_ip, local_port, host, port, why="curl's SYN")
        return [
            *server_rows(server, host, why="http"),
            accept_row(server, local_ip, local_port, why="server accepts curl"),
            *child.spawn_rows(why="netns helper"),
            child.execve_row(curl_exe, argv, why="the helper execs curl"),
            connect_row(child, host, port, "in_progress", why="curl's non-blocking connect", path=curl_exe),
        ]
