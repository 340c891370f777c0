"""Run an unmodified program with its NETLINK_AUDIT socket redirected to a simulator endpoint.

Two ways (``kaudit wrap``, docs/wrap.md):

* :func:`wrap_env` / :func:`run_wrapped` / :func:`exec_wrapped`: the program talks to an
  endpoint someone else serves (``kaudit simulate --listen unix:PATH``, a test fixture);
* :func:`run_with_scenario`: a private simulator in the scenario's initial kernel state lives
  exactly as long as the program. Records are only delivered once the program has registered
  as the audit daemon (AUDIT_SET pid) or joined the multicast group, because the kernel
  delivers them only then; after the last message has been read the program is sent SIGTERM
  (``stop=True``), as an operator stops auditd, and killed if it does not exit in time.

The redirect itself is the LD_PRELOAD library of :mod:`simulator.redirect`; the scenario is
fed by the same replay engine ``kaudit check`` uses (simulator/replay.py), so faults such as
ENOBUFS reach the program as they reach kaudit's own collector.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from simulator.redirect import shim_path

__all__ = [
    "WrapError",
    "WrapResult",
    "check_preload",
    "endpoint_path",
    "exec_wrapped",
    "exit_status",
    "run_with_scenario",
    "run_wrapped",
    "wrap_env",
]

ON_CLOSE = ("errno", "term")


class WrapError(RuntimeError):
    """kaudit could not run the command as asked (not the command's own failure)."""


def endpoint_path(endpoint: str) -> str:
    """``unix:PATH`` (or a bare absolute path) -> PATH; ValueError naming the problem."""
    path = endpoint[5:] if endpoint.startswith("unix:") else endpoint
    if not path:
        raise ValueError(f"endpoint {endpoint!r}: the unix socket path is empty")
    if not endpoint.startswith("unix:") and not path.startswith("/"):
        raise ValueError(f"endpoint {endpoint!r}: expected unix:PATH")
    if len(os.fsencode(path)) > 107:
        raise ValueError(f"endpoint {endpoint!r}: a unix socket path has at most 107 bytes")
    return path


def wrap_env(
    endpoint: str,
    env: Mapping[str, str] | None = None,
    *,
    shim: str | os.PathLike[str] | None = None,
    on_close: str = "errno",
) -> dict[str, str]:
    """The environment that redirects a program's NETLINK_AUDIT sockets to ``endpoint``.

    The redirector goes first in LD_PRELOAD (a library the program already preloads stays);
    children inherit the redirect, as they inherit the environment.
    """
    if on_close not in ON_CLOSE:
        raise ValueError(f"on_close {on_close!r}: expected one of {', '.join(ON_CLOSE)}")
    path = endpoint_path(endpoint)
    out = dict(os.environ if env is None else env)
    lib = str(shim if shim is not None else shim_path())
    preload = out.get("LD_PRELOAD", "")
    out["LD_PRELOAD"] = lib + (":" + preload if preload else "")
    out["KAUDIT_ENDPOINT"] = f"unix:{path}"
    out["KAUDIT_ON_CLOSE"] = on_close
    return out


_LOADS: set[str] = set()


def check_preload(env: Mapping[str, str]) -> None:
    """Refuse to go on when the dynamic loader would ignore the redirector.

    ld.so only warns ("cannot be preloaded ... ignored") and runs the program anyway, which
    would then talk to the *real* kernel (an auditd would register and enable audit). One
    run of ``true`` under the same LD_PRELOAD shows it; the answer is cached per library.
    """
    preload = env.get("LD_PRELOAD", "")
    if preload in _LOADS:
        return
    true = shutil.which("true", path=env.get("PATH")) or "/bin/true"
    try:
        proc = subprocess.run([true], env=dict(env), capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise WrapError(f"cannot check that the redirector loads ({exc})") from None
    if proc.returncode != 0 or "preload" in proc.stderr or "ld.so" in proc.stderr:
        raise WrapError(
            f"the dynamic loader does not load the redirector ({proc.stderr.strip() or f'exit {proc.returncode}'}); "
            "not running the command, which would reach the real kernel"
        )
    _LOADS.add(preload)


def exit_status(returncode: int) -> int:
    """A Popen return code as a shell reports it (killed by signal N -> 128 + N)."""
    return 128 - returncode if returncode < 0 else returncode


def _resolve(command: Sequence[str], env: Mapping[str, str]) -> str:
    if not command:
        raise WrapError("no command to run (give it after --)")
    exe = shutil.which(command[0], path=env.get("PATH"))
    if exe is None:
        raise WrapError(f"{command[0]}: command not found")
    return exe


def run_wrapped(
    command: Sequence[str],
    endpoint: str,
    *,
    env: Mapping[str, str] | None = None,
    on_close: str = "errno",
    **popen: Any,
) -> subprocess.CompletedProcess:
    """``subprocess.run(command)`` with the redirect to ``endpoint`` (tests, scripts)."""
    full = wrap_env(endpoint, env, on_close=on_close)
    _resolve(command, full)
    check_preload(full)
    return subprocess.run(list(command), env=full, **popen)


def exec_wrapped(command: Sequence[str], endpoint: str, *, on_close: str = "errno") -> None:
    """Replace this process with ``command`` redirected to ``endpoint`` (its exit code is ours)."""
    full = wrap_env(endpoint, on_close=on_close)
    exe = _resolve(command, full)
    check_preload(full)
    os.execve(exe, list(command), full)


# --- a scenario for the command's lifetime -----------------------------------------------------


@dataclass(slots=True)
class WrapResult:
    """What happened during one wrapped run."""

    returncode: int  # the command's exit status (128 + N when a signal ended it)
    registered: bool = False  # the command registered as the daemon or joined the multicast group
    reader_pid: int = 0  # the pid that did
    mode: str = ""  # "unicast" (AUDIT_SET pid) or "multicast"
    delivered: bool = False  # every scenario message was sent and read
    messages: int = 0  # messages in the scenario
    stopped_by: str = "exit"  # "exit" | "SIGTERM" | "SIGKILL"
    error: str | None = None  # why kaudit could not do its part
    notes: list[str] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)  # the endpoint's
    kernel: dict[str, Any] = field(default_factory=dict)  # the simulated kernel after the run
    seconds: float = 0.0


def _exited(proc: subprocess.Popen) -> bool:
    """Has the command exited? Without reaping it: while its zombie exists, its pid and process
    group id cannot be reused, so signalling the group can only reach the command's own."""
    if proc.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG) is not None
    except ChildProcessError:
        return True


