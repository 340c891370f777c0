"""Socket workloads on loopback: curl, connect (succeeded, refused, in progress), unix, bind, accept.

Each workload's expectations come from what it did and what its helper reported: the port a
server was given, the local port curl or a client ended up with (``-w %{local_port}``,
``getsockname``), the errno the kernel answered. Status follows osquery's rules, which the
collector implements (``collector/tables/socket_events.py``):

- a blocking connect that completes: ``succeeded``;
- any non-blocking TCP connect, as curl's: the kernel answers -EINPROGRESS even on loopback,
  even when the peer is there (the handshake finishes after the syscall has returned), so the
  row says ``in_progress`` with ``success`` 1, whether curl then gets a page or a refusal;
- a blocking connect to a closed port: -ECONNREFUSED, ``failed`` with ``success`` 0 (kept
  because verify runs the collector with ``audit_allow_failed_socket_events``);
- a failed accept has no address to log (no SOCKADDR record), so it has no row.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from simulator.workloads.base import (
    Child,
    ExpectedRow,
    Workload,
    WorkloadContext,
    WorkloadError,
    family_of,
    osq_address,
    socket_row,
)

__all__ = [
    "AcceptKinds",
    "BindLoopback",
    "ConnectRefused",
    "CurlClosedPort",
    "CurlLoopback",
    "Tcp6Loopback",
    "UnixAbstract",
    "UnixPath",
    "accept_row",
    "bind_row",
    "connect_row",
    "curl_argv",
    "reserve_closed_port",
]

STATUS_SUCCESS = {"succeeded": 1, "in_progress": 1, "no_client": 1, "failed": 0}


def _base(child: Child, path: str | None) -> dict:
    return {"path": path or child.exe, "auid": child.identity.auid}


def connect_row(
    child: Child, host: str, port: int, status: str, *, why: str, path: str | None = None
) -> ExpectedRow:
    """connect() to host:port by ``child`` (or by the program it exec'd: ``path``)."""
    return socket_row(
        "connect",
        child.pid,
        family=family_of(host),
        remote_address=osq_address(host),
        remote_port=int(port),
        status=status,
        success=STATUS_SUCCESS[status],
        why=why,
        **_base(child, path),
    )


def bind_row(child: Child, host: str, port: int, *, why: str, status: str = "succeeded") -> ExpectedRow:
    """bind() to host:port as requested (port 0 stays 0: the kernel logs what was passed)."""
    return socket_row(
        "bind",
        child.pid,
        family=family_of(host),
        local_address=osq_address(host),
        local_port=int(port),
        status=status,
        success=STATUS_SUCCESS[status],
        why=why,
        **_base(child, None),
    )


def accept_row(child: Child, peer_host: str, peer_port: int, *, why: str) -> ExpectedRow:
    """accept()/accept4() that returned the peer peer_host:peer_port (action is ``accept`` for both)."""
    return socket_row(
        "accept",
        child.pid,
        family=family_of(peer_host),
        remote_address=osq_address(peer_host),
        remote_port=int(peer_port),
        status="succeeded",
        success=1,
        why=why,
        **_base(child, None),
    )


def unix_row(child: Child, action: str, name: str, status: str, *, why: str) -> ExpectedRow:
    """A unix socket row: ``socket`` is the path, or the abstract name without its NUL."""
    return socket_row(
        action,
        child.pid,
        family=1,
        socket=name.removeprefix("@"),
        status=status,
        success=STATUS_SUCCESS[status],
        why=why,
        **_base(child, None),
    )


def curl_argv(url: str) -> list[str]:
    """curl that reports what it did: HTTP code, local address and port of its connection.

    ``-q`` keeps curl from reading ~/.curlrc: looking up the home directory through NSS
    otherwise makes glibc try the nscd unix socket first, an extra (failed) connect.
    """
    return [
        "curl",
        "-q",
        "-s",
        "-o",
        "/dev/null",
        "--max-time",
        "5",
        "-w",
        "%{http_code} %{local_ip} %{local_port}",
        url,
    ]


def parse_curl_report(child: Child, out: bytes) -> tuple[int, str, int]:
    parts = out.decode("ascii", "replace").split()
    if len(parts) != 3:
        raise WorkloadError(f"{child.describe()}: unexpected -w output {out!r}")
    try:
        return int(parts[0]), parts[1], int(parts[2])
    except ValueError:
        raise WorkloadError(f"{child.describe()}: unexpected -w output {out!r}") from None


def http_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


@contextmanager
def reserve_closed_port(host: str = "127.0.0.1") -> Iterator[int]:
    """A port nobody listens on, held (bound, never listening) for the body's duration.

    A bound socket that does not listen answers a SYN with RST, and holding it keeps any
    other program from starting to listen there meanwhile: the port is closed for sure.
    """
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, 0))
        except OSError as exc:
            raise WorkloadError(f"cannot reserve a closed port on {host}: {exc}") from exc
        yield sock.getsockname()[1]


