"""Container mode: run kaudit in a Docker container that talks to the host kernel's audit.

Why a module of its own: CI systems run collectors inside containers, and a container changes
what the kernel lets a process do with NETLINK_AUDIT. Audit control is refused outside the
initial pid namespace (so `pid_mode="host"`), multicast records are delivered only in the initial
network namespace (so `network_mode="host"`), and each operation needs its own capability. This
module owns those settings, the image (built by ci/build-image without any registry), and the
guarantee that a container never outlives the call that started it.

Capabilities (measured on kernel 6.18 with ci/audit-probe.py; docs/container.md has the table):
AUDIT_CONTROL for every control request (AUDIT_GET/SET, rules, registering as the daemon; EPERM
without it), AUDIT_READ for joining the multicast group (EPERM at bind/setsockopt), NET_ADMIN for
SO_RCVBUFFORCE (EPERM). The network-namespace workloads also need SYS_ADMIN (pyroute2 cannot
mount /run/netns without it). Docker's `--privileged` cannot start on hosts whose capability
bounding set lacks a capability (runc: "unable to apply caps"); it stays an option for hosts that
allow it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Added to Docker's default capabilities for audit: control, multicast, SO_RCVBUFFORCE.
AUDIT_CAPS: tuple[str, ...] = ("AUDIT_CONTROL", "AUDIT_READ", "NET_ADMIN")
#: What `run` adds by default: the minimal set with which a collector works fully.
DEFAULT_CAPS: tuple[str, ...] = AUDIT_CAPS
#: For workloads that make network namespaces and veths with pyroute2 (mount needs SYS_ADMIN).
WORKLOAD_CAPS: tuple[str, ...] = AUDIT_CAPS + ("SYS_ADMIN",)

#: Where the results folder is mounted in the container (also in $KAUDIT_RESULTS there).
RESULTS_MOUNT = "/results"
LIVE_LOCK = Path("/tmp/kaudit-live.lock")
DEFAULT_DOCKER_DIR = "/tmp/kaudit-docker"
LABEL = "org.kaudit.container"
OWNER_LABEL = "org.kaudit.owner"
_PROBE_MOUNT = "/opt/kaudit-probe/audit-probe.py"


class ContainerError(RuntimeError):
    """Container mode cannot do what was asked; the message says what and what to do."""


class DockerUnavailable(ContainerError):
    """No Docker SDK or no engine answering: tests skip on this, the CLI exits non-zero."""


class ImageBuildError(ContainerError):
    """ci/build-image failed or cannot run."""


class ContainerTimeout(ContainerError):
    """The container ran longer than its timeout; it was killed and removed."""

    def __init__(self, message: str, *, stdout: str, stderr: str, result_dir: Path) -> None:
        super().__init__(message)
        self.stdout = stdout
        self.stderr = stderr
        self.result_dir = result_dir


@dataclass(slots=True)
class ContainerResult:
    """What a finished container left: its exit code, output, and the results folder on the host."""

    exit_code: int
    stdout: str
    stderr: str
    result_dir: Path
    image: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def repo_root() -> Path | None:
    """The source checkout this module runs from, if it is one (ci/ is not in the wheel)."""
    root = Path(__file__).resolve().parents[1]
    return root if (root / "ci" / "build-image").is_file() else None


def docker_host() -> str | None:
    """DOCKER_HOST if set, else ci/docker-up's socket if it exists, else None (the SDK default)."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    sock = Path(os.environ.get("KAUDIT_DOCKER_DIR", DEFAULT_DOCKER_DIR)) / "docker.sock"
    return f"unix://{sock}" if sock.is_socket() else None


