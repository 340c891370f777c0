"""The helper program live workloads run as their child: real syscalls, reported truthfully.

Run as ``python3 -I -S prog.py COMMAND ARGS...``. It imports only the standard library (so
``-S`` works and start-up does nothing the audit rules see) and prints one JSON object per
line on stdout: what it did and what the kernel answered (errno, the local address the kernel
picked, the peer an accept returned, the pids of the processes it forked). The workload turns
that report into expected rows; the kernel's audit trail must then agree with it.

Every command runs under an alarm (``KAUDIT_PROG_DEADLINE`` seconds, default 20) so a helper
can never outlive its workload by much, whatever happens to the parent.

Commands (HOST is an IPv4 or IPv6 literal; NETNS is a path such as /run/netns/NAME, or -):

  tcp-connect NETNS HOST PORT [nonblock|sndtimeo=SEC]   one connect; reports errno and local addr
  udp-send NETNS HOST PORT                               connect + send one datagram
  serve NETNS tcp|udp|http HOST PORT COUNT               bind (+listen), report ready, then COUNT
                                                         accepts (accept4) / datagrams / requests
  bind                                                   bind tcp 127.0.0.1, tcp [::1], udp 127.0.0.1
  accept-kinds                                           listen; accept (the accept syscall) and
                                                         accept4 one client each; then a
                                                         non-blocking accept with none waiting
  unix PATH|@NAME MISSING                                bind+listen, connect, connect to MISSING
  exec-in-netns NETNS PROGRAM ARGV...                    setns, then execv (no fork)
  execveat PROGRAM ARGV...                               fexecve: execveat(fd, "", AT_EMPTY_PATH)
  exec-failed MISSING PROGRAM ARGV...                    execv MISSING (fails), then execv PROGRAM
  fork-chain DEPTH PROGRAM ARGV...                       fork DEPTH levels deep; the last execs
  spawn PROGRAM ARGV...                                  posix_spawn (glibc: clone3, else clone)

ARGV is the whole argument vector, argv[0] included.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import select
import signal
import socket
import struct
import sys

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def emit(**obj: object) -> None:
    """One JSON line, written with a single write() so lines from forked children never mix."""
    os.write(1, (json.dumps(obj) + "\n").encode())


def fail(message: str, code: int = 3) -> None:
    emit(error=message)
    os._exit(code)


def enter_netns(path: str) -> None:
    """Move this (single-threaded) process into the network namespace at ``path``."""
    if path in ("", "-"):
        return
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        fail(f"cannot open network namespace {path}: {exc.strerror}")
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        fail(f"setns({path}) failed: {os.strerror(err)}")
    os.close(fd)


def family_of(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def addr_of(sockaddr: tuple) -> list:
    """[host, port] from a socket address tuple (IPv6 tuples carry flowinfo and scope too)."""
    return [sockaddr[0], sockaddr[1]]


def wait_writable(sock: socket.socket, timeout: float) -> int:
    """Finish a non-blocking connect: wait, then SO_ERROR (the connection's final errno)."""
    select.select([], [sock], [], timeout)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


def cmd_tcp_connect(netns: str, host: str, port: str, mode: str = "blocking") -> None:
    enter_netns(netns)
    sock = socket.socket(family_of(host), socket.SOCK_STREAM)
    final = None
    if mode == "nonblock":
        sock.setblocking(False)
    elif mode.startswith("sndtimeo="):
        seconds = float(mode.split("=", 1)[1])
        tv = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
    elif mode != "blocking":
        fail(f"tcp-connect: unknown mode {mode!r}")
    try:
        sock.connect((host, int(port)))
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    if mode == "nonblock" and err == errno.EINPROGRESS:
        final = wait_writable(sock, 5.0)
    try:
        local = addr_of(sock.getsockname())
    except OSError:
        local = ["", 0]
    emit(errno=err, final=final, local=local)
    sock.close()


def cmd_udp_send(netns: str, host: str, port: str) -> None:
    enter_netns(netns)
    sock = socket.socket(family_of(host), socket.SOCK_DGRAM)
    try:
        sock.connect((host, int(port)))
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    if not err:
        sock.send(b"kaudit-verify")
    emit(errno=err, local=addr_of(sock.getsockname()))
    sock.close()


def cmd_serve(netns: str, kind: str, host: str, port: str, count: str) -> None:
    enter_netns(netns)
    stype = socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM
    sock = socket.socket(family_of(host), stype)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        fail(f"serve: cannot bind {host} port {port}: {exc.strerror}")
    if stype == socket.SOCK_STREAM:
        sock.listen(16)
    emit(ready=addr_of(sock.getsockname()))
    for _ in range(int(count)):
        # wait first, so the accept syscall starts only once a client is there
        ready, _, _ = select.select([sock], [], [], 15.0)
        if not ready:
            fail("serve: no client within 15s", 4)
        if stype == socket.SOCK_DGRAM:
            data, peer = sock.recvfrom(2048)
            emit(received=addr_of(peer), size=len(data))
            continue
        conn, peer = sock.accept()
        emit(accepted=addr_of(peer))
        if kind == "http":
            conn.settimeout(5.0)
            request = b""
            try:
                while b"\r\n\r\n" not in request:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    request += chunk
                body = b"kaudit ok\n"
                conn.sendall(
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\nConnection: close\r\n\r\n"
                    + body
                )
            except OSError:
                pass
        conn.close()
    sock.close()


def cmd_bind() -> None:
    out = []
    for family, stype, host in (
        (socket.AF_INET, socket.SOCK_STREAM, "127.0.0.1"),
        (socket.AF_INET6, socket.SOCK_STREAM, "::1"),
        (socket.AF_INET, socket.SOCK_DGRAM, "127.0.0.1"),
    ):
        sock = socket.socket(family, stype)
        sock.bind((host, 0))
        out.append({"requested": [host, 0], "bound": addr_of(sock.getsockname())})
        sock.close()
    emit(binds=out)


def cmd_accept_kinds() -> None:
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    port = srv.getsockname()[1]
    report: dict[str, object] = {"listen": ["127.0.0.1", port]}

    # 1: the plain accept syscall, through libc, with an address buffer so the kernel
    # reports the peer (without one there is no SOCKADDR record and no row)
    c1 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c1.connect(("127.0.0.1", port))
    report["client1"] = addr_of(c1.getsockname())
    buf = ctypes.create_string_buffer(128)
    size = ctypes.c_uint32(128)
    fd = _libc.accept(srv.fileno(), buf, ctypes.byref(size))
    if fd < 0:
        fail(f"accept failed: {os.strerror(ctypes.get_errno())}")
    fam, peer_port = struct.unpack_from("=HH", buf.raw)
    report["accept"] = [socket.inet_ntoa(buf.raw[4:8]), socket.ntohs(peer_port)]
    os.close(fd)

    # 2: accept4, which is what Python's socket.accept() calls
    c2 = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c2.connect(("127.0.0.1", port))
    report["client2"] = addr_of(c2.getsockname())
    conn, peer = srv.accept()
    report["accept4"] = addr_of(peer)
    conn.close()

    # 3: a non-blocking accept with nobody waiting: -EAGAIN, and no address to report
    srv.setblocking(False)
    try:
        srv.accept()
        report["nonblock_errno"] = 0
    except OSError as exc:
        report["nonblock_errno"] = exc.errno
    for s in (c1, c2, srv):
        s.close()
    emit(**report)


def _unix_addr(name: str) -> str | bytes:
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def cmd_unix(name: str, missing: str) -> None:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(_unix_addr(name))
    srv.listen(4)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        cli.connect(_unix_addr(name))
        err = 0
    except OSError as exc:
        err = exc.errno or 0
    other = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        other.connect(_unix_addr(missing))
        missing_err = 0
    except OSError as exc:
        missing_err = exc.errno or 0
    for s in (cli, other, srv):
        s.close()
    if not name.startswith("@"):
        os.unlink(name)
    emit(connect_errno=err, missing_errno=missing_err)


def cmd_exec_in_netns(netns: str, program: str, *args: str) -> None:
    enter_netns(netns)
    try:
        os.execv(program, list(args))
    except OSError as exc:
        fail(f"execv {program}: {exc.strerror}")


def cmd_execveat(program: str, *args: str) -> None:
    fd = os.open(program, os.O_RDONLY)
    try:
        os.execve(fd, list(args), {})  # glibc fexecve -> execveat(fd, "", argv, envp, AT_EMPTY_PATH)
    except OSError as exc:
        fail(f"fexecve {program}: {exc.strerror}")


def cmd_exec_failed(missing: str, program: str, *args: str) -> None:
    try:
        os.execv(missing, [missing])
        fail(f"execv {missing} unexpectedly succeeded")
    except OSError as exc:
        emit(failed_errno=exc.errno)
    try:
        os.execv(program, list(args))
    except OSError as exc:
        fail(f"execv {program}: {exc.strerror}")


def cmd_fork_chain(depth: str, program: str, *args: str) -> None:
    levels = int(depth)
    for _ in range(levels):
        pid = os.fork()
        if pid:
            _, status = os.waitpid(pid, 0)
            os._exit(0 if os.waitstatus_to_exitcode(status) == 0 else 5)
        emit(forked=os.getpid(), parent=os.getppid())
    try:
        os.execv(program, list(args))
    except OSError as exc:
        fail(f"execv {program}: {exc.strerror}")


def clone3_available() -> bool:
    """What glibc's posix_spawn will find: clone3 answers EINVAL to a zero-sized request when
    it exists, ENOSYS when the kernel (or a seccomp filter, as Docker's) refuses it."""
    nr = {"x86_64": 435, "aarch64": 435}.get(os.uname().machine)
    if nr is None:
        return False
    _libc.syscall.restype = ctypes.c_long
    res = _libc.syscall(ctypes.c_long(nr), None, ctypes.c_size_t(0))
    return not (res == -1 and ctypes.get_errno() == errno.ENOSYS)


def cmd_spawn(program: str, *args: str) -> None:
    has_clone3 = clone3_available()
    pid = os.posix_spawn(program, list(args), {})
    emit(spawned=pid, clone3=has_clone3)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status))


COMMANDS = {
    "tcp-connect": cmd_tcp_connect,
    "udp-send": cmd_udp_send,
    "serve": cmd_serve,
    "bind": cmd_bind,
    "accept-kinds": cmd_accept_kinds,
    "unix": cmd_unix,
    "exec-in-netns": cmd_exec_in_netns,
    "execveat": cmd_execveat,
    "exec-failed": cmd_exec_failed,
    "fork-chain": cmd_fork_chain,
    "spawn": cmd_spawn,
}


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in COMMANDS:
        fail(f"usage: prog.py COMMAND ...; commands: {', '.join(COMMANDS)}", 2)
    signal.alarm(int(os.environ.get("KAUDIT_PROG_DEADLINE", "20")))
    try:
        COMMANDS[argv[0]](*argv[1:])
    except TypeError as exc:
        fail(f"{argv[0]}: bad arguments: {exc}", 2)
    except OSError as exc:
        fail(f"{argv[0]}: {exc}")


if __name__ == "__main__":
    main(sys.argv[1:])
