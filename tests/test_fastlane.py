"""The native fast lane gives exactly the pure-Python pipeline's rows and counters.

The lane (collector/fastlane/_fastlane.c) claims: for every input, rows (values, order, eids)
and every counter of ``PipelineStats`` are what ``Pipeline`` computes without it, because it
only takes an event when it is sure and hands everything else back untouched. These tests
check that claim differentially - the same input through a pipeline with and without the
lane - over the public captures, the benchmark corpus (text and netlink), and thousands of
mutated events (dropped, duplicated, reordered, corrupted records; odd values in every field
the tables read), with chunk and batch boundaries falling everywhere. They also check that
the lane really does the work on kernel-style input (a lane that bails on everything would
pass the differential tests and be useless).
"""

from __future__ import annotations

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import collector.fastlane as fl
from bench.corpus import build_corpus, iter_netlink_datagrams
from collector.pipeline import Pipeline
from collector.protocol.netlink import decode_datagram
from collector.tables.options import TableOptions

ROOT = Path(__file__).resolve().parents[1]

if fl.module() is None:  # KAUDIT_FASTLANE=1 (CI) turns a failed build into an error instead
    pytest.skip(f"the fast lane is {fl.status()}", allow_module_level=True)

REPLAY = TableOptions(allow_sockets=True, allow_process_events=True)
ALL_ON = TableOptions(
    allow_sockets=True,
    allow_process_events=True,
    allow_failed_socket_events=True,
    allow_accept_socket_events=True,
    allow_null_accept_socket_events=True,
    allow_unix=True,
    allow_fork_process_events=True,
    allow_kill_process_events=True,
)
NO_ACCEPT = TableOptions(allow_sockets=True, allow_process_events=False, allow_accept_socket_events=False)
OPTIONS = {"replay": REPLAY, "all": ALL_ON, "sockets-only": NO_ACCEPT}


class Clock:
    """An uptime that changes with every call: equal rows need the same calls in the same order."""

    def __init__(self) -> None:
        self.n = 1000

    def __call__(self) -> int:
        self.n += 1
        return self.n


def run_text(data: bytes, opts: TableOptions, lane: bool, chunk: int = 1 << 20, exclude=()) -> tuple:
    rows: list[dict] = []
    p = Pipeline(
        opts, lambda rs: rows.extend(r.to_dict() for r in rs), uptime=Clock(), fastlane=lane,
        exclude_pids=exclude, first_eid=7,
    )  # fmt: skip
    p.feed_stream(io.BytesIO(data), chunk=chunk)
    return rows, p.finish().as_dict(), p


def run_messages(msgs: list, opts: TableOptions, lane: bool, batches: list[int], exclude=()) -> tuple:
    rows: list[dict] = []
    p = Pipeline(
        opts,
        lambda rs: rows.extend(r.to_dict() for r in rs),
        uptime=None,
        fastlane=lane,
        exclude_pids=exclude,
    )
    i = k = 0
    while i < len(msgs):
        n = batches[k % len(batches)]
        p.feed_messages(msgs[i : i + n])
        i += n
        k += 1
    return rows, p.finish().as_dict(), p


def assert_same_text(data: bytes, opts: TableOptions, chunk: int = 1 << 20, exclude=()) -> Pipeline:
    want_rows, want_stats, _ = run_text(data, opts, False, exclude=exclude)
    rows, stats, p = run_text(data, opts, True, chunk=chunk, exclude=exclude)
    assert stats == want_stats
    assert rows == want_rows
    return p


@pytest.fixture(scope="module")
def bench_corpus(tmp_path_factory) -> Path:
    return Path(build_corpus(tmp_path_factory.mktemp("corpus"), 20_000).directory)