def client(*, timeout: float = 60.0) -> Any:
    """A connected `docker.DockerClient`, or DockerUnavailable saying how to get one."""
    try:
        import docker
    except ImportError as exc:
        raise DockerUnavailable(
            f"the Docker SDK for Python is not importable ({exc}): pip install 'docker>=7.0'"
        ) from None
    host = docker_host()
    where = host or "the default socket (unix:///var/run/docker.sock)"
    try:
        # version="auto": Debian's engine (20.10, API 1.41) is older than the SDK's default API.
        cli = docker.DockerClient(base_url=host, version="auto", timeout=int(timeout))
        cli.ping()
    except Exception as exc:  # DockerException, requests' ConnectionError, FileNotFoundError...
        raise DockerUnavailable(
            f"no Docker engine answers at {where} ({type(exc).__name__}: {exc}); "
            'start one with  export "$(ci/docker-up)"  (as root) and retry'
        ) from None
    return cli


def ensure_image(*, force: bool = False, verbose: bool = False, cli: Any = None) -> str:
    """Return the reference of kaudit's image for this source tree, building it if needed.

    $KAUDIT_IMAGE names an existing image to use instead (for installs without ci/). Otherwise
    ci/build-image is run: it builds only what its content-hashed tags do not already have.
    With verbose=True its progress lines are copied to stderr as they come (a cold build takes
    minutes); on failure the last of them are in the ImageBuildError either way.
    """
    cli = cli or client()
    wanted = os.environ.get("KAUDIT_IMAGE")
    if wanted:
        try:
            cli.images.get(wanted)
        except Exception as exc:
            raise ImageBuildError(f"KAUDIT_IMAGE={wanted!r} is not an image in the engine: {exc}") from None
        return wanted
    root = repo_root()
    if root is None:
        raise ImageBuildError(
            "ci/build-image was not found next to this kaudit (installed from a wheel?): run from a "
            "source checkout, or set KAUDIT_IMAGE to an image built there"
        )
    env = dict(os.environ)
    host = docker_host()
    if host:
        env["DOCKER_HOST"] = host
    argv = [str(root / "ci" / "build-image")] + (["--force"] if force else [])
    tail: deque[str] = deque(maxlen=25)
    try:
        with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
            assert proc.stderr is not None and proc.stdout is not None
            for line in proc.stderr:
                tail.append(line.rstrip("\n"))
                if verbose:
                    print(line, end="", file=sys.stderr, flush=True)
            out = proc.stdout.read().split()
    except OSError as exc:
        raise ImageBuildError(f"{argv[0]} could not run: {exc}") from None
    if proc.returncode != 0 or not out:
        raise ImageBuildError(f"{argv[0]} failed with exit status {proc.returncode}:\n" + "\n".join(tail))
    return out[-1]


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's container (shared engine): not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(cli: Any = None) -> list[str]:
    """Remove kaudit containers whose starting process is gone (a run that was SIGKILLed).

    Containers of live processes, including other runs going on now, are left alone.
    """
    cli = cli or client()
    removed = []
    for container in cli.containers.list(all=True, filters={"label": LABEL}):
        if not _owner_alive(container.labels.get(OWNER_LABEL, "")):
            with contextlib.suppress(Exception):
                container.remove(force=True)
                removed.append(container.name)
    return removed


def _volumes(result_dir: Path, mounts: Mapping[str | os.PathLike[str], str] | None) -> dict[str, dict[str, str]]:
    volumes = {str(result_dir): {"bind": RESULTS_MOUNT, "mode": "rw"}}
    for host_path, target in (mounts or {}).items():
        path = Path(host_path).resolve()
        if not path.exists():
            raise ContainerError(f"mount source {host_path} does not exist")
        bind, _, mode = target.partition(":")
        if not bind.startswith("/") or mode not in ("", "ro", "rw"):
            raise ContainerError(f"mount target {target!r} for {host_path} must be /ABS/PATH[:ro|:rw]")
        volumes[str(path)] = {"bind": bind, "mode": mode or "ro"}
    return volumes


def _logs(container: Any) -> tuple[str, str]:
    out = container.logs(stdout=True, stderr=False)
    err = container.logs(stdout=False, stderr=True)
    return out.decode(errors="replace"), err.decode(errors="replace")


