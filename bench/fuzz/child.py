"""The atheris process for one target: ``python -m bench.fuzz.child TARGET WORKDIR [libFuzzer args]``.

Started by ``bench.fuzz.engine``; not meant to be run by hand. Imports the target inside
``atheris.instrument_imports`` (so kaudit's code gives coverage feedback), then fuzzes. An
exception out of the target is recorded (first input per signature, in WORKDIR/found/) and
swallowed, so that libFuzzer keeps going and one run finds every distinct crash; counters go
to WORKDIR/stats.json at most once a second and at exit.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import sys
import time
from pathlib import Path


def main() -> None:
    import atheris

    name, workdir = sys.argv[1], Path(sys.argv[2])
    libfuzzer_args = [sys.argv[0], *sys.argv[3:]]

    from bench.fuzz import get_target

    target = get_target(name)
    with atheris.instrument_imports(include=list(target.instrument)):
        from bench.fuzz import load

        one_input, seeds, _mod = load(name)
        for data in seeds():  # imports what the target imports lazily, inside the hook
            try:
                one_input(data)
            except Exception:  # noqa: BLE001, S110 - the fuzz loop below reports it
                pass

    from bench.fuzz.engine import crash_signature

    found_dir = workdir / "found"
    found_dir.mkdir(parents=True, exist_ok=True)
    stats_path = workdir / "stats.json"
    state = {"executions": 0, "crashes": {}, "last": 0.0}

    def write_stats() -> None:
        tmp = stats_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"executions": state["executions"], "crashes": state["crashes"]}), "utf-8")
        tmp.replace(stats_path)

    atexit.register(write_stats)

    def test_one_input(data: bytes) -> None:
        state["executions"] += 1
        try:
            one_input(data)
        except Exception as exc:  # noqa: BLE001 - every exception out of a target is a crash
            sig = crash_signature(exc)
            if sig not in state["crashes"]:
                path = found_dir / f"{name}-{hashlib.sha1(data).hexdigest()[:12]}.bin"
                path.write_bytes(data)
                state["crashes"][sig] = str(path)
                print(f"\n=== kaudit fuzz: new crash {sig} -> {path}\n{exc!r}"[:2000], file=sys.stderr, flush=True)
                write_stats()
        now = time.monotonic()
        if now - state["last"] >= 1.0:
            state["last"] = now
            write_stats()

    atheris.Setup(libfuzzer_args, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
