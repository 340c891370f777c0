"""The test network: two network namespaces joined by a veth pair, made with pyroute2.

Why namespaces: a connect that crosses a real veth is a real network connect (routing,
neighbour resolution, a SYN on a wire scapy can watch), yet it cannot reach anything but
the two namespaces we made. Live workloads never send traffic anywhere but loopback and here.

Layout (names carry the run id, so concurrent runs never collide; interface names live only
inside our namespaces, so the host's link list is never touched):

    kaudit-<pid>-<hex>-c                      kaudit-<pid>-<hex>-s
    kaudit-c  10.213.0.1/24  fd00:6b61::1/64 ── kaudit-s  10.213.0.2/24  fd00:6b61::2/64

``10.213.0.99`` (``BLACKHOLE_V4``) has a permanent neighbour entry in the client namespace
pointing at a MAC address nobody owns: a SYN to it really goes on the wire (scapy sees it on
the server end), and the server's kernel drops the frame before IP ("not for this host"), so
nothing ever answers and nothing is forwarded, whatever the forwarding sysctls say (Docker
mounts /proc/sys read-only, so they could not be set there anyway). That is the "address that
never answers".

Removal happens on every path: ``close()`` from the context manager, an ``atexit`` hook, and
SIGTERM/SIGHUP turned into SystemExit while the network is up so the ``finally`` runs.
Namespaces of a killed run (the owner pid in the name is gone) are removed when the next run
starts; the veth dies with them.
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

__all__ = [
    "BLACKHOLE_V4",
    "NETNS_DIR",
    "PREFIX",
    "NetnsError",
    "SignalGuard",
    "TestNet",
    "cleanup_leftovers",
    "list_ours",
]

PREFIX = "kaudit-"
NETNS_DIR = "/run/netns"
NAME_RE = re.compile(r"^kaudit-(?P<pid>\d+)-(?P<tag>[0-9a-f]+)-(?P<side>[cs])$")

CLIENT_IF = "kaudit-c"
SERVER_IF = "kaudit-s"
CLIENT_V4 = "10.213.0.1"
SERVER_V4 = "10.213.0.2"
BLACKHOLE_V4 = "10.213.0.99"
# locally administered, owned by nobody: frames to it cross the veth and are dropped on arrival
BLACKHOLE_MAC = "02:6b:61:00:00:99"
CLIENT_V6 = "fd00:6b61::1"
SERVER_V6 = "fd00:6b61::2"
PREFIX_V4 = 24
PREFIX_V6 = 64

IFA_F_NODAD = 0x02
IFA_F_TENTATIVE = 0x40
NUD_PERMANENT = 0x80
CLONE_NEWNET = 0x40000000


class NetnsError(RuntimeError):
    """The test network could not be made or removed; the message says which step and why."""


def list_ours(netns_dir: str = NETNS_DIR) -> list[str]:
    """Names under ``netns_dir`` that start with ``kaudit-``."""
    try:
        return sorted(n for n in os.listdir(netns_dir) if n.startswith(PREFIX))
    except FileNotFoundError:
        return []


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_leftovers(netns_dir: str = NETNS_DIR) -> list[str]:
    """Remove namespaces a killed run left behind; returns the names removed.

    Only names of our own pattern whose owner pid no longer exists are removed: a namespace
    of a run that is still going (another verify, a test in parallel) is left alone.
    """
    removed = []
    for name in list_ours(netns_dir):
        m = NAME_RE.match(name)
        if not m or _pid_alive(int(m["pid"])):
            continue
        _remove_ns(name, netns_dir)
        removed.append(name)
    return removed


def _remove_ns(name: str, netns_dir: str = NETNS_DIR) -> None:
    from pyroute2 import netns

    path = os.path.join(netns_dir, name)
    try:
        netns.remove(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise NetnsError(f"cannot remove network namespace {path}: {exc}") from exc


@dataclass(slots=True)
class TestNet:
    """A client and a server namespace joined by a veth; see the module docstring.

    Use as a context manager (``with TestNet.create() as net:``). Workload clients run in
    ``client_ns`` (``client_path`` for setns), servers in ``server_ns``.
    """

    run_id: str
    netns_dir: str = NETNS_DIR
    client_v4: str = CLIENT_V4
    server_v4: str = SERVER_V4
    blackhole_v4: str = BLACKHOLE_V4
    client_v6: str = CLIENT_V6
    server_v6: str = SERVER_V6
    client_if: str = CLIENT_IF
    server_if: str = SERVER_IF
    server_mac: str = ""
    created: list[str] = field(default_factory=list)
    owner_pid: int = field(default_factory=os.getpid)
    leftovers_removed: list[str] = field(default_factory=list)  # of killed runs, found at create()
    _closed: bool = False
    _signals: SignalGuard | None = None

    __test__ = False  # not a pytest test class, despite the name

    @property
    def client_ns(self) -> str:
        return f"{PREFIX}{self.run_id}-c"

    @property
    def server_ns(self) -> str:
        return f"{PREFIX}{self.run_id}-s"

    @property
    def client_path(self) -> str:
        return os.path.join(self.netns_dir, self.client_ns)

    @property
    def server_path(self) -> str:
        return os.path.join(self.netns_dir, self.server_ns)

    @classmethod
    def create(cls, run_id: str | None = None, *, netns_dir: str = NETNS_DIR) -> TestNet:
        """Make the namespaces, the veth and the addresses; NetnsError (and nothing left) on failure."""
        _check_privileges()
        removed = cleanup_leftovers(netns_dir)
        net = cls(run_id or f"{os.getpid()}-{secrets.token_hex(2)}", netns_dir)
        net.leftovers_removed = removed
        for name in (net.client_ns, net.server_ns):
            if os.path.exists(os.path.join(netns_dir, name)):
                raise NetnsError(f"network namespace {name} already exists (another run with this id?)")
        atexit.register(net.close)
        try:
            net._build()
        except BaseException:
            net.close()
            raise
        return net

    def _build(self) -> None:
        from pyroute2 import IPRoute, netns

        for name in (self.client_ns, self.server_ns):
            try:
                netns.create(os.path.join(self.netns_dir, name))
            except Exception as exc:  # pyroute2 re-raises the child's error under various types
                raise NetnsError(f"cannot create network namespace {name}: {exc}") from exc
            self.created.append(name)
        try:
            with IPRoute(netns=self.client_path) as ipr:
                ipr.link(
                    "add",
                    ifname=self.client_if,
                    kind="veth",
                    peer={"ifname": self.server_if, "net_ns_fd": self.server_path},
                )
                self._configure(ipr, self.client_if, self.client_v4, self.client_v6)
            with IPRoute(netns=self.server_path) as ipr:
                self._configure(ipr, self.server_if, self.server_v4, self.server_v6)
                idx = ipr.link_lookup(ifname=self.server_if)[0]
                self.server_mac = ipr.get_links(idx)[0].get_attr("IFLA_ADDRESS")
            with IPRoute(netns=self.client_path) as ipr:
                idx = ipr.link_lookup(ifname=self.client_if)[0]
                ipr.neigh(
                    "add", dst=self.blackhole_v4, lladdr=BLACKHOLE_MAC, ifindex=idx, state=NUD_PERMANENT
                )
            self._wait_ipv6_ready()
        except NetnsError:
            raise
        except Exception as exc:
            raise NetnsError(
                f"cannot set up the veth pair between {self.client_ns} and {self.server_ns}: {exc}"
            ) from exc

    @staticmethod
    def _configure(ipr, ifname: str, v4: str, v6: str) -> None:
        idx = ipr.link_lookup(ifname=ifname)[0]
        lo = ipr.link_lookup(ifname="lo")[0]
        ipr.link("set", index=lo, state="up")
        ipr.addr("add", index=idx, address=v4, prefixlen=PREFIX_V4)
        # NODAD: the address is usable at once instead of after duplicate address detection
        ipr.addr("add", index=idx, address=v6, prefixlen=PREFIX_V6, flags=IFA_F_NODAD)
        ipr.link("set", index=idx, state="up")

    def _wait_ipv6_ready(self, timeout: float = 5.0) -> None:
        """Wait for both links to be up with non-tentative IPv6 addresses."""
        from pyroute2 import IPRoute

        deadline = time.monotonic() + timeout
        for path, ifname in ((self.client_path, self.client_if), (self.server_path, self.server_if)):
            with IPRoute(netns=path) as ipr:
                idx = ipr.link_lookup(ifname=ifname)[0]
                while True:
                    link = ipr.get_links(idx)[0]
                    # only our global address counts: the link-local one does DAD and is not used
                    addrs = [
                        a
                        for a in ipr.get_addr(index=idx, family=10)
                        if a.get_attr("IFA_ADDRESS") in (self.client_v6, self.server_v6)
                    ]
                    tentative = any((a.get_attr("IFA_FLAGS") or a["flags"]) & IFA_F_TENTATIVE for a in addrs)
                    if link.get_attr("IFLA_OPERSTATE") == "UP" and addrs and not tentative:
                        break
                    if time.monotonic() > deadline:
                        raise NetnsError(
                            f"{ifname} in {os.path.basename(path)} not ready within {timeout:.0f}s"
                        )
                    time.sleep(0.05)

    def close(self) -> None:
        """Remove both namespaces (idempotent); the veth pair dies with them.

        Only the process that made them does: pyroute2 forks helpers, and a forked copy of this
        object exiting (atexit, a signal) must not pull the network from under its parent.
        """
        if self._closed or os.getpid() != self.owner_pid:
            return
        self._closed = True
        errors = []
        for name in reversed(self.created):
            try:
                _remove_ns(name, self.netns_dir)
            except NetnsError as exc:
                errors.append(str(exc))
        self.created.clear()
        try:
            atexit.unregister(self.close)
        except Exception:  # pragma: no cover - atexit.unregister does not raise in practice
            pass
        if self._signals is not None:
            self._signals.restore()
            self._signals = None
        if errors:
            raise NetnsError("; ".join(errors))

    def __enter__(self) -> TestNet:
        self._signals = SignalGuard.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def describe(self) -> str:
        return (
            f"{self.client_ns} ({self.client_if} {self.client_v4} {self.client_v6}) <-> "
            f"{self.server_ns} ({self.server_if} {self.server_v4} {self.server_v6}); "
            f"blackhole {self.blackhole_v4}"
        )

    def exists(self) -> bool:
        return any(os.path.exists(os.path.join(self.netns_dir, n)) for n in (self.client_ns, self.server_ns))


def _check_privileges() -> None:
    if os.geteuid() != 0:
        raise NetnsError("the test network needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN)")


@contextmanager
def in_netns(path: str) -> Iterator[None]:
    """Run the body with the calling *thread* in the namespace at ``path``.

    setns(CLONE_NEWNET) changes only the calling thread, so the rest of the process (and the
    collector's netlink socket, opened elsewhere) stays where it was. Sockets opened inside
    the body belong to ``path``'s namespace for their whole life.
    """
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    home = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    try:
        target = os.open(path, os.O_RDONLY)
        try:
            if libc.setns(target, CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise NetnsError(f"setns({path}) failed: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if libc.setns(home, CLONE_NEWNET) != 0:  # pragma: no cover - would leave the thread astray
                raise NetnsError(
                    f"cannot return to the original network namespace: {os.strerror(ctypes.get_errno())}"
                )
    finally:
        os.close(home)


class SignalGuard:
    """While the network exists, SIGTERM and SIGHUP raise SystemExit so cleanup code runs.

    Python's default for these signals kills the process without running ``finally`` or
    ``atexit``; the namespaces would stay behind. Only the main thread may install handlers;
    elsewhere the guard is a no-op (atexit and the next run's cleanup still cover it).
    """

    __slots__ = ("_previous",)

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    # the pid whose handlers are ours: a forked child (pyroute2 forks helpers) inherits the
    # handler, and must die of the signal as before instead of unwinding the parent's stack
    owner: int = 0

    @classmethod
    def install(cls) -> SignalGuard:
        guard = cls()
        if threading.current_thread() is not threading.main_thread():
            return guard
        for sig in (signal.SIGTERM, signal.SIGHUP):
            previous = signal.getsignal(sig)
            if previous in (signal.SIG_DFL, None):
                guard._previous[sig] = previous
                signal.signal(sig, _raise_exit)
        SignalGuard.owner = os.getpid()
        return guard

    def restore(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            signal.signal(sig, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def _raise_exit(signum: int, frame: FrameType | None) -> None:
    if os.getpid() != SignalGuard.owner:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise SystemExit(128 + signum)
