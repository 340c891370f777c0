"""Record the bundled scenarios from the real kernel (run as root; see README.md here).

``python tools/scenarios/record_all.py [NAME ...]`` re-records every scenario listed in
ENTRIES (or only the NAMEs given) into scenarios/ of this checkout. The C helpers in src/ are
built with ``cc`` into a temporary folder first, and the local HTTP servers the curl scenarios
fetch from are started for the run. ``simulator.record.record`` takes the live lock
(/tmp/kaudit-live.lock) and restores the kernel's audit state after each scenario.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.record import record  # noqa: E402 - after the checkout is on the path

SRC = Path(__file__).resolve().parent / "src"
OUT = ROOT / "scenarios"
# the interpreter the python scenarios ran (their rows name it); override to record with another
PY = os.environ.get("KAUDIT_RECORD_PYTHON", "/usr/bin/python3")
# set by main(): the folder the C helpers are built in, and a directory whose name has spaces
B = ""
SPACES = ""
SOCK = ["--audit_allow_sockets=true"]
FAILED = SOCK + ["--audit_allow_failed_socket_events=true"]
UNIX = SOCK + ["--audit_allow_unix=true"]
# (port, bind address) of the HTTP servers the curl scenarios fetch from
HTTP_SERVERS = ((18080, "127.0.0.1"), (18081, "::1"))


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def build_helpers(into: Path) -> None:
    """cc each src/*.c into ``into`` (named after the source: accept4, clone, ...)."""
    cc = os.environ.get("CC", "cc")
    if shutil.which(cc) is None:
        raise SystemExit(f"record_all: no C compiler ({cc!r}) on PATH; install one or set CC")
    for c in sorted(SRC.glob("*.c")):
        subprocess.run([cc, "-O2", "-o", str(into / c.stem), str(c)], check=True)


@contextlib.contextmanager
def http_servers() -> Iterator[None]:
    """The local web servers curl-local-server* and sockets-and-processes fetch from."""
    procs = []
    with tempfile.TemporaryDirectory(prefix="kaudit-scn-www-") as www:
        Path(www, "index.html").write_text("kaudit\n")
        try:
            for port, addr in HTTP_SERVERS:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "http.server", str(port), "--bind", addr, "--directory", www],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            time.sleep(1.0)  # listening before the first curl
            yield
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=10)


def entries() -> list[tuple[str, str, list[str], list[str]]]:
    """(name, description, flags, command) of every scenario; call after B and SPACES are set."""
    return [
      ("curl-local-server", "curl fetches a page from a local HTTP server; curl's non-blocking connect to loopback", SOCK,
       ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:18080/"]),
      ("curl-local-server-ipv6", "curl fetches a page from a local HTTP server over IPv6 loopback", SOCK,
       ["curl", "-s", "-o", "/dev/null", "http://[::1]:18081/"]),
      ("curl-closed-port", "curl connects non-blocking to a closed local port: the kernel says -EINPROGRESS (in_progress)", SOCK,
       ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:1/"]),
      ("connect-refused-blocking", "a blocking connect to a closed port: -ECONNREFUSED, a failed row with failed events allowed", FAILED,
       py("import socket\ns=socket.socket()\ntry:\n s.connect(('127.0.0.1',1))\nexcept OSError:\n pass")),
      ("connect-refused-not-allowed", "a blocking connect to a closed port without --audit_allow_failed_socket_events: no row", SOCK,
       py("import socket\ns=socket.socket()\ntry:\n s.connect(('127.0.0.1',1))\nexcept OSError:\n pass")),
      ("python-tcp4-connect", "Python connects over TCP/IPv4 to a local listener (blocking, succeeds)", SOCK,
       py("import socket\nl=socket.socket()\nl.bind(('127.0.0.1',0))\nl.listen()\nc=socket.create_connection(l.getsockname())\nc.close()")),
      ("python-tcp6-connect", "Python connects over TCP/IPv6 to a local listener on ::1", SOCK,
       py("import socket\nl=socket.socket(socket.AF_INET6)\nl.bind(('::1',0))\nl.listen()\nc=socket.socket(socket.AF_INET6)\nc.connect(l.getsockname()[:2])\nc.close()")),
      ("python-udp4-connect", "Python connects a UDP/IPv4 socket (no packet sent; connect only sets the peer)", SOCK,
       py("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.connect(('127.0.0.1',53))\ns.close()")),
      ("python-udp6-connect", "Python connects a UDP/IPv6 socket to [::1]:53", SOCK,
       py("import socket\ns=socket.socket(socket.AF_INET6,socket.SOCK_DGRAM)\ns.connect(('::1',53))\ns.close()")),
      ("unix-path-connect", "Python connects to a unix socket bound to a filesystem path", UNIX,
       py("import socket,os\np='/tmp/kaudit-scenario.sock'\ntry: os.unlink(p)\nexcept OSError: pass\nl=socket.socket(socket.AF_UNIX)\nl.bind(p)\nl.listen()\nc=socket.socket(socket.AF_UNIX)\nc.connect(p)\nc.close()\nos.unlink(p)")),
      ("unix-abstract-connect", "Python connects to an abstract unix socket (name starts with a NUL byte)", UNIX,
       py("import socket\nl=socket.socket(socket.AF_UNIX)\nl.bind('\\0kaudit-abstract')\nl.listen()\nc=socket.socket(socket.AF_UNIX)\nc.connect('\\0kaudit-abstract')\nc.close()")),
      ("unix-path-not-allowed", "a unix path connect without --audit_allow_unix: no socket row", SOCK,
       py("import socket,os\np='/tmp/kaudit-scenario2.sock'\ntry: os.unlink(p)\nexcept OSError: pass\nl=socket.socket(socket.AF_UNIX)\nl.bind(p)\nl.listen()\nc=socket.socket(socket.AF_UNIX)\nc.connect(p)\nc.close()\nos.unlink(p)")),
      ("bind-tcp4", "Python binds a TCP/IPv4 socket to 127.0.0.1:18090", SOCK,
       py("import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',18090))\ns.close()")),
      ("bind-tcp6", "Python binds a TCP/IPv6 socket to [::1]:18091", SOCK,
       py("import socket\ns=socket.socket(socket.AF_INET6)\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('::1',18091))\ns.close()")),
      ("bind-udp4-any", "Python binds a UDP socket to 0.0.0.0:18092", SOCK,
       py("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',18092))\ns.close()")),
      ("bind-in-use-failed", "a second bind to a port in use fails with -EADDRINUSE (failed events allowed)", FAILED,
       py("import socket\na=socket.socket()\na.bind(('127.0.0.1',18093))\na.listen()\nb=socket.socket()\ntry:\n b.bind(('127.0.0.1',18093))\nexcept OSError:\n pass")),
      ("accept-tcp4", "Python accepts a loopback connection (blocking accept, accept4 under the hood in CPython)", SOCK,
       py("import socket\nl=socket.socket()\nl.bind(('127.0.0.1',0))\nl.listen()\nc=socket.create_connection(l.getsockname())\na,_=l.accept()\na.close()\nc.close()")),
      ("accept4-c", "a C program calls accept4(SOCK_CLOEXEC) on a loopback listener", SOCK, [f"{B}/accept4", "18094"]),
      ("accept-nonblocking-eagain", "a non-blocking accept with no client waiting: -EAGAIN, a no_client row with null accepts allowed",
       SOCK + ["--audit_allow_null_accept_socket_events=true"],
       py("import socket\nl=socket.socket()\nl.bind(('127.0.0.1',0))\nl.listen()\nl.setblocking(False)\ntry:\n l.accept()\nexcept BlockingIOError:\n pass")),
      ("execve-simple", "sh runs /bin/true: two execve events, parent and child", [], ["/bin/sh", "-c", "/bin/true; exit 0"]),
      ("execve-long-argument", "an argument of 20000 bytes: the kernel splits it into a0_len and a0[0], a0[1] ...", [],
       ["/bin/echo", "x" * 20000]),
      ("execve-hex-arguments", "arguments with spaces and quotes are hex-encoded by the kernel", [],
       ["/bin/echo", "hello world", 'say "hi"', "tab\there"]),
      ("execve-non-ascii", "non-ASCII (UTF-8) arguments are hex-encoded by the kernel", [],
       ["/bin/echo", "héllo", "日本語"]),
      ("execve-cwd-with-spaces", "a command run in a directory whose name has spaces: cwd is hex-encoded", [],
       ["/bin/sh", "-c", f"cd '{SPACES}' && /bin/pwd"]),
      ("execve-failed", "an execve of a file that does not exist fails with -ENOENT", [],
       py("import os\ntry:\n os.execv('/nonexistent/kaudit-program', ['x'])\nexcept OSError:\n pass")),
      ("execveat", "a C program runs /usr/bin/true through execveat(dirfd, \"true\")", [], [f"{B}/execveat"]),
      ("fork-python", "Python os.fork(): glibc's fork is the clone syscall", ["--audit_allow_fork_process_events=true"],
       py("import os\np=os.fork()\nif p==0:\n os._exit(0)\nos.waitpid(p,0)")),
      ("vfork-c", "a C program calls vfork()", ["--audit_allow_fork_process_events=true"], [f"{B}/vfork"]),
      ("clone-c", "a C program calls clone(SIGCHLD)", ["--audit_allow_fork_process_events=true"], [f"{B}/clone"]),
      ("thread-clone3", "Python starts a thread: pthread_create uses clone3", ["--audit_allow_fork_process_events=true"],
       py("import threading\nt=threading.Thread(target=lambda: None)\nt.start()\nt.join()")),
      ("kill-child", "Python kills its child with SIGTERM", ["--audit_allow_kill_process_events=true"],
       py("import os,signal,subprocess\np=subprocess.Popen(['/bin/sleep','5'])\nos.kill(p.pid,signal.SIGTERM)\np.wait()")),
      ("tgkill-thread", "Python signals its own thread with pthread_kill (tgkill)", ["--audit_allow_kill_process_events=true"],
       py("import signal,threading\nsignal.signal(signal.SIGUSR1, lambda *a: None)\nsignal.pthread_kill(threading.get_ident(), signal.SIGUSR1)")),
      ("shell-pipeline", "a shell pipeline: sh, then two programs connected by a pipe", [],
       ["/bin/sh", "-c", "/bin/echo one two | /usr/bin/wc -w"]),
      ("sockets-and-processes", "curl with every table switched on: execve, unix (nscd) and TCP connects",
       UNIX + ["--audit_allow_fork_process_events=true"], ["curl", "-s", "-o", "/dev/null", "http://127.0.0.1:18080/"]),
    ]


def main(argv: list[str]) -> int:
    global B, SPACES
    only = set(argv)
    with tempfile.TemporaryDirectory(prefix="kaudit-scn-") as tmp:
        bindir = Path(tmp, "bin")
        bindir.mkdir()
        build_helpers(bindir)
        B = str(bindir)
        SPACES = str(Path(tmp, "dir with spaces"))
        os.mkdir(SPACES)
        chosen = [e for e in entries() if not only or e[0] in only]
        unknown = only - {e[0] for e in chosen}
        if unknown:
            print(f"record_all: unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        with http_servers():
            for name, desc, flags, cmd in chosen:
                r = record(cmd, output=OUT / f"{name}.yaml", name=name, description=desc, flags=flags,
                           duration=0.5, stdout=subprocess.DEVNULL)
                print(f"{name}: {r.messages} messages, {r.rows} rows, rc={r.returncode}", *r.warnings, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
