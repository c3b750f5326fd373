"""The suite's outputs: per-method summaries, the text table, the JSON file and the PNG plot.

Everything here works on the plain dict the driver builds (``results["workloads"][W]
["methods"][M]["runs"]``), so a saved JSON can be re-plotted or re-tabulated later:

    python benchmarks/_suite_report.py RESULTS.json [--png OUT.png]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The reference methods of the ratios.
SERIAL, FLOOR = "h5py", "cp"


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(entry: dict[str, Any], nbytes: int) -> dict[str, Any] | None:
    """Median / min / max of wall, inner time and throughput over the timed rounds.

    Extrapolated figures (a row loop timed on a prefix) replace the measured ones.
    Returns None when no timed round succeeded.
    """
    runs = [r for r in entry["runs"] if not r["warmup"] and r["returncode"] == 0]
    if not runs:
        return None
    walls = [r.get("extrapolated_wall", r["wall"]) for r in runs]
    inners = [r.get("extrapolated_inner", r["inner"]) for r in runs if r["inner"] is not None]
    ranks = max(len(r["rss_kib"]) for r in runs)  # 0 when unknown (cp without GNU time)
    rss = [max(r["rss_kib"][i] for r in runs if len(r["rss_kib"]) > i) / 1024 for i in range(ranks)]
    summary: dict[str, Any] = {
        "rounds": len(runs),
        "wall_seconds": _spread(walls),
        "inner_seconds": _spread(inners) if inners else None,
        "launch_seconds": statistics.median(
            [r["wall"] - r["inner"] for r in runs if r["inner"] is not None]
        )
        if inners
        else None,
        "throughput_gb_per_s": {
            "median": nbytes / statistics.median(walls) / 1e9,
            "min": nbytes / max(walls) / 1e9,
            "max": nbytes / min(walls) / 1e9,
        },
        "peak_rss_mib_per_rank": rss,
        "extrapolated": any("extrapolated_wall" in r for r in runs),
    }
    if summary["extrapolated"]:
        summary["rows_done"] = runs[0]["rows_done"]
    return summary


def add_ratios(workload: dict[str, Any]) -> None:
    """Speed of every method relative to serial h5py and to cp (median wall times)."""
    methods = workload["methods"]

    def median_wall(key: str) -> float | None:
        summary = methods.get(key, {}).get("summary")
        return None if summary is None else summary["wall_seconds"]["median"]

    base, floor = median_wall(SERIAL), median_wall(FLOOR)
    for entry in methods.values():
        summary = entry.get("summary")
        if summary is None:
            continue
        wall = summary["wall_seconds"]["median"]
        summary["speed_vs_h5py"] = None if base is None else base / wall
        summary["speed_vs_cp"] = None if floor is None else floor / wall


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _gbs(value: float) -> str:
    """Throughput with 3 significant digits (tiny CI inputs give tiny numbers)."""
    return f"{value:.3g}" if value < 1 else f"{value:.2f}"


def _rss(values: list[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values) if values else "-"


def table(results: dict[str, Any]) -> str:
    """The text table: one section per workload, one line per method."""
    spec = results["input"]
    gib = spec["nbytes"] / 2**30
    lines = [
        f"h5par benchmark suite: {gib:.2f} GiB float64 {tuple(spec['shape'])} {spec['layout']}, "
        f"{results['config']['rounds']} timed round(s) interleaved "
        f"(+{results['config']['warmup']} warm-up), {results['environment']['cpus']} CPU(s)",
        "  wall = launch to exit of the command; inner = the method's own timer (h5par: its "
        "report's 'seconds'); launch = wall - inner",
        "  GB/s = input bytes / wall; xh5py, xcp = speed relative to serial h5py and to cp "
        "(median walls; >1 = faster)",
        "",
    ]
    widths = (-22, -24, -24, 7, 6, 6, 6, -17, -5)  # negative: left-aligned

    def row(cells: Sequence[str]) -> str:
        return "  " + " ".join(
            f"{c:<{-w}}" if w < 0 else f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)
        )

    titles = ("method", "wall s median [min-max]", "GB/s median [min-max]", "inner s")
    header = row((*titles, "launch", "xh5py", "xcp", "peak RSS MiB/rank", "check"))
    for name, workload in results["workloads"].items():
        lines += [f"{name}: {workload['description']}", header]
        for entry in workload["methods"].values():
            label = entry["label"]
            summary = entry.get("summary")
            check = entry.get("verification", {}).get("ok")
            if summary is None:
                lines.append(f"  {label:<22} {entry['status']}: {entry.get('reason', '')}")
                continue
            wall, thr = summary["wall_seconds"], summary["throughput_gb_per_s"]
            inner = summary["inner_seconds"]
            cells = (
                label + ("*" if summary["extrapolated"] else ""),
                f"{wall['median']:.2f} [{wall['min']:.2f}-{wall['max']:.2f}]",
                f"{_gbs(thr['median'])} [{_gbs(thr['min'])}-{_gbs(thr['max'])}]",
                _fmt(None if inner is None else inner["median"]),
                _fmt(summary["launch_seconds"]),
                _fmt(summary.get("speed_vs_h5py")),
                _fmt(summary.get("speed_vs_cp"), 3),
                _rss(summary["peak_rss_mib_per_rank"]),
                "ok" if check else "WRONG" if check is False else "-",
            )
            lines.append(row(cells).rstrip())
        lines.append("")
    lines += [f"note: {note}" for note in results["notes"]]
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> None:
    """Throughput per method per workload (min-max error bars) and the two speed ratios."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = list(results["workloads"])
    spec = results["input"]
    nbytes = spec["nbytes"]
    methods: list[str] = []
    labels: dict[str, str] = {}
    for workload in results["workloads"].values():
        for key, entry in workload["methods"].items():
            if entry.get("summary") is not None and key not in methods:
                methods.append(key)
                labels[key] = entry["label"]
    fig, axes = plt.subplots(3, 1, figsize=(12, 12), sharex=True)
    width = 0.8 / max(1, len(methods))
    colors = plt.get_cmap("tab20")
    for m, key in enumerate(methods):
        xs, thr, low, high, vs_h5py, vs_cp, hatch, inner = [], [], [], [], [], [], [], []
        for w, name in enumerate(workloads):
            summary = results["workloads"][name]["methods"].get(key, {}).get("summary")
            if summary is None:
                continue
            t = summary["throughput_gb_per_s"]
            xs.append(w + (m - (len(methods) - 1) / 2) * width)
            thr.append(t["median"])
            low.append(t["median"] - t["min"])
            high.append(t["max"] - t["median"])
            vs_h5py.append(summary.get("speed_vs_h5py") or 0.0)
            vs_cp.append(summary.get("speed_vs_cp") or 0.0)
            hatch.append(summary["extrapolated"])
            own = summary["inner_seconds"]
            inner.append(nbytes / own["median"] / 1e9 if own else float("nan"))
        style = {"width": width, "color": colors(m % 20), "label": labels[key]}
        bars = axes[0].bar(xs, thr, yerr=[low, high], capsize=3, **style)
        axes[0].plot(xs, inner, "k_", markersize=10, label="_")
        bars_h5py = axes[1].bar(xs, vs_h5py, **style)
        bars_cp = axes[2].bar(xs, vs_cp, **style)
        for group in (bars, bars_h5py, bars_cp):
            for bar, extrapolated in zip(group, hatch, strict=True):
                if extrapolated:
                    bar.set_hatch("//")
    axes[0].set_ylabel(
        "throughput GB/s (input bytes / wall)\nmedian, bars: min-max\n"
        "black dash: the method's own timer"
    )
    axes[1].set_ylabel("speed relative to\nserial h5py (median)")
    axes[2].set_ylabel("speed relative to cp\n(file-system floor)")
    for ax in axes:
        ax.set_yscale("log")
        ax.grid(axis="y", which="both", alpha=0.3)
    for ax in axes[1:]:
        ax.axhline(1.0, color="black", linewidth=0.8)
    axes[2].set_xticks(range(len(workloads)))
    axes[2].set_xticklabels(
        [f"{w}\n{results['workloads'][w]['description']}" for w in workloads], fontsize=9
    )
    axes[0].legend(fontsize=8, ncol=3, loc="upper right")
    fig.suptitle(
        f"h5par suite: {spec['nbytes'] / 2**30:.2f} GiB float64 {tuple(spec['shape'])} "
        f"{spec['layout']}, {results['config']['rounds']} interleaved rounds, "
        f"{results['environment']['cpus']} CPUs (input in page cache; hatched: extrapolated)",
        fontsize=10,
    )
    skipped = sorted(
        {
            f"{entry['label']}: {entry['status']} ({entry.get('reason') or ''})"
            for workload in results["workloads"].values()
            for entry in workload["methods"].values()
            if entry.get("summary") is None
        }
    )
    if skipped:
        fig.text(0.01, 0.005, "not shown: " + "; ".join(skipped), fontsize=8)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Re-print the table (and optionally re-plot) from a saved results JSON."""
    parser = argparse.ArgumentParser(description="table / plot from a suite results JSON")
    parser.add_argument("results", type=Path)
    parser.add_argument("--png", type=Path)
    args = parser.parse_args(argv)
    results = json.loads(args.results.read_text())
    print(table(results))
    if args.png:
        plot(results, args.png)
    return 0


if __name__ == "__main__":
    sys.exit(main())
