"""Run a fuzz target for a time budget: atheris in a child process, or hypothesis in-process.

Why a child process for atheris: ``atheris.Fuzz()`` never returns (libFuzzer exits the
process), and the code under test must be imported *inside* ``atheris.instrument_imports`` to
give coverage feedback, i.e. before anything else imported it. The child (``bench.fuzz.child``)
catches every exception the target raises, keeps one input per distinct crash signature and
goes on fuzzing, so one run reports every distinct crash it met, not just the first; it
writes its counters to ``stats.json`` as it goes. Hangs and memory blow-ups end the child
(libFuzzer's ``-timeout`` / ``-rss_limit_mb``); the parent records the artifact as a crash and
starts a new child for the rest of the budget.

Every new crash is minimised here (delta debugging on bytes, keeping the same signature) and
written to ``WORKDIR/crashes/``; ``tests/fuzz_corpus/<target>/`` is where a minimised input
goes once a regression test pins it.

Without atheris (it ships wheels for CPython on Linux x86_64 only) the same target runs under
hypothesis: random and seed-mutated byte strings, no coverage feedback, same report.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import get_target

__all__ = ["FuzzReport", "crash_signature", "minimise", "run_target", "atheris_available"]

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORKDIR = Path("/tmp/kaudit-fuzz")
PER_INPUT_TIMEOUT = 20  # seconds: longer is a hang (libFuzzer -timeout)
RSS_LIMIT_MB = 2048


@dataclass(slots=True)
class FuzzReport:
    """What one budgeted run of one target did (``--json`` writes a list of these)."""

    target: str
    engine: str
    seconds: float = 0.0
    executions: int = 0
    crashes: int = 0  # distinct crash signatures met in this run
    signatures: list[str] = field(default_factory=list)
    crash_files: list[str] = field(default_factory=list)  # minimised inputs, one per signature
    corpus: int = 0  # inputs in the working corpus at the end (atheris)
    coverage: int = 0  # libFuzzer's "cov:" at the end (atheris)
    restarts: int = 0  # children that ended early (hang, OOM, native crash)
    notes: list[str] = field(default_factory=list)

    @property
    def execs_per_second(self) -> float:
        return self.executions / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict:
        d = asdict(self)
        d["execs_per_second"] = round(self.execs_per_second, 1)
        d["seconds"] = round(self.seconds, 1)
        return d


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401
    except ImportError:
        return False
    return True


def crash_signature(exc: BaseException) -> str:
    """``Type@file:line`` of the innermost frame in this repository (where the bug shows).

    Frames of the fuzz targets themselves count too: their assertions are the invariants.
    """
    where = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        try:
            rel = Path(frame.filename).resolve().relative_to(REPO)
        except ValueError:
            continue
        where = f"{rel}:{frame.lineno}"
    return f"{type(exc).__name__}@{where}"


def signature_of(one_input, data: bytes) -> str | None:
    """The crash signature ``data`` gives, or None when it does not crash."""
    try:
        one_input(data)
    except Exception as exc:  # noqa: BLE001 - any exception out of a target is a crash
        return crash_signature(exc)
    return None


def minimise(one_input, data: bytes, signature: str, *, budget: float = 60.0) -> bytes:
    """The smallest input found (ddmin over byte chunks) that still crashes with ``signature``."""
    deadline = time.monotonic() + budget
    best = data
    n = 2
    while len(best) >= 2 and time.monotonic() < deadline:
        chunk = max(1, len(best) // n)
        reduced = False
        for start in range(0, len(best), chunk):
            if time.monotonic() >= deadline:
                break
            cand = best[:start] + best[start + chunk :]
            if cand and signature_of(one_input, cand) == signature:
                best = cand
                n = max(n - 1, 2)
                reduced = True
                break
        if not reduced:
            if chunk == 1:
                break
            n = min(len(best), n * 2)
    # then make bytes simpler where possible (a readable regression input)
    out = bytearray(best)
    for i in range(len(out)):
        if time.monotonic() >= deadline:
            break
        for simple in (0x61, 0x30, 0x20, 0x00):
            if out[i] == simple:
                break
            old = out[i]
            out[i] = simple
            if signature_of(one_input, bytes(out)) == signature:
                break
            out[i] = old
    return bytes(out)


def _save_crash(workdir: Path, target: str, one_input, data: bytes, signature: str, report: FuzzReport) -> None:
    small = minimise(one_input, data, signature)
    digest = hashlib.sha1(small).hexdigest()[:12]
    crash_dir = workdir / "crashes"
    crash_dir.mkdir(parents=True, exist_ok=True)
    path = crash_dir / f"{target}-{digest}.bin"
    path.write_bytes(small)
    (crash_dir / f"{target}-{digest}.txt").write_text(signature + "\n", encoding="utf-8")
    report.crash_files.append(str(path))


# --------------------------------------------------------------------------- atheris


_DONE_RE = re.compile(r"Done (\d+) runs in (\d+) second")
_COV_RE = re.compile(r"cov: (\d+) ft: \d+ corp: (\d+)")


def _run_atheris(name: str, seconds: float, workdir: Path, report: FuzzReport, *, quiet: bool) -> None:
    from . import load

    one_input, seeds, _mod = load(name)
    target = get_target(name)
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    if not any(corpus.iterdir()):
        for data in seeds():
            (corpus / hashlib.sha1(data).hexdigest()).write_bytes(data)
    artifacts = workdir / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    found: dict[str, str] = {}  # signature -> crash input file written by the child
    t_end = time.monotonic() + seconds
    log_path = workdir / "fuzz.log"
    while True:
        left = int(t_end - time.monotonic())
        if left < 2:
            break
        stats_path = workdir / "stats.json"
        stats_path.unlink(missing_ok=True)
        before = set(artifacts.iterdir())
        cmd = [
            sys.executable,
            "-m",
            "bench.fuzz.child",
            name,
            str(workdir),
            f"-max_total_time={left}",
            f"-timeout={PER_INPUT_TIMEOUT}",
            f"-rss_limit_mb={RSS_LIMIT_MB}",
            f"-max_len={target.max_len}",
            f"-artifact_prefix={artifacts}/",
            "-print_final_stats=1",
            str(corpus),
        ]
        t0 = time.monotonic()
        with open(log_path, "ab") as log:
            proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, check=False)
        report.seconds += time.monotonic() - t0
        tail = log_path.read_bytes()[-20000:].decode("utf-8", "replace")
        try:
            stats = json.loads(stats_path.read_text("utf-8"))
        except (OSError, ValueError):
            stats = {}
        done = _DONE_RE.findall(tail)
        runs = int(done[-1][0]) if done else 0
        report.executions += max(runs, int(stats.get("executions", 0)))
        cov = _COV_RE.findall(tail)
        if cov:
            report.coverage, report.corpus = int(cov[-1][0]), int(cov[-1][1])
        for sig, path in stats.get("crashes", {}).items():
            found.setdefault(sig, path)
        new_artifacts = sorted(set(artifacts.iterdir()) - before)
        ended_early = proc.returncode != 0 or not done
        if ended_early:
            report.restarts += 1
            kind = "hang" if "timeout" in tail[-4000:] else ("oom" if "out-of-memory" in tail[-4000:] else "crash")
            for art in new_artifacts:
                found.setdefault(f"{kind}@{art.name.split('-')[0]}", str(art))
            if not new_artifacts:
                report.notes.append(f"child exited with {proc.returncode} and no artifact; see {log_path}")
            if not quiet:
                print(f"[{name}] child ended early ({kind}, exit {proc.returncode}); restarting", file=sys.stderr)
            if report.restarts > 20:
                report.notes.append("more than 20 restarts: giving up on the rest of the budget")
                break
        else:
            break
    report.corpus = report.corpus or sum(1 for _ in corpus.iterdir())
    for sig, path in sorted(found.items()):
        report.signatures.append(sig)
        data = Path(path).read_bytes()
        if "@" in sig and not sig.startswith(("hang@", "oom@", "crash@")):
            _save_crash(workdir, name, one_input, data, sig, report)
        else:
            report.crash_files.append(path)
    report.crashes = len(found)


# --------------------------------------------------------------------------- hypothesis


def _run_hypothesis(name: str, seconds: float, workdir: Path, report: FuzzReport) -> None:
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    from . import load

    one_input, seeds, _mod = load(name)
    target = get_target(name)
    seed_list = list(seeds()) or [b""]
    found: dict[str, bytes] = {}
    count = 0

    @st.composite
    def mutated(draw) -> bytes:
        data = bytearray(draw(st.sampled_from(seed_list)))
        for _ in range(draw(st.integers(0, 8))):
            op = draw(st.integers(0, 3))
            pos = draw(st.integers(0, len(data)))
            if op == 0 and data:
                data[min(pos, len(data) - 1)] = draw(st.integers(0, 255))
            elif op == 1:
                data[pos:pos] = draw(st.binary(max_size=16))
            elif op == 2:
                del data[pos : pos + draw(st.integers(1, 16))]
            else:
                data[pos:pos] = draw(st.sampled_from(seed_list))[: draw(st.integers(0, 64))]
        return bytes(data[: target.max_len])

    strategy = st.one_of(st.binary(max_size=min(target.max_len, 512)), mutated())

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def one(data: bytes) -> None:
        nonlocal count
        count += 1
        sig = signature_of(one_input, data)
        if sig is not None and sig not in found:
            found[sig] = data

    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        one()
    report.seconds = time.monotonic() - t0
    report.executions = count
    for sig, data in sorted(found.items()):
        report.signatures.append(sig)
        _save_crash(workdir, name, one_input, data, sig, report)
    report.crashes = len(found)


# --------------------------------------------------------------------------- entry


def run_target(
    name: str,
    seconds: float,
    *,
    engine: str = "auto",
    workdir: Path | None = None,
    quiet: bool = False,
) -> FuzzReport:
    """Fuzz ``name`` for ``seconds``; ``engine`` is ``atheris``, ``hypothesis`` or ``auto``."""
    get_target(name)  # validates the name
    if engine == "auto":
        engine = "atheris" if atheris_available() else "hypothesis"
    if engine == "atheris" and not atheris_available():
        raise RuntimeError("atheris is not installed here (pip install atheris); use --engine hypothesis")
    wd = (workdir or DEFAULT_WORKDIR) / name
    wd.mkdir(parents=True, exist_ok=True)
    report = FuzzReport(target=name, engine=engine)
    if engine == "atheris":
        _run_atheris(name, seconds, wd, report, quiet=quiet)
    elif engine == "hypothesis":
        _run_hypothesis(name, seconds, wd, report)
    else:
        raise ValueError(f"unknown fuzz engine {engine!r} (atheris, hypothesis, auto)")
    os.makedirs(wd, exist_ok=True)
    with open(wd / "runs.jsonl", "a", encoding="utf-8") as fp:
        fp.write(json.dumps({"time": int(time.time()), **report.as_dict()}) + "\n")
    return report