def run(
    argv: Sequence[str],
    *,
    image: str | None = None,
    privileged: bool = False,
    cap_add: Sequence[str] | None = None,
    cap_drop: Sequence[str] | None = None,
    timeout: float = 600.0,
    result_dir: str | os.PathLike[str] | None = None,
    mounts: Mapping[str | os.PathLike[str], str] | None = None,
    env: Mapping[str, str] | None = None,
    workdir: str | None = None,
    pid_host: bool = True,
    network_host: bool = True,
    security_opt: Sequence[str] | None = None,
    cli: Any = None,
) -> ContainerResult:
    """Run `argv` in kaudit's image and return its exit code, output and results folder.

    The container shares the host's pid and network namespaces (audit control and multicast
    need both), gets Docker's default capabilities plus `cap_add` (DEFAULT_CAPS when None; pass
    WORKLOAD_CAPS for network-namespace workloads, or () for none), and sees `result_dir` (a new
    temporary folder when None, the caller's to remove) read-write at /results, also named by
    $KAUDIT_RESULTS. `mounts`
    maps host paths to "/container/path[:ro|:rw]" (read-only by default). A container that runs
    past `timeout` seconds is killed and ContainerTimeout raised. The container is removed on
    every path: success, failure, timeout, exception, KeyboardInterrupt.
    """
    if not argv:
        raise ContainerError("run() needs a command to run in the container")
    cli = cli or client()
    image = image or ensure_image(cli=cli)
    remove_leftovers(cli)
    made_results = result_dir is None
    results = Path(tempfile.mkdtemp(prefix="kaudit-results-")) if made_results else Path(result_dir)
    results.mkdir(parents=True, exist_ok=True)
    results = results.resolve()
    environment = {"KAUDIT_RESULTS": RESULTS_MOUNT, "PYTHONUNBUFFERED": "1", **(env or {})}
    options: dict[str, Any] = {
        "name": f"kaudit-{os.getpid()}-{uuid.uuid4().hex[:8]}",
        "labels": {LABEL: "1", OWNER_LABEL: _owner()},
        "environment": environment,
        "volumes": _volumes(results, mounts),
        "pid_mode": "host" if pid_host else None,
        "network_mode": "host" if network_host else "none",
        "privileged": privileged,
    }
    if not privileged:
        options["cap_add"] = list(DEFAULT_CAPS if cap_add is None else cap_add)
        if cap_drop:
            options["cap_drop"] = list(cap_drop)
    if workdir:
        options["working_dir"] = workdir
    if security_opt:
        options["security_opt"] = list(security_opt)

    import docker.errors
    import requests.exceptions

    container = None
    started = time.monotonic()
    try:
        try:
            container = cli.containers.create(image, list(argv), **options)
            container.start()
        except BaseException as exc:
            if made_results:  # the caller never sees it: nothing to hand back
                shutil.rmtree(results, ignore_errors=True)
            if isinstance(exc, docker.errors.ImageNotFound):
                raise ContainerError(f"image {image} is not in the engine: build it with ci/build-image") from None
            if isinstance(exc, docker.errors.APIError):
                raise ContainerError(_start_failure(exc, privileged)) from None
            raise
        try:
            status = container.wait(timeout=timeout)
        except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError) as exc:
            # The SDK reports its read timeout as either; an engine that went away also raises
            # ConnectionError, but early.
            if time.monotonic() - started < timeout * 0.9:
                raise ContainerError(f"lost the Docker engine while waiting for {options['name']}: {exc}") from None
            with contextlib.suppress(Exception):
                container.kill()
            out, err = _logs(container)
            raise ContainerTimeout(
                f"{argv[0]} ran longer than {timeout:g}s in container {options['name']}: killed and removed"
                + (f"; last output: {err.strip().splitlines()[-1]}" if err.strip() else ""),
                stdout=out, stderr=err, result_dir=results,
            ) from None
        out, err = _logs(container)
        return ContainerResult(
            exit_code=int(status.get("StatusCode", -1)), stdout=out, stderr=err,
            result_dir=results, image=image, seconds=time.monotonic() - started,
        )
    finally:
        _remove(cli, container, options["name"])


