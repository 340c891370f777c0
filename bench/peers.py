"""The peers kaudit is measured against, each run the way its users run it.

* **auparse** (Debian ``python3-audit``): a loop over every record and every field of a file,
  driven from the system interpreter ``/usr/bin/python3`` (the bindings are built for it, not
  for the project's Python) by a small script written into the work directory;
* **laurel** (Debian ``laurel``): reads records on standard input, as it does behind auditd's
  dispatcher, with a config that writes its JSON log into a temporary folder (its shipped
  defaults otherwise: pid, script and container enrichment on);
* **ausearch** (Debian ``auditd``): ``ausearch --format raw -if FILE``, output to a file;
* **auditd** (Debian ``auditd`` 3.0.9): the real daemon in the foreground with a temporary
  config directory (log in a temporary folder, no dispatcher plugins), stopped by its pid.

Every run goes through ``measure``: one child process, its wall time, and its own CPU time and
peak RSS from ``os.wait4`` (the rusage of exactly that child, not the running maximum over all
children that ``RUSAGE_CHILDREN`` gives).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "AUPARSE_PYTHON",
    "AuditdDaemon",
    "Measured",
    "auparse_command",
    "ausearch_command",
    "laurel_command",
    "measure",
    "peer_versions",
    "unavailable",
]

AUPARSE_PYTHON = "/usr/bin/python3"
LAUREL = "/usr/sbin/laurel"
AUSEARCH = "/usr/sbin/ausearch"
AUDITD = "/usr/sbin/auditd"
GNU_TIME = "/usr/bin/time"


@dataclass(slots=True)
class Measured:
    """One child process: how long it took, what it cost, what it said."""

    argv: list[str]
    wall_s: float
    user_s: float
    sys_s: float
    maxrss_kb: int
    returncode: int
    stdout: bytes = b""
    stderr: bytes = b""
    timed_out: bool = False

    @property
    def cpu_s(self) -> float:
        return self.user_s + self.sys_s

    def json_out(self) -> dict:
        """The last line of stdout as JSON (what our worker scripts print); {} if none."""
        lines = [ln for ln in self.stdout.decode("utf-8", "replace").splitlines() if ln.strip()]
        if not lines:
            return {}
        try:
            return json.loads(lines[-1])
        except ValueError:
            return {}

    def failure(self) -> str | None:
        """None if the child exited 0, else a one-line reason with the end of its stderr."""
        if self.timed_out:
            return f"timed out after {self.wall_s:.0f} s"
        if self.returncode == 0:
            return None
        tail = self.stderr.decode("utf-8", "replace").strip().splitlines()[-3:]
        return f"exit status {self.returncode}" + (": " + " | ".join(tail) if tail else "")


def measure(
    argv: list[str],
    *,
    stdin_path: str | os.PathLike[str] | None = None,
    stdout_path: str | os.PathLike[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 3600.0,
) -> Measured:
    """Run ``argv`` to completion and measure it (wall clock around spawn..reap, rusage of it).

    stdout goes to ``stdout_path`` if given (and is then not captured), else it is captured.

    Peak RSS goes through GNU time (``/usr/bin/time -f %M``) where it is installed: Linux
    carries the *parent's* RSS high-water mark across the child's exec (``exec_mmap`` keeps
    ``signal->maxrss``; with the vfork ``subprocess`` uses, that is the benchmark process's own
    peak), so ``os.wait4`` of a direct child reports at least the benchmark's size. GNU time
    is small and forks the tool itself, so its ``%M`` is the tool's own peak. CPU times still
    come from ``os.wait4`` (they include the reaped grandchild).
    """
    rss_file = None
    if os.access(GNU_TIME, os.X_OK):
        fd, rss_file = tempfile.mkstemp(prefix="kaudit-bench-rss-")
        os.close(fd)
        argv = [GNU_TIME, "-f", "%M", "-o", rss_file, "--", *argv]
    stdin = open(stdin_path, "rb") if stdin_path is not None else subprocess.DEVNULL  # noqa: SIM115
    stdout = open(stdout_path, "wb") if stdout_path is not None else subprocess.PIPE  # noqa: SIM115
    out_chunks: list[bytes] = []
    err_chunks: list[bytes] = []
    timed_out = threading.Event()
    try:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, cwd=cwd, env=env, start_new_session=True
        )
        readers = []
        for stream, sink in ((proc.stdout, out_chunks), (proc.stderr, err_chunks)):
            if stream is not None:
                th = threading.Thread(target=lambda s=stream, k=sink: k.append(s.read()), daemon=True)
                th.start()
                readers.append(th)

        def _kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, _kill)
        timer.start()
        try:
            _pid, status, ru = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        for th in readers:
            th.join()
        for s in (proc.stdout, proc.stderr):
            if s is not None:
                s.close()
    finally:
        for f in (stdin, stdout):
            if hasattr(f, "close"):
                f.close()
    maxrss = ru.ru_maxrss
    if rss_file is not None:
        try:
            with open(rss_file, encoding="ascii", errors="replace") as f:
                text = f.read().split()
            maxrss = int(text[-1])  # "Command exited with non-zero status N" may come first
        except (OSError, ValueError, IndexError):
            maxrss = 0
        finally:
            os.unlink(rss_file)
        argv = argv[5:]
    return Measured(
        list(argv),
        wall,
        ru.ru_utime,
        ru.ru_stime,
        maxrss,
        proc.returncode,
        b"".join(out_chunks),
        b"".join(err_chunks),
        timed_out.is_set(),
    )


# --- availability and versions ------------------------------------------------------------------


def unavailable(tool: str) -> str | None:
    """None if ``tool`` (auparse, laurel, ausearch, auditd) can run here, else why not."""
    if tool == "auparse":
        if not os.access(AUPARSE_PYTHON, os.X_OK):
            return f"{AUPARSE_PYTHON} not found (the auparse bindings are built for the system Python)"
        r = subprocess.run([AUPARSE_PYTHON, "-c", "import auparse"], capture_output=True, timeout=30)
        if r.returncode:
            return "python3-audit is not installed (apt-get install python3-audit)"
        return None
    path = {"laurel": LAUREL, "ausearch": AUSEARCH, "auditd": AUDITD}.get(tool)
    if path is None:
        raise ValueError(f"unknown peer {tool!r}")
    if not os.access(path, os.X_OK):
        pkg = "laurel" if tool == "laurel" else "auditd"
        return f"{path} not found (apt-get install {pkg})"
    return None


def _dpkg_version(pkg: str) -> str | None:
    if not shutil.which("dpkg-query"):
        return None
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
    return r.stdout.strip() or None if r.returncode == 0 else None


def peer_versions() -> dict[str, str | None]:
    """Debian package versions of the peers (None where not installed)."""
    return {
        "auparse": _dpkg_version("python3-audit"),
        "laurel": _dpkg_version("laurel"),
        "ausearch": _dpkg_version("auditd"),
        "auditd": _dpkg_version("auditd"),
    }


# --- auparse ---------------------------------------------------------------------------------------

# Runs under /usr/bin/python3: it must not import kaudit. Counts what it saw so that a run that
# parsed nothing cannot pass for a fast one.
_AUPARSE_LOOP = textwrap.dedent(
    '''\
    """Every record and every field of a log through auparse (kaudit bench replay)."""
    import json, sys, time
    import auparse

    t0 = time.perf_counter()
    au = auparse.AuParser(auparse.AUSOURCE_FILE, sys.argv[1])
    records = events = fields = 0
    while au.parse_next_event():
        events += 1
        while True:
            records += 1
            if au.first_field():
                while True:
                    au.get_field_name()
                    au.get_field_str()
                    fields += 1
                    if not au.next_field():
                        break
            if not au.next_record():
                break
    loop = time.perf_counter() - t0
    print(json.dumps({"records": records, "events": events, "fields": fields, "loop_s": loop}))
    '''
)


def auparse_command(log_path: str | os.PathLike[str], workdir: str | os.PathLike[str]) -> list[str]:
    """argv for the auparse loop over ``log_path`` (the script is written into ``workdir``)."""
    script = Path(workdir) / "auparse_loop.py"
    script.write_text(_AUPARSE_LOOP, encoding="utf-8")
    return [AUPARSE_PYTHON, "-I", str(script), str(log_path)]


# --- laurel -----------------------------------------------------------------------------------------

_LAUREL_CONFIG = """\
# kaudit bench: laurel's shipped defaults, writing into a temporary folder, no rotation
directory = "{directory}"
statusreport-period = 0