def _wait_exit(proc: subprocess.Popen, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while not _exited(proc):
        if time.monotonic() >= end:
            return False
        time.sleep(0.02)
    return True


class _CommandState:
    """What the replay engine asks its collector: has it failed? (here: has it exited)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    @property
    def error(self) -> str | None:
        return "the wrapped command exited during the replay" if _exited(self.proc) else None


def _feeder(sc: Any, server: Any, proc: subprocess.Popen, reader_pid: int) -> Any:
    """The replay engine's feeder (every fault as ``kaudit check`` injects it), aimed at the
    wrapped program: it stops when the program has exited, and a ``steal_pid`` fault waits for
    the program's pid to be registered again."""
    from simulator.replay import Feeder

    feeder = Feeder(sc, server, _CommandState(proc))
    feeder.our_pid = reader_pid
    return feeder


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Signal the command's process group (it is the group's leader), while it is not reaped."""
    if proc.returncode is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.send_signal(sig)


def _loginuid() -> int:
    try:
        with open("/proc/self/loginuid") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 0xFFFFFFFF


def _note_signal_sender(server: Any, proc: subprocess.Popen) -> None:
    """audit_signal_info(): a SIGTERM to the registered daemon makes the kernel remember who
    sent it (tgid, and loginuid or else uid); auditd asks (AUDIT_SIGNAL_INFO) to log it."""
    auid = _loginuid()
    uid = auid if auid != 0xFFFFFFFF else os.getuid()

    server.call(lambda k: k.note_signal(os.getpid(), uid, target=proc.pid))


def _stop(proc: subprocess.Popen, grace: float, result: WrapResult, server: Any = None) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if _exited(proc):
        return
    result.stopped_by = "SIGTERM"
    if server is not None:
        _note_signal_sender(server, proc)
    _signal_group(proc, signal.SIGTERM)
    if not _wait_exit(proc, grace):
        result.stopped_by = "SIGKILL"
        result.notes.append(f"the command did not exit within {grace} s of SIGTERM: killed")
        _signal_group(proc, signal.SIGKILL)


def _reap(proc: subprocess.Popen) -> int:
    """Wait for the command, kill what it left running in its group, then reap it."""
    _wait_exit(proc, float("inf"))
    _signal_group(proc, signal.SIGKILL)  # nothing of the command's group outlives the run
    return proc.wait()


def run_with_scenario(
    command: Sequence[str],
    scenario: Any,
    *,
    ready_timeout: float | None = None,
    linger: float = 0.5,
    grace: float = 10.0,
    stop: bool = True,
    on_close: str = "term",
    env: Mapping[str, str] | None = None,
    on_start: Callable[[Any, subprocess.Popen], None] | None = None,
    **popen: Any,
) -> WrapResult:
    """Run ``command`` against a private simulator replaying ``scenario`` (a path or a Scenario).

    ``ready_timeout``: give up (error, command stopped) when the command has neither
    registered nor joined the multicast group by then; None waits as long as it runs.
    ``linger``: seconds the command keeps running after the last message was read, before
    SIGTERM (``stop``); ``grace``: seconds between SIGTERM and SIGKILL. ``on_close="term"``
    also sends the command SIGTERM should the endpoint go away under it. ``on_start(server,
    proc)`` is called once the command runs (tests inspect the model through it). Extra
    keyword arguments go to Popen (stdout, stderr, cwd ...).
    """
    from simulator.endpoint import EndpointServer
    from simulator.replay import build_kernel, kernel_snapshot, reader_clients
    from simulator.scenario import Scenario, load_scenario

    t0 = time.monotonic()
    sc = scenario if isinstance(scenario, Scenario) else load_scenario(scenario)
    kernel = build_kernel(sc.kernel, path=sc.path or sc.name)
    result = WrapResult(returncode=0, messages=len(sc.messages()))
    tmp = tempfile.mkdtemp(prefix="kaudit-wrap-")
    server = EndpointServer(kernel)
    proc: subprocess.Popen | None = None
    try:
        server.listen(os.path.join(tmp, "audit.sock"))
        server.start()
        full = wrap_env(server.endpoint, env, on_close=on_close)
        _resolve(command, full)
        check_preload(full)
        proc = subprocess.Popen(list(command), env=full, process_group=0, **popen)
        if on_start is not None:
            on_start(server, proc)
        deadline = None if ready_timeout is None else time.monotonic() + ready_timeout
        readers: list[Any] = []
        while not _exited(proc):
            readers = reader_clients(server)
            if readers:
                break
            if deadline is not None and time.monotonic() > deadline:
                result.error = (
                    f"{command[0]} neither registered as the audit daemon nor joined the multicast group "
                    f"within {ready_timeout} s"
                )
                break
            time.sleep(0.01)
        if readers:
            r = readers[0]
            result.registered = True
            result.reader_pid = r.pid
            result.mode = "unicast" if kernel.auditd_pid and r.port_id == kernel.auditd_port else "multicast"
            feeder = _feeder(sc, server, proc, r.pid)
            runner = threading.Thread(target=feeder.run, name="kaudit-wrap-feeder", daemon=True)
            runner.start()
            feed_end = t0 + sc.timing.timeout
            while runner.is_alive() and not _exited(proc) and time.monotonic() < feed_end:
                runner.join(0.05)  # (a feeder in a `delay` does not notice the command is gone)
            if runner.is_alive() and not _exited(proc):
                result.error = f"the scenario did not finish within its timeout of {sc.timing.timeout} s"
            elif not _exited(proc):
                result.delivered = feeder.wait_drained(10.0) and not _exited(proc)
                if not result.delivered:
                    result.notes.append("the command did not read everything that was sent to it")
            else:
                result.notes.append("the command exited before the scenario ended")
        elif result.error is None and result.messages:
            result.notes.append(
                f"{command[0]} never registered as the audit daemon nor joined the multicast group: "
                f"the scenario's {result.messages} messages were not delivered"
            )
        if (stop or result.error) and not _exited(proc):
            if result.error is None:
                _wait_exit(proc, linger)
            _stop(proc, grace, result, server)
        result.returncode = exit_status(_reap(proc))
    finally:
        if proc is not None and proc.returncode is None:
            _signal_group(proc, signal.SIGKILL)  # interrupted: the command must not outlive us
            proc.wait()
        try:
            result.kernel = server.call(kernel_snapshot)
        except Exception:  # noqa: BLE001 - informative only
            result.kernel = {}
        result.counters = dict(server.counters)
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        result.seconds = time.monotonic() - t0
    return result