def start_server(
    ctx: WorkloadContext, kind: str, host: str, count: int = 1, netns: str = "-"
) -> tuple[Child, int]:
    """The helper server (``prog.py serve``): returns it and the port the kernel gave it."""
    server = ctx.prog("serve", netns, kind, host, 0, count)
    ready = server.read_json()
    if "ready" not in ready:
        raise WorkloadError(f"{server.describe()}: expected a ready line, got {ready}")
    return server, int(ready["ready"][1])


def server_rows(server: Child, host: str, *, why: str) -> list[ExpectedRow]:
    return [*server.spawn_rows(why=f"{why} server"), bind_row(server, host, 0, why=f"{why} server binds")]


class CurlLoopback(Workload):
    name = "curl-loopback"
    description = "curl fetches a page from a local HTTP server (connect: in_progress; server accept)"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        host = "127.0.0.1"
        server, port = start_server(ctx, "http", host)
        curl = ctx.spawn(curl_argv(http_url(host, port)))
        out, _ = curl.proc.communicate(timeout=10)
        code, local_ip, local_port = parse_curl_report(curl, out)
        if curl.proc.returncode != 0 or code != 200:
            raise WorkloadError(f"curl exited {curl.proc.returncode} with HTTP {code}; expected 0 and 200")
        accepted = server.read_json()
        server.wait()
        if accepted.get("accepted") != [local_ip, local_port]:
            raise WorkloadError(
                f"server accepted {accepted}, curl says it connected from {local_ip}:{local_port}"
            )
        return [
            *server_rows(server, host, why="http"),
            accept_row(server, local_ip, local_port, why="server accepts curl"),
            *curl.spawn_rows(why="curl"),
            connect_row(curl, host, port, "in_progress", why="curl's non-blocking connect"),
        ]


class CurlClosedPort(Workload):
    name = "curl-closed-port"
    description = "curl to a closed local port: non-blocking connect, -EINPROGRESS, then refused"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        host = "127.0.0.1"
        with reserve_closed_port(host) as port:
            curl = ctx.spawn(curl_argv(http_url(host, port)))
            curl.proc.communicate(timeout=10)
        if curl.proc.returncode != 7:  # CURLE_COULDNT_CONNECT
            raise WorkloadError(f"curl exited {curl.proc.returncode}, expected 7 (could not connect)")
        return [
            *curl.spawn_rows(why="curl"),
            connect_row(curl, host, port, "in_progress", why="curl's non-blocking connect to a closed port"),
        ]


class ConnectRefused(Workload):
    name = "connect-refused"
    description = "a blocking TCP connect to a closed local port: -ECONNREFUSED, status failed"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        host = "127.0.0.1"
        with reserve_closed_port(host) as port:
            client = ctx.prog("tcp-connect", "-", host, port)
            report = client.read_json()
            client.wait()
        if report["errno"] != 111:
            raise WorkloadError(
                f"connect to closed port {port} returned errno {report['errno']}, expected ECONNREFUSED"
            )
        return [
            *client.spawn_rows(why="client"),
            connect_row(client, host, port, "failed", why="blocking connect refused"),
        ]