def test_records_no_table_reads_stay_in_the_lane(bench_corpus: Path) -> None:
    """BPRM_FCAPS, MMAP, AVC ... inside a syscall event: counted and kept, the event still the
    lane's (an execve of a file with capabilities writes BPRM_FCAPS every time)."""
    events = _events((bench_corpus / "corpus.log").read_bytes()[:200_000])
    lines: list[bytes] = []
    for i, ev in enumerate(events):
        stamp = ev[0].split(b"msg=", 1)[1].split(b")", 1)[0] + b")"
        extra = [
            b"type=BPRM_FCAPS msg=" + stamp + b": fver=0 fp=0 fi=0 fe=0 old_pp=000001fffeffffff pp=0\n",
            b"type=MMAP msg=" + stamp + b": fd=3 flags=0x2\n",
            b"type=AVC msg="
            + stamp
            + b': avc:  denied  { read } for  pid=1 comm="x" scontext=a tcontext=b\n',
            b"type=LOGIN msg=" + stamp + b": pid=1 uid=0 old-auid=4294967295 auid=0 res=1\n",
        ][i % 4]
        lines += [*ev[:-1], extra, ev[-1]]
    data = b"".join(lines)
    for opts in (REPLAY, ALL_ON):
        p = assert_same_text(data, opts)
        assert p._lane.events == p.stats.events - 1 and p._lane.bails == 0
        assert {"BPRM_FCAPS", "MMAP", "AVC", "LOGIN"} <= set(p.stats.records_by_type)


def test_bench_corpus_text_is_the_same_and_the_lane_takes_every_event(bench_corpus: Path) -> None:
    data = (bench_corpus / "corpus.log").read_bytes()
    for opts in OPTIONS.values():
        p = assert_same_text(data, opts)
        lane = p._lane
        assert lane is not None
        # the corpus is kernel records with EOE: nothing for the Python path but the first event
        assert lane.events == p.stats.events - 1 and lane.bails == 0


@pytest.mark.parametrize("chunk", [1, 97, 4096, 65_537])
def test_chunk_boundaries_anywhere_change_nothing(bench_corpus: Path, chunk: int) -> None:
    data = (bench_corpus / "corpus.log").read_bytes()[: 400_000 if chunk > 1 else 40_000]
    p = assert_same_text(data, ALL_ON, chunk=chunk)
    assert p._lane is not None and p._lane.events > 0


def test_bench_corpus_netlink_is_the_same(bench_corpus: Path) -> None:
    msgs = [m for d in iter_netlink_datagrams(bench_corpus / "corpus.nl") for m in decode_datagram(d)]
    for opts in (REPLAY, ALL_ON):
        for batches in ([4096], [1, 2, 3, 5, 7, 11, 13, 500]):
            want = run_messages(msgs, opts, False, batches)
            got = run_messages(msgs, opts, True, batches)
            assert got[1] == want[1]
            assert got[0] == want[0]
            assert got[2]._lane.events > 0.9 * want[1]["events"] / (2 if batches[0] == 1 else 1)


def test_excluded_pids_are_counted_as_self_events_alike(bench_corpus: Path) -> None:
    data = (bench_corpus / "corpus.log").read_bytes()[:300_000]
    pids = {line.split(b" pid=")[1].split(b" ")[0].decode() for line in data.splitlines() if b" pid=" in line}
    exclude = sorted(int(p) for p in pids)[::2]
    p = assert_same_text(data, ALL_ON, exclude=exclude)
    assert p.stats.self_events > 0


def public_logs(corpus: Path) -> list[Path]:
    return sorted(
        f
        for f in corpus.rglob("*")
        if f.is_file() and f.suffix in (".log", ".txt") and "rules" not in f.parts
    )


def test_every_public_capture_is_the_same(corpus: Path) -> None:
    files = public_logs(corpus)
    assert len(files) >= 10
    for f in files:
        data = f.read_bytes()
        for opts in (REPLAY, ALL_ON):
            for chunk in (1 << 20, 1000):
                try:
                    assert_same_text(data, opts, chunk=chunk)
                except AssertionError as exc:
                    raise AssertionError(f"{f} (chunk {chunk}): {exc}") from None


# ---- mutations ------------------------------------------------------------------------------

