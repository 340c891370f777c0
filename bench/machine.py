"""The machine a benchmark ran on: every figure is printed and saved next to it.

Figures without the machine are useless for comparison: a 2-core VM and a 32-core host differ
more than any optimisation does. So each report carries nproc, the kernel, the CPU model, the
memory, the Python and the load average at the start (other engineers' tests share the VM).
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["machine_info", "machine_line"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _mem_total_mib() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_info() -> dict:
    """nproc, kernel, CPU model, memory, Python, load average: JSON-ready."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "nproc": os.cpu_count(),
        "kernel": platform.release(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "mem_total_mib": _mem_total_mib(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "loadavg_at_start": load,
    }


def machine_line(info: dict | None = None) -> str:
    """One line for a report header."""
    m = info or machine_info()
    load = m.get("loadavg_at_start")
    return (
        f"machine: {m['nproc']} CPU ({m['cpu_model']}), kernel {m['kernel']} {m['machine']}, "
        f"{m['mem_total_mib']} MiB, Python {m['python']}"
        + (f", load {load[0]:.2f}" if load else "")
    )


def write_outputs(report: dict, json_path: str | None, plot_path: str | None, plot, name: str) -> int:
    """Print nothing; write the report as JSON and the plot where asked. 0, or 2 when the plot
    cannot be drawn (matplotlib missing), with the reason on stderr."""
    import json

    if json_path:
        with open(json_path, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1)
            f.write("\n")
    if plot_path:
        from bench.plot import PlotUnavailable

        try:
            plot(report, plot_path)
        except PlotUnavailable as exc:
            print(f"bench {name}: --plot: {exc}", file=sys.stderr)
            return 2
    return 0
