"""``kaudit verify``: live end-to-end check on this machine, or inside a privileged container.

On the host it is ``simulator.verify.run_verify``. With ``--container`` the same command runs
inside kaudit's image (``simulator.container.run``: ``--pid=host``, ``--network=host``, the
capabilities the workloads need), its JUnit file, JSON report and rows come back through the
results folder, and the host checks what only the host can see: the kernel's audit state, its
own network namespaces and Docker's container list are as they were before.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from simulator.verify import VerifyError, VerifyOptions, read_kernel_state, run_verify

__all__ = ["register", "run"]

CONTAINER_SUITE = "kaudit-verify-container"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "verify",
        help="run real workloads under a live collector and check every row (needs root)",
        description=(
            "Start the collector on the real kernel, run live workloads (curl, connect, bind, accept, "
            "unix sockets, execve variants, forks; network ones across a veth between two private "
            "network namespaces), and match the rows each must produce. Exit 0 when all match, 1 on "
            "any mismatch, 2 when the run could not happen."
        ),
    )
    p.add_argument(
        "--workload",
        "-w",
        dest="workloads",
        action="extend",
        nargs="+",
        default=[],
        metavar="NAME",
        help="run only these workloads (repeatable; default: all; see --list)",
    )
    p.add_argument("--list", action="store_true", help="list the workloads and exit")
    p.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML here")
    p.add_argument("--report", type=Path, metavar="FILE", help="write the full JSON report here")
    p.add_argument("--rows", type=Path, metavar="FILE", help="copy every row the collector wrote here")
    p.add_argument(
        "--collector",
        metavar="CMD",
        help="collector command to test instead of kaudit's own ({output} is the rows file)",
    )
    p.add_argument("--keep", action="store_true", help="keep the work folder (collector log, rows)")
    p.add_argument(
        "--no-lock",
        action="store_true",
        help="do not take /tmp/kaudit-live.lock (the caller already holds it)",
    )
    p.add_argument("--suite", default="kaudit-verify", help=argparse.SUPPRESS)
    c = p.add_argument_group("container mode")
    c.add_argument(
        "--container", action="store_true", help="run inside kaudit's Docker image (see docs/live.md)"
    )
    c.add_argument(
        "--privileged",
        action="store_true",
        help="docker --privileged instead of the minimal capability set (fails where the bounding set is short)",
    )
    c.add_argument(
        "--cap",
        action="append",
        metavar="CAP",
        help="capability to add instead of the default set (repeatable)",
    )
    c.add_argument("--image", help="image to use (default: build or reuse kaudit's, by content)")
    c.add_argument(
        "--timeout", type=float, default=900.0, help="container time limit in seconds (default 900)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.list:
        return _list(args.workloads)
    if args.container:
        return run_container(args)
    opts = VerifyOptions(
        workloads=list(args.workloads),
        junit=args.junit,
        report=args.report,
        rows_out=args.rows,
        collector=shlex.split(args.collector) if args.collector else None,
        take_lock=not args.no_lock,
        keep=args.keep,
        suite=args.suite,
    )
    return run_verify(opts)


def _list(wanted: list[str]) -> int:
    from simulator import workloads

    try:
        chosen = workloads.select(wanted)
    except KeyError as exc:
        print(f"kaudit verify: {exc.args[0]}", file=sys.stderr)
        return 2
    width = max(len(w.name) for w in chosen)
    for w in chosen:
        print(f"{w.name:<{width}}  {'net ' if w.needs_network else '    '} {w.description}")
    return 0


def _inner_argv(args: argparse.Namespace) -> list[str]:
    from simulator.container import RESULTS_MOUNT

    argv = [
        "kaudit",
        "verify",
        "--junit",
        f"{RESULTS_MOUNT}/junit.xml",
        "--report",
        f"{RESULTS_MOUNT}/report.json",
        "--rows",
        f"{RESULTS_MOUNT}/rows.jsonl",
        "--suite",
        CONTAINER_SUITE,
    ]
    if args.workloads:
        argv += ["--workload", *args.workloads]
    if args.collector:
        argv += ["--collector", args.collector]
    return argv


def run_container(args: argparse.Namespace) -> int:
    """The same verify inside the container; host-side checks before and after."""
    from simulator import container
    from simulator.workloads.netns import list_ours

    err = sys.stderr
    try:
        from simulator import workloads

        workloads.select(args.workloads)  # fail on a bad name before any Docker work
    except KeyError as exc:
        print(f"kaudit verify: {exc.args[0]}", file=err)
        return 2
    try:
        cli = container.client()
        before = read_kernel_state()
        netns_before = set(list_ours())
        ours_before = _our_containers(cli)
        print("kaudit verify: locating (or building) kaudit's image...", file=err, flush=True)
        image = args.image or container.ensure_image(cli=cli, verbose=True)
        results = Path(tempfile.mkdtemp(prefix="kaudit-verify-container-"))
        options: dict[str, Any] = {"image": image, "timeout": args.timeout, "result_dir": results, "cli": cli}
        if args.privileged:
            options["privileged"] = True
        else:
            options["cap_add"] = (
                tuple(c.upper().removeprefix("CAP_") for c in args.cap)
                if args.cap
                else container.WORKLOAD_CAPS
            )
        print(
            f"kaudit verify: running in {image} ({'privileged' if args.privileged else 'caps ' + ','.join(options['cap_add'])})",
            file=err,
            flush=True,
        )
        # the host's lock: the container's /tmp is its own, so the host process holds it
        with container.live_lock(timeout=300.0) if not args.no_lock else contextlib.nullcontext():
            result = container.run(_inner_argv(args), **options)
    except container.ContainerError as exc:
        print(f"kaudit verify --container: {exc}", file=err)
        return 2
    except VerifyError as exc:
        print(f"kaudit verify --container: {exc}", file=err)
        return 2
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    if result.stderr.strip():
        err.write(result.stderr if result.stderr.endswith("\n") else result.stderr + "\n")

    host_problems: list[tuple[str, str | None]] = []
    try:
        after = read_kernel_state()
        diff = before.diff(after)
    except VerifyError as exc:
        diff = [str(exc)]
    host_problems.append(("host-kernel-audit-restored", "; ".join(diff) or None))
    # new namespaces whose maker is gone: a parallel test's live namespaces are not leftovers
    left_ns = sorted(n for n in set(list_ours()) - netns_before if _owner_gone(n))
    host_problems.append(
        ("host-network-namespaces-removed", ("left: " + ", ".join(left_ns)) if left_ns else None)
    )
    try:
        left_containers = sorted(_our_containers(cli) - ours_before)
    except Exception as exc:  # the engine went away after the run: say so, do not crash
        left_containers = [f"(cannot list containers: {exc})"]
    host_problems.append(
        ("host-containers-removed", ("left: " + ", ".join(left_containers)) if left_containers else None)
    )
    for name, msg in host_problems:
        print(f"{name}: {'FAIL: ' + msg if msg else 'ok'}")

    junit_in = result.result_dir / "junit.xml"
    if args.junit is not None:
        _merge_junit(junit_in, args.junit, host_problems, result.exit_code)
    for src, dst in (
        (result.result_dir / "report.json", args.report),
        (result.result_dir / "rows.jsonl", args.rows),
    ):
        if dst is not None and src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
    if args.report is not None and (result.result_dir / "report.json").exists():
        _annotate_report(args.report, host_problems, result.exit_code)
    if not args.keep:
        shutil.rmtree(result.result_dir, ignore_errors=True)
    else:
        print(f"kaudit verify: container results kept in {result.result_dir}", file=err)
    if result.exit_code not in (0, 1):
        print(f"kaudit verify --container: the verify in the container exited {result.exit_code}", file=err)
        return 2
    if result.exit_code != 0 or any(msg for _, msg in host_problems):
        return 1
    return 0


def _owner_gone(name: str) -> bool:
    import os

    from simulator.workloads.netns import NAME_RE

    m = NAME_RE.match(name)
    if not m:
        return True
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _our_containers(cli: Any) -> set[str]:
    from simulator.container import LABEL

    return {c.name for c in cli.containers.list(all=True, filters={"label": LABEL})}


def _merge_junit(src: Path, dst: Path, extra: list[tuple[str, str | None]], exit_code: int) -> None:
    """The container's JUnit plus the host-side checks as extra test cases."""
    if src.exists():
        tree = ET.parse(src)
        root = tree.getroot()
    else:
        root = ET.Element("testsuite", name=CONTAINER_SUITE, tests="0", failures="0", errors="0", time="0")
        tree = ET.ElementTree(root)
        extra = [
            *extra,
            ("container-verify-ran", f"no JUnit came back from the container (exit status {exit_code})"),
        ]
    for name, msg in extra:
        case = ET.SubElement(
            root, "testcase", classname=root.get("name", CONTAINER_SUITE), name=name, time="0"
        )
        if msg:
            fail = ET.SubElement(case, "failure", message=msg[:500])
            fail.text = msg
    root.set("tests", str(int(root.get("tests", "0")) + len(extra)))
    root.set("failures", str(int(root.get("failures", "0")) + sum(1 for _, m in extra if m)))
    ET.indent(tree)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tree.write(dst, encoding="utf-8", xml_declaration=True)


def _annotate_report(path: Path, extra: list[tuple[str, str | None]], exit_code: int) -> None:
    data = json.loads(path.read_text())
    data["container_exit_code"] = exit_code
    data["host_checks"] = {name: msg for name, msg in extra}
    data["ok"] = bool(data.get("ok")) and not any(msg for _, msg in extra)
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False))