# values the tables read, and odd spellings of them
_SWAPS = [
    (b"success=yes", b"success=no"), (b"success=no", b"success=yes"), (b"success=yes", b"success=796573"),
    (b"exit=0", b"exit=-115"), (b"exit=0", b"exit=-11"), (b"exit=0", b"exit=+0"), (b"exit=0", b"exit=-111"),
    (b"syscall=42", b"syscall=49"), (b"syscall=42", b"syscall=43"), (b"syscall=42", b"syscall=288"),
    (b"syscall=59", b"syscall=322"), (b"syscall=59", b"syscall=57"), (b"syscall=59", b"syscall=56"),
    (b"syscall=59", b"syscall=62"), (b"syscall=59", b"syscall=435"), (b"syscall=42", b"syscall=042"),
    (b"arch=c000003e", b"arch=c00000b7"), (b"arch=c000003e", b"arch=40000003"), (b"arch=c000003e", b"arch=C000003E"),
    (b"arch=c000003e", b"arch=zz"), (b"arch=c000003e", b"arch=80000016"),
    (b"saddr=02", b"saddr=0A"), (b"saddr=02", b"saddr=01"), (b"saddr=02", b"saddr=10"), (b"saddr=02", b"saddr=00"),
    (b"saddr=02", b"saddr=2"), (b"saddr=", b"saddr=(null)"), (b"saddr=01", b"saddr=0100"),
    (b"pid=", b"pid=-"), (b"ppid=", b"ppid=x"), (b"auid=", b"auid=0"), (b" uid=", b" uid=+"),
    (b'exe="', b'exe="a b" x="'), (b'exe="', b"exe='"), (b"exe=", b"exe=(null) y="), (b'exe="', b'exe=""'), (b'exe="', b'exe="x y='), (b'cwd="', b'cwd="x y='),
    (b"a0=", b"a0=0x"), (b"a0=", b"a0=1_"), (b"a0=", b"a0=ffffffffffffffffff"), (b"a0=", b"b0="),
    (b"argc=", b"argc=1"), (b"argc=3", b"argc=2"), (b"a1=", b"a1_len=4 a1[0]="), (b'a0="', b"a0=c3"),
    (b'a0="', b"a0=e282ac"), (b'a0="', b"a0=ff"), (b'a0="', b"a0=(null) x="), (b"a0=", b"a0= "),
    (b'cwd="', b"cwd=2f746d70 x="), (b'cwd="', b"cwd=2f"), (b'cwd="', b"cwd=(null) x="), (b"cwd=", b"cwdx="),
    (b"item=0", b"item=1"), (b"item=0", b"item=00"), (b"mode=", b'mode="0100755" x='), (b"ouid=0", b"ouid=-1"),
    (b"ogid=", b"ogid=x"), (b"type=SYSCALL", b"type=UNKNOWN[1300]"), (b"type=PATH", b"type=AVC"),
    (b"type=CWD", b"type=SOCKETCALL"), (b"type=EOE", b"type=USER_START"), (b"type=SOCKADDR", b"type=EXECVE"),
    (b"msg=audit(", b"node=x type=SYSCALL msg=audit("), (b"): ", b") "), (b"): ", b"):"), (b".0", b".1"),
    (b"audit(1700000000", b"audit(1700000003"), (b"audit(1700000000", b"audit(1699999990"),
    (b"key=", b"key=\x1dARCH=x86_64 "), (b"items=", b"items=\t"), (b"comm=", b"comm=\xc3\xa9"),
]  # fmt: skip


def _events(data: bytes) -> list[list[bytes]]:
    out: list[list[bytes]] = []
    cur: list[bytes] = []
    for line in data.splitlines(keepends=True):
        cur.append(line)
        if line.startswith(b"type=EOE"):
            out.append(cur)
            cur = []
    return out


def _mutate(rng: random.Random, events: list[list[bytes]]) -> bytes:
    lines: list[bytes] = []
    for ev in events:
        ev = list(ev)
        if rng.random() < 0.5:
            op = rng.randrange(9)
            i = rng.randrange(len(ev))
            if op == 0:
                del ev[i]  # a lost record (EOE included)
            elif op == 1:
                ev.insert(i, ev[i])  # a duplicate
            elif op == 2 and len(ev) > 1:
                j = rng.randrange(len(ev))
                ev[i], ev[j] = ev[j], ev[i]  # out of order
            elif op == 3:
                old, new = rng.choice(_SWAPS)
                ev[i] = ev[i].replace(old, new, 1)
            elif op == 4:
                b = bytearray(ev[i])
                b[rng.randrange(len(b))] = rng.choice(b' =":x0\xff\x00')
                ev[i] = bytes(b)
            elif op == 5 and lines:
                lines.insert(rng.randrange(len(lines)), ev.pop(i))  # a straggler of another event
            elif op == 6:
                ev.insert(
                    i, rng.choice([b"\n", b"# comment\n", b"----\n", b"time->Thu\n", b"garbage line\n"])
                )
            elif op == 7:
                for _ in range(3):
                    old, new = rng.choice(_SWAPS)
                    k = rng.randrange(len(ev))
                    ev[k] = ev[k].replace(old, new, 1)
            else:
                ev[i] = ev[i].rstrip(b"\n")[: rng.randrange(1, len(ev[i]))] + b"\n"  # truncated
        lines.extend(ev)
    if rng.random() < 0.3:
        # serial jumps, repeats and resets: renumber a stretch of events
        text = b"".join(lines)
        base = rng.choice([b":1", b":4294967", b":9"])
        text = text.replace(b":10", base, rng.randrange(1, 50))
        return text
    return b"".join(lines)