[auditlog]
file = "audit.log"
size = 1000000000000
generations = 1

[transform]
execve-argv = [ "array" ]

[translate]
universal = false
user-db = false

[enrich]
pid = true
execve-env = [ "LD_PRELOAD", "LD_LIBRARY_PATH" ]
container = true
script = true
"""


def laurel_command(workdir: str | os.PathLike[str]) -> tuple[list[str], Path]:
    """argv for laurel reading stdin, and the JSON log it will write (its events, one a line)."""
    out_dir = Path(workdir) / "laurel-out"
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    conf = Path(workdir) / "laurel.toml"
    conf.write_text(_LAUREL_CONFIG.format(directory=out_dir), encoding="utf-8")
    return [LAUREL, "-c", str(conf)], out_dir / "audit.log"


# --- ausearch ---------------------------------------------------------------------------------------


def ausearch_command(log_path: str | os.PathLike[str]) -> list[str]:
    """argv for ``ausearch --format raw -if FILE`` (every record, as raw text)."""
    return [AUSEARCH, "--format", "raw", "-if", str(log_path)]


def count_lines(path: str | os.PathLike[str], prefix: bytes | None = None) -> int:
    """Lines of a file (those starting with ``prefix`` if given), read in chunks."""
    n = 0
    with open(path, "rb") as f:
        if prefix is None:
            while chunk := f.read(1 << 20):
                n += chunk.count(b"\n")
        else:
            for line in f:
                if line.startswith(prefix):
                    n += 1
    return n


# --- auditd -----------------------------------------------------------------------------------------

# Debian's shipped /etc/audit/auditd.conf (3.0.9), except what must change to run it beside the
# system's: the log goes to a temporary folder and is never rotated nor size-checked, and no
# dispatcher plugin is started (laurel's plugin file lives in /etc/audit/plugins.d).
_AUDITD_CONF = """\
local_events = yes
write_logs = yes
log_file = {log_file}
log_group = root
log_format = {log_format}
flush = {flush}
freq = {freq}
max_log_file = 0
num_logs = 0
priority_boost = 4
name_format = NONE
max_log_file_action = IGNORE
space_left = 2
space_left_action = IGNORE
verify_email = no
action_mail_acct = root
admin_space_left = 1
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = SYSLOG
max_restarts = 10
plugin_dir = {plugin_dir}
end_of_event_timeout = 2
"""


@dataclass(slots=True)
class AuditdDaemon:
    """auditd in the foreground with a private config; ``stop()`` is always safe to call.

    Use as a context manager: the daemon is stopped (SIGTERM, then SIGKILL after ``grace``
    seconds) on leaving, whatever happened, so that no auditd is ever left running.
    """

    workdir: Path
    log_format: str = "ENRICHED"  # Debian's shipped value
    flush: str = "INCREMENTAL_ASYNC"
    freq: int = 50
    grace: float = 10.0
    proc: subprocess.Popen | None = None
    conf_dir: Path = field(init=False)
    log_file: Path = field(init=False)
    stderr_path: Path = field(init=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir)
        self.conf_dir = self.workdir / "auditd-conf"
        self.log_file = self.workdir / "auditd-log" / "audit.log"
        self.stderr_path = self.workdir / "auditd.stderr"

    def write_config(self) -> Path:
        plugins = self.conf_dir / "plugins.d"
        plugins.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(self.conf_dir, 0o750)
        conf = self.conf_dir / "auditd.conf"
        conf.write_text(
            _AUDITD_CONF.format(
                log_file=self.log_file,
                log_format=self.log_format,
                flush=self.flush,
                freq=self.freq,
                plugin_dir=plugins,
            ),
            encoding="utf-8",
        )
        os.chmod(conf, 0o640)  # auditd refuses a config others can write
        return conf

    def start(self) -> int:
        """Start ``auditd -n -s nochange -c CONFDIR`` (not ``-f``: in the foreground mode auditd writes the
        events to stderr instead of its log); returns its pid."""
        if self.proc is not None:
            raise RuntimeError("auditd already started by this runner")
        self.write_config()
        err = open(self.stderr_path, "wb")  # noqa: SIM115 - owned by the child
        try:
            self.proc = subprocess.Popen(
                [AUDITD, "-n", "-s", "nochange", "-c", str(self.conf_dir)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
            )
        finally:
            err.close()
        return self.proc.pid

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM, wait up to ``grace`` s, then SIGKILL; returns the exit status (None if never run)."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            try:
                proc.send_signal(signal.SIGTERM)
                proc.wait(self.grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def stderr_tail(self, lines: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return " | ".join(text.strip().splitlines()[-lines:])

    def __enter__(self) -> AuditdDaemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