class Tcp6Loopback(Workload):
    name = "tcp6-loopback"
    description = "a blocking TCP connect to [::1] that succeeds; the server accepts it"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        host = "::1"
        server, port = start_server(ctx, "tcp", host)
        client = ctx.prog("tcp-connect", "-", host, port)
        report = client.read_json()
        client.wait()
        accepted = server.read_json()
        server.wait()
        if report["errno"] != 0:
            raise WorkloadError(f"connect to [::1]:{port} failed with errno {report['errno']}")
        check_accepted(accepted, report)
        return [
            *server_rows(server, host, why="tcp6"),
            accept_row(server, *accepted["accepted"], why="server accepts"),
            *client.spawn_rows(why="client"),
            connect_row(client, host, port, "succeeded", why="blocking connect to [::1]"),
        ]


def check_accepted(accepted: dict, client_report: dict) -> None:
    """The server's accepted peer must be the client's own local address: both ends agree."""
    if accepted.get("accepted") != client_report.get("local"):
        raise WorkloadError(
            f"server accepted {accepted.get('accepted')}, client reports local {client_report.get('local')}"
        )


class UnixPath(Workload):
    name = "unix-path"
    description = "unix socket by path: bind, connect, and a connect to a missing path (failed)"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        path = str(ctx.workdir / "kaudit.sock")
        missing = str(ctx.workdir / "missing.sock")
        child = ctx.prog("unix", path, missing)
        report = child.read_json()
        child.wait()
        if report["connect_errno"] != 0 or report["missing_errno"] != 2:
            raise WorkloadError(f"unix helper reported {report}; expected connect 0 and missing ENOENT")
        return [
            *child.spawn_rows(why="unix helper"),
            unix_row(child, "bind", path, "succeeded", why="bind the path"),
            unix_row(child, "connect", path, "succeeded", why="connect to the listener"),
            unix_row(child, "connect", missing, "failed", why="connect to a missing path: ENOENT"),
        ]


class UnixAbstract(Workload):
    name = "unix-abstract"
    description = "abstract unix socket: bind, connect, and a connect to a missing name (refused)"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        # the abstract namespace is per network namespace, shared by every run on the host
        tag = f"{os.getpid()}-{secrets.token_hex(3)}"
        name, missing = f"@kaudit-{tag}-abs", f"@kaudit-{tag}-missing"
        child = ctx.prog("unix", name, missing)
        report = child.read_json()
        child.wait()
        if report["connect_errno"] != 0 or report["missing_errno"] != 111:
            raise WorkloadError(f"unix helper reported {report}; expected connect 0 and missing ECONNREFUSED")
        return [
            *child.spawn_rows(why="unix helper"),
            unix_row(child, "bind", name, "succeeded", why="bind the abstract name"),
            unix_row(child, "connect", name, "succeeded", why="connect to the listener"),
            unix_row(child, "connect", missing, "failed", why="connect to a missing name: ECONNREFUSED"),
        ]


class BindLoopback(Workload):
    name = "bind"
    description = "bind TCP 127.0.0.1, TCP [::1] and UDP 127.0.0.1 to port 0"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        child = ctx.prog("bind")
        report = child.read_json()
        child.wait()
        rows = [*child.spawn_rows(why="bind helper")]
        for b in report["binds"]:
            host, port = b["requested"]
            rows.append(bind_row(child, host, port, why=f"bind {host} (got port {b['bound'][1]})"))
        if len(rows) != 5:
            raise WorkloadError(f"bind helper reported {len(report['binds'])} binds, expected 3")
        return rows


class AcceptKinds(Workload):
    name = "accept-accept4"
    description = "accept (syscall 43) and accept4 one client each; a non-blocking accept with none waiting"

    def run(self, ctx: WorkloadContext) -> list[ExpectedRow]:
        child = ctx.prog("accept-kinds")
        r = child.read_json()
        child.wait()
        if r["accept"] != r["client1"] or r["accept4"] != r["client2"] or r["nonblock_errno"] != 11:
            raise WorkloadError(f"accept helper reported {r}")
        host, port = r["listen"]
        return [
            *child.spawn_rows(why="accept helper"),
            bind_row(child, host, 0, why="listener binds port 0"),
            connect_row(child, host, port, "succeeded", why="client 1 connects"),
            accept_row(child, *r["accept"], why="accept() returns client 1"),
            connect_row(child, host, port, "succeeded", why="client 2 connects"),
            accept_row(child, *r["accept4"], why="accept4() returns client 2"),
            # the non-blocking accept failed with EAGAIN: no address logged, so no row
        ]