def test_mutated_events_are_the_same(bench_corpus: Path) -> None:
    events = _events((bench_corpus / "corpus.log").read_bytes()[:200_000])
    rng = random.Random(int(os.environ.get("KAUDIT_FASTLANE_SEED", "6")))
    taken = 0
    for case in range(400):
        start = rng.randrange(len(events) - 40)
        data = _mutate(rng, events[start : start + rng.randrange(1, 40)])
        opts = rng.choice(list(OPTIONS.values()))
        chunk = rng.choice([1 << 20, 1 << 20, 333, 4096])
        try:
            p = assert_same_text(data, opts, chunk=chunk, exclude=rng.choice([(), (1172,), (13393, 1)]))
        except AssertionError as exc:
            path = Path(os.environ.get("TMPDIR", "/tmp")) / f"fastlane-case-{case}.log"
            path.write_bytes(data)
            raise AssertionError(f"case {case} ({path}, chunk {chunk}, {opts}): {exc}") from None
        taken += p._lane.events
    assert taken > 1000  # most unmutated events still went through the lane


def test_mutated_messages_are_the_same(bench_corpus: Path) -> None:
    msgs = [m for d in iter_netlink_datagrams(bench_corpus / "corpus.nl") for m in decode_datagram(d)][
        :30_000
    ]
    rng = random.Random(11)
    for _ in range(60):
        start = rng.randrange(len(msgs) - 300)
        window = list(msgs[start : start + 300])
        for _ in range(rng.randrange(1, 30)):
            i = rng.randrange(len(window))
            op = rng.randrange(4)
            if op == 0:
                del window[i]
            elif op == 1:
                window.insert(i, window[i])
            elif op == 2:
                j = rng.randrange(len(window))
                window[i], window[j] = window[j], window[i]
            else:
                m = window[i]
                old, new = rng.choice(_SWAPS)
                window[i] = type(m)(
                    m.type, m.flags, m.seq, m.pid, m.payload.replace(old, new, 1), m.short_len
                )
        batches = [rng.randrange(1, 64) for _ in range(8)]
        opts = rng.choice(list(OPTIONS.values()))
        want = run_messages(window, opts, False, batches, exclude=(1172,))
        got = run_messages(window, opts, True, batches, exclude=(1172,))
        assert got[1] == want[1]
        assert got[0] == want[0]


def _interleave(rng: random.Random, events: list[list[bytes]]) -> bytes:
    """Pairs and triples of events merged as two or three CPUs would write them: each event's
    records keep their order, the events' records alternate at random."""
    out: list[bytes] = []
    i = 0
    while i < len(events):
        group = [list(e) for e in events[i : i + rng.choice([1, 2, 2, 3])]]
        i += len(group)
        while group:
            ev = rng.choice(group)
            out.append(ev.pop(0))
            if not ev:
                group.remove(ev)
    return b"".join(out)


def test_interleaved_events_are_taken_and_the_same(bench_corpus: Path) -> None:
    events = _events((bench_corpus / "corpus.log").read_bytes()[:400_000])
    rng = random.Random(3)
    data = _interleave(rng, events)
    for opts in (REPLAY, ALL_ON):
        p = assert_same_text(data, opts)
        # the Python path takes the first group (no serial is tracked yet), the lane the rest,
        # late events (a serial that completed after a higher one) included
        assert p._lane.events >= p.stats.events - 3 and p._lane.bails <= 1
        assert p.publisher.counters["late_events"] > 10
    msgs = [m for d in iter_netlink_datagrams(bench_corpus / "corpus.nl") for m in decode_datagram(d)][
        :20_000
    ]
    by_event: dict[bytes, list] = {}
    for m in msgs:
        by_event.setdefault(m.payload.split(b")")[0], []).append(m)
    mixed: list = []
    groups = list(by_event.values())
    while groups:
        pick = groups[: rng.choice([1, 2, 3])]
        groups = groups[len(pick) :]
        while pick:
            ev = rng.choice(pick)
            mixed.append(ev.pop(0))
            if not ev:
                pick.remove(ev)
    want = run_messages(mixed, ALL_ON, False, [4096])
    got = run_messages(mixed, ALL_ON, True, [4096])
    assert got[1] == want[1] and got[0] == want[0]
    assert got[2]._lane.events > 0.95 * want[1]["events"]


