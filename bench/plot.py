"""PNG plots of the benchmark reports (matplotlib, the ``bench`` extra; Agg backend, no display).

The plots are drawn from the JSON reports alone, so ``python -m bench.plot REPORT.json OUT.png``
redraws a saved run without running it again.
"""

from __future__ import annotations

import json
import sys

__all__ = ["PlotUnavailable", "plot_replay", "plot_report", "plot_storm"]

_KAUDIT = "#1f77b4"
_PEER = "#7f7f7f"
_AUDITD = "#d62728"
_COLORS = {"kaudit": _KAUDIT, "kaudit-noreceiver": "#ff7f0e", "auditd": _AUDITD}


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed (pip install 'kaudit[bench]')."""


def _plt():
    try:
        import matplotlib
    except ImportError:
        raise PlotUnavailable("matplotlib is not installed (pip install 'kaudit[bench]' or pip install matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _machine(report: dict) -> str:
    m = report.get("machine", {})
    return f"{m.get('nproc')} CPU {m.get('cpu_model', '')}, kernel {m.get('kernel', '')}"


def plot_replay(report: dict, path: str) -> None:
    """Records/s and peak RSS per tool, one bar per corpus size."""
    plt = _plt()
    sizes = report["sizes"]
    tools = [r["label"] for r in sizes[0]["results"]]
    keys = [r["tool"] for r in sizes[0]["results"]]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    width = 0.8 / max(1, len(sizes))
    for i, block in enumerate(sizes):
        rates = [(r["records_per_s"] or 0) / 1000 for r in block["results"]]
        rss = [(r["maxrss_kb"] or 0) / 1024 for r in block["results"]]
        xs = [j + (i - (len(sizes) - 1) / 2) * width for j in range(len(tools))]
        colors = [_KAUDIT if k.startswith("kaudit") else _PEER for k in keys]
        alpha = 1.0 if i == 0 else 0.55
        ax1.bar(xs, rates, width, color=colors, alpha=alpha, label=f"{block['size']:,} records")
        ax2.bar(xs, rss, width, color=colors, alpha=alpha, label=f"{block['size']:,} records")
        for x, v in zip(xs, rates, strict=True):
            if v:
                ax1.text(x, v, f"{v:.0f}k", ha="center", va="bottom", fontsize=7)
        for x, v in zip(xs, rss, strict=True):
            if v:
                ax2.text(x, v, f"{v:.0f}", ha="center", va="bottom", fontsize=7)
    for ax, title in ((ax1, "thousand records/s (wall, start to exit)"), (ax2, "peak RSS, MB")):
        ax.set_xticks(range(len(tools)))
        ax.set_xticklabels(tools, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"kaudit bench replay — {_machine(report)}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_storm(report: dict, path: str) -> None:
    """Per storm: the kernel's backlog (top) and its lost counter (bottom) over time, per collector."""
    plt = _plt()
    runs = report["runs"]
    storms = list(dict.fromkeys(r["storm"] for r in runs))
    duration = report.get("settings", {}).get("duration_s", 10)
    fig, axes = plt.subplots(2, len(storms), figsize=(5.5 * len(storms), 7), squeeze=False, sharex="col")
    for col, storm in enumerate(storms):
        top, bottom = axes[0][col], axes[1][col]
        for r in runs:
            if r["storm"] != storm or r.get("error"):
                continue
            series = [s for s in (r.get("kernel_series") or []) if s[0] <= duration + 3]
            xs = [s[0] for s in series]
            color = _COLORS.get(r["collector"], _PEER)
            cpu = r.get("cpu_ms_per_1k_records")
            label = (
                f"{r['collector']}: lost {r.get('kernel_lost', 0):,}, "
                f"{(r.get('records_per_s') or 0) / 1000:.0f}k rec/s, "
                f"{'-' if cpu is None else f'{cpu:.1f}'} ms CPU/1k rec"
            )
            top.plot(xs, [s[1] for s in series], color=color, lw=1.1, label=label)
            bottom.plot(xs, [s[2] for s in series], color=color, lw=1.5, label=r["collector"])
        limit = next((r.get("backlog_limit") for r in runs if r["storm"] == storm), None)
        if limit:
            top.axhline(limit, color="k", ls=":", lw=0.8)
        top.set_title(f"{storm} storm ({duration:g} s)")
        top.set_ylabel("kernel backlog (records)")
        top.legend(fontsize=7, loc="upper right")
        bottom.set_ylabel("kernel lost (records, cumulative)")
        bottom.set_xlabel("seconds since the storm started")
        bottom.legend(fontsize=7, loc="upper left")
    s = report.get("settings", {})
    fig.suptitle(
        f"kaudit bench storm — backlog limit {s.get('backlog_limit')}, wait time {s.get('backlog_wait_time')} — "
        f"{_machine(report)}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_report(report: dict, path: str) -> None:
    """Whichever plot the report's ``benchmark`` calls for."""
    kind = report.get("benchmark")
    if kind == "replay":
        plot_replay(report, path)
    elif kind == "storm":
        plot_storm(report, path)
    else:
        raise ValueError(f"not a bench report (benchmark={kind!r})")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python -m bench.plot REPORT.json OUT.png")
    with open(sys.argv[1], encoding="utf-8") as f:
        plot_report(json.load(f), sys.argv[2])
