"""Debian's auditctl, unmodified, answers the same against the simulator as against the real kernel.

One test run: the real kernel's state is taken under the live lock (``live_audit``), a
simulator is started in that state, and every auditctl invocation below runs twice -- against
the kernel, then redirected to the simulator -- from the same starting state. Their stdout,
stderr and exit codes must be equal; only what moves by itself is normalised: the daemon
``pid``, the ``lost`` and ``backlog`` counters and ``backlog_wait_time_actual``.
``live_audit`` restores the kernel afterwards (status, rules, features).

Never ``-f 2`` (a panic reboots the machine) or ``-e 2`` (audit locked until reboot): the
steps are checked for both before anything runs.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from simulator.endpoint import EndpointServer
from simulator.redirect import ShimBuildError, shim_path
from simulator.wrap import check_preload, wrap_env

AUDITCTL = "/usr/sbin/auditctl"

pytestmark = [
    pytest.mark.live,
    pytest.mark.xdist_group("live"),
    pytest.mark.skipif(not os.access(AUDITCTL, os.X_OK), reason=f"{AUDITCTL} (package auditd) is not installed"),
]

NET = ["-a", "always,exit", "-F", "arch=b64", "-S", "connect", "-k", "kaudit-wrap-net"]
EXEC = ["-a", "always,exit", "-F", "arch=b64", "-S", "execve", "-F", "key=kaudit-wrap-exec"]
EXEC_DEL = ["-d", "always,exit", "-F", "arch=b64", "-S", "execve", "-F", "key=kaudit-wrap-exec"]

STEPS: list[list[str]] = [
    ["-s"],
    ["-l"],
    NET,
    EXEC,
    ["-a", "always,exit", "-F", "arch=b64", "-S", "bind,accept4", "-F", "success=0", "-k", "kaudit-wrap-srv"],
    ["-A", "exit,always", "-F", "arch=b32", "-S", "socketcall", "-F", "a0=3", "-F", "key=kaudit-wrap-32"],
    ["-w", "/etc/passwd", "-p", "wa", "-k", "kaudit-wrap-passwd"],
    NET,  # the kernel refuses a duplicate: EEXIST
    ["-l"],
    ["-l", "-k", "kaudit-wrap-net"],
    EXEC_DEL,
    EXEC_DEL,  # gone already: ENOENT
    ["-W", "/etc/passwd", "-p", "wa", "-k", "kaudit-wrap-passwd"],
    ["-l"],
    ["-b", "321"],
    ["-f", "0"],
    ["-f", "1"],
    ["-r", "50"],
    ["-r", "0"],
    ["--backlog_wait_time", "6000"],
    ["-s"],
    ["-D"],
    ["-l"],
    ["-e", "1"],
    ["-s"],
    ["-e", "0"],
    ["-s"],
]

_VOLATILE = re.compile(r"^(pid|lost|backlog|backlog_wait_time_actual) \d+$", re.M)


def _dangerous(step: list[str]) -> bool:
    return any(a in ("-f", "-e") and b.strip() == "2" for a, b in zip(step, step[1:], strict=False))


def normalise(text: str) -> str:
    return _VOLATILE.sub(lambda m: f"{m.group(1)} *", text)


@pytest.fixture
def simulator_like(live_audit) -> Iterator[EndpointServer]:  # noqa: ANN001 - the conftest's KernelSnapshot
    try:
        shim_path()
    except ShimBuildError as exc:
        pytest.skip(str(exc))
    with tempfile.TemporaryDirectory(prefix="kaudit-live-wrap-") as d:
        server = EndpointServer(live_audit.simulator())
        server.listen(os.path.join(d, "audit.sock"))
        server.start()
        try:
            yield server
        finally:
            server.stop()


def run(args: list[str], env: dict[str, str] | None = None) -> tuple[int, str, str]:
    p = subprocess.run([AUDITCTL, *args], capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, normalise(p.stdout), normalise(p.stderr)


def test_steps_are_safe() -> None:
    assert len(STEPS) >= 15
    assert not [s for s in STEPS if _dangerous(s)]
    assert _dangerous(["-f", "2"]) and _dangerous(["-e", "2"])


def test_auditctl_same_against_simulator_and_kernel(simulator_like: EndpointServer) -> None:
    assert not [s for s in STEPS if _dangerous(s)], "a step would panic or lock the real kernel"
    env = wrap_env(simulator_like.endpoint)
    check_preload(env)  # never let a redirect that does not load send these to the kernel twice
    mismatches = []
    for i, step in enumerate(STEPS):
        kernel = run(step)
        sim = run(step, env)
        if kernel != sim:
            mismatches.append(f"step {i} auditctl {' '.join(step)}:\n  kernel    {kernel!r}\n  simulator {sim!r}")
    assert not mismatches, "\n".join(mismatches)
    # the comparison is not vacuous: the steps changed state, refused things, and printed it
    outs = [run(["-s"], env)[1], run(["-l"], env)[1]]
    assert "enabled 0" in outs[0] and "backlog_limit 321" in outs[0] and "No rules" in outs[1]
    assert simulator_like.counters["datagrams"] > len(STEPS)


def test_normalise_keeps_what_matters() -> None:
    out = "enabled 1\npid 123\nlost 7\nbacklog 2\nbacklog_limit 64\nbacklog_wait_time 15000\nbacklog_wait_time_actual 3\n"
    assert normalise(out) == (
        "enabled 1\npid *\nlost *\nbacklog *\nbacklog_limit 64\nbacklog_wait_time 15000\nbacklog_wait_time_actual *\n"
    )