def _restamp(event: list[bytes], sec: int, serial: int) -> list[bytes]:
    import re

    return [re.sub(rb"audit\(\d+\.(\d+):\d+\)", b"audit(%d.\\1:%d)" % (sec, serial), line) for line in event]


def test_time_jumps_and_serial_resets_inside_a_group_are_the_same(bench_corpus: Path) -> None:
    events = _events((bench_corpus / "corpus.log").read_bytes()[:100_000])
    a, b, c, d = (events[i] for i in range(4))
    # an event that times out while another runs 3 s later, and interleaves with it
    a1, b1 = _restamp(a, 1700000100, 5000), _restamp(b, 1700000103, 5001)
    timeout_group = [a1[0], b1[0], *a1[1:], *b1[1:]]
    # a serial reset: the counter starts again 60 s later, below what was settled
    reset = _restamp(c, 1700000200, 5002) + _restamp(d, 1700000260, 4000)
    # a late event in a group (serial 6001 ends after 6002 completed), then a reset inside one
    late = _restamp(a, 1700000300, 6000) + _restamp(c, 1700000300, 6002) + _restamp(b, 1700000300, 6001)
    late_reset = _restamp(a, 1700000400, 7000) + [
        *_restamp(b, 1700000460, 6500)[:1],
        *_restamp(c, 1700000460, 7001),
    ]
    late_reset += _restamp(b, 1700000460, 6500)[1:]
    for lines in (timeout_group, reset, late, late_reset):
        data = b"".join(events[10] + events[11] + lines + events[12])
        for opts in (REPLAY, ALL_ON):
            assert_same_text(data, opts)
    p = assert_same_text(b"".join(events[10] + timeout_group), ALL_ON)
    assert p.stats.events_by_reason["timeout"] == 1 and p.publisher.counters["late"] >= 1
    p = assert_same_text(b"".join(events[10] + reset), ALL_ON)
    assert p.publisher.counters["serial_resets"] == 1


def test_events_around_one_held_open_are_taken_and_the_same(bench_corpus: Path) -> None:
    """A record that waits for its timeout (the kernel's CONFIG_CHANGE for a rule the daemon
    itself added has no SYSCALL and no EOE) holds the publisher's serial boundary: the lane
    goes on around it, and its timeout, 2 s of audit time later, settles what it held."""
    events = _events((bench_corpus / "corpus.log").read_bytes())
    lone = b'type=CONFIG_CHANGE msg=audit(1700000000.010:1010): auid=4294967295 ses=4294967295 op=add_rule key="kaudit" list=4 res=1\n'
    remote = b"node=other type=CONFIG_CHANGE msg=audit(1700000000.011:77): op=set audit_pid=1 res=1\n"
    body = [line for ev in events[:3500] for line in ev]
    # the held record takes a serial the events skipped, so that nothing collides
    body = [line for line in body if b":1010)" not in line]
    data = b"".join(body[:60] + [lone, remote] + body[60:])
    for opts in (REPLAY, ALL_ON):
        for chunk in (1 << 20, 5000):
            p = assert_same_text(data, opts, chunk=chunk)
            assert p.stats.events_by_reason["timeout"] == 2
            assert p._lane.events > 3000
    msgs = [m for d in iter_netlink_datagrams(bench_corpus / "corpus.nl") for m in decode_datagram(d)][
        :18_000
    ]
    msgs = [m for m in msgs if b":1010)" not in m.payload]
    held = type(msgs[0])(1305, 0, 0, 0, lone.split(b"msg=", 1)[1].rstrip(b"\n"), True)
    window = msgs[:60] + [held] + msgs[60:]
    want = run_messages(window, ALL_ON, False, [4096])
    got = run_messages(window, ALL_ON, True, [4096])
    assert got[1] == want[1] and got[0] == want[0]
    assert got[2]._lane.events > 0.9 * want[1]["events"]