def _start_failure(exc: Exception, privileged: bool) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    if "unable to apply caps" in text:
        hint = (
            "--privileged asks for every capability, and this host's capability bounding set lacks at "
            "least one (on the kaudit VM: CAP_SYS_RESOURCE); use the default capability set instead"
            if privileged else
            "a requested capability is not in this host's capability bounding set (see /proc/self/status CapBnd)"
        )
        return f"the container could not start: {text}. {hint}"
    return f"the container could not start: {text}"


def _remove(cli: Any, container: Any, name: str) -> None:
    """Remove the container even if create() was interrupted before returning it."""
    with contextlib.suppress(Exception):
        if container is None:
            container = cli.containers.get(name)
        container.remove(force=True)


@contextlib.contextmanager
def live_lock(timeout: float = 600.0) -> Iterator[None]:
    """Hold the exclusive flock on /tmp/kaudit-live.lock, which serialises changes to the kernel's
    audit state on this machine (a container cannot take it: the host process does).

    Taken through ``collector.transport.live_lock``, which is re-entrant within the process: a
    caller that already holds it (the ``live_audit`` fixture, ``kaudit verify``) is not blocked
    by its own lock, as it would be by a second open() of the file.
    """
    from collector.transport import live_lock as _transport_live_lock

    with contextlib.ExitStack() as held:
        try:
            held.enter_context(_transport_live_lock(str(LIVE_LOCK), timeout=timeout))
        except TimeoutError:
            raise ContainerError(f"{LIVE_LOCK} stayed locked for {timeout:g}s (another live run?)") from None
        yield


def probe(*, full: bool = False, timeout: float = 60.0, **run_options: Any) -> dict[str, Any]:
    """Run ci/audit-probe.py in a container and return its report (ok or errno per operation).

    With full=True the probe changes the audit state (and restores it); the caller must hold
    live_lock(). `run_options` go to run(): cap_add, privileged, pid_host, network_host, ...
    """
    root = repo_root()
    if root is None:
        raise ContainerError("ci/audit-probe.py is only in a source checkout")
    script = root / "ci" / "audit-probe.py"
    argv = ["python3", _PROBE_MOUNT] + (["--full"] if full else [])
    with tempfile.TemporaryDirectory(prefix="kaudit-probe-") as results:
        result = run(argv, mounts={script: f"{_PROBE_MOUNT}:ro"}, timeout=timeout, result_dir=results, **run_options)
    lines = result.stdout.strip().splitlines()
    if result.exit_code != 0 or not lines:
        raise ContainerError(f"audit probe exited with {result.exit_code}: {result.stderr.strip()[-500:]}")
    return json.loads(lines[-1])


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m simulator.container build|probe|cleanup`: image, capability probe, leftovers."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m simulator.container", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build kaudit's image if needed and print its reference")
    p = sub.add_parser("probe", help="show what a container may do with the kernel's audit")
    p.add_argument("--full", action="store_true", help="also change audit state (restored; takes the live lock)")
    p.add_argument("--cap", action="append", default=[],
                   help="capability to add to Docker's defaults instead of DEFAULT_CAPS (repeatable)")
    p.add_argument("--no-caps", action="store_true", help="add no capability to Docker's defaults")
    p.add_argument("--privileged", action="store_true")
    sub.add_parser("cleanup", help="remove kaudit containers whose starting process is gone")
    args = parser.parse_args(argv)
    try:
        if args.command == "build":
            print(ensure_image())
        elif args.command == "cleanup":
            print("\n".join(remove_leftovers()) or "no leftover containers")
        else:
            caps = tuple(args.cap) if (args.cap or args.no_caps) else None
            with live_lock() if args.full else contextlib.nullcontext():
                report = probe(full=args.full, cap_add=caps, privileged=args.privileged)
            print(json.dumps(report, indent=2, sort_keys=True))
    except ContainerError as exc:
        print(f"kaudit container: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