def test_an_event_the_python_path_opened_is_finished_by_it(bench_corpus: Path) -> None:
    """The lane must not take a record of an event the publisher already holds open (started
    by the Python path): it would make a second event of the same id."""
    events = _events((bench_corpus / "corpus.log").read_bytes()[:100_000])
    a = events[20]
    stamp = a[0].split(b"msg=", 1)[1].split(b")", 1)[0] + b")"
    # a record the lane leaves alone (not ASCII; the Python path decodes it)
    odd = b"type=BPRM_FCAPS msg=" + stamp + b": fver=0 fp=0 fi=0 fe=0 x=\xc3\xa9\n"
    lines = [line for ev in events[:20] for line in ev]
    lines += [a[0], odd]  # the Python path opens a ...
    lines += [line for ev in events[21:30] for line in ev]  # ... the lane goes on around it ...
    lines += a[1:]  # ... and the rest of a arrives
    lines += [line for ev in events[30:40] for line in ev]
    data = b"".join(lines)
    for opts in (REPLAY, ALL_ON):
        p = assert_same_text(data, opts)
        assert p._lane.events >= 25 and p.publisher.counters["eoe"] == 40


def rows_into(rows: list[dict]):
    return lambda rs: rows.extend(r.to_dict() for r in rs)


def test_the_completed_id_window_is_pruned_alike(bench_corpus: Path) -> None:
    """The window of completed ids (publisher._recent) forgets by count and by audit time;
    with a small window, stragglers after it start a new event instead of counting as late,
    and the lane must forget exactly when the publisher does."""
    events = _events((bench_corpus / "corpus.log").read_bytes()[:300_000])
    rng = random.Random(9)
    lines: list[bytes] = []
    for i, ev in enumerate(events):
        lines += ev
        if i > 30 and i % 7 == 0:
            lines.append(events[i - rng.choice([3, 20, 30])][0])  # a SYSCALL of an earlier event
    data = b"".join(lines)
    for limit, window in ((25, 10_000), (10_000, 12), (40, 25)):
        outs = []
        for lane in (False, True):
            rows: list[dict] = []
            p = Pipeline(ALL_ON, rows_into(rows), uptime=None, fastlane=lane)
            p.publisher.recent_limit, p.publisher.recent_window_ms = limit, window
            if lane:
                p._lane = fl.FastLane(p)  # bound again: the lane copies the limits
            p.feed_stream(io.BytesIO(data))
            outs.append((rows, p.finish().as_dict(), p))
        assert outs[1][1] == outs[0][1]
        assert outs[1][0] == outs[0][0]
        assert outs[1][2]._lane.events > 100
        assert (
            outs[0][1]["publisher"].get("late", 0) > 0 and outs[0][1]["events_by_reason"].get("flush", 0) > 0
        )


# ---- switching it off, and a build that cannot happen ---------------------------------------------


def _status_in_child(env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import collector.fastlane as f, collector.pipeline as p, collector.tables.options as o\n"
        "print(f.status())\n"
        "pl = p.Pipeline(o.TableOptions(), None, uptime=None)\n"
        "print('lane' if pl._lane is not None else 'python')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )  # fmt: skip


def test_kaudit_fastlane_0_turns_it_off() -> None:
    out = _status_in_child({"KAUDIT_FASTLANE": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["off: $KAUDIT_FASTLANE=0", "python"]


def test_no_compiler_falls_back_to_python_and_says_why(tmp_path: Path) -> None:
    env = {"KAUDIT_FASTLANE": "", "CC": "/nonexistent/cc", "KAUDIT_CACHE": str(tmp_path)}
    out = _status_in_child(env)
    assert out.returncode == 0, out.stderr
    status, path = out.stdout.splitlines()
    assert status.startswith("off: ") and "/nonexistent/cc" in status and path == "python"
    # asked for explicitly, the same failure is an error that names the cause
    out = _status_in_child({**env, "KAUDIT_FASTLANE": "1"})
    assert out.returncode != 0 and "/nonexistent/cc" in out.stderr


def test_a_fresh_cache_builds_and_loads(tmp_path: Path) -> None:
    out = _status_in_child({"KAUDIT_FASTLANE": "1", "KAUDIT_CACHE": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["on", "lane"]
    assert len(list(tmp_path.glob("_fastlane-*.so"))) == 1
