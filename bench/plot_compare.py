#!/usr/bin/python3
"""Draws bench/compare.sh results as one SVG: throughput per round for both
servers (left) and latency percentiles p50..p99.9 side by side (right,
median over rounds, whiskers from the fastest to the slowest round, log
scale).

    bench/plot_compare.py OUT_DIR/results.json [-o chart.svg|.png] [--title T]

Needs Debian's python3-matplotlib (run with /usr/bin/python3). The SVG has
no timestamp or random ids, so the same results give the same file.
"""
import argparse
import json
import statistics
import sys

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "geecache"
matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

SERVERS = (("geecached", "#1f77b4"), ("memcached", "#ff7f0e"))
PCTS = (("p50_us", "p50"), ("p95_us", "p95"), ("p99_us", "p99"), ("p999_us", "p99.9"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("-o", "--out", default=None, help="SVG path (default: beside results)")
    ap.add_argument("--title", default=None)
    a = ap.parse_args()
    res = json.load(open(a.results))
    meta, runs = res["meta"], res["runs"]
    out = a.out or a.results.rsplit(".", 1)[0] + ".svg"
    title = a.title or "workload %s%s, geecached on %s, %d round%s of %s s, %s" % (
        meta["preset"], " (smoke)" if meta.get("smoke") else "", meta["backend"],
        meta["rounds"], "" if meta["rounds"] == 1 else "s", meta["seconds"], meta["date"][:10])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    fig.suptitle(title, fontsize=10)

    rounds = sorted({r["round"] for r in runs})
    width = 0.38
    for i, (sv, color) in enumerate(SERVERS):
        ys = []
        for n in rounds:
            rr = [r for r in runs if r["server"] == sv and r["round"] == n]
            ys.append(rr[0]["bench"].get("rps", 0) / 1e3 if rr else 0)
        xs = [n + (i - 0.5) * width for n in rounds]
        ax1.bar(xs, ys, width, label=sv, color=color)
    ax1.set_xticks(rounds)
    ax1.set_xlabel("round (the first server alternates)")
    ax1.set_ylabel("throughput, thousand req/s")
    ax1.set_title("throughput per round", fontsize=10)
    ax1.legend(fontsize=8)
    ax1.grid(axis="y", alpha=0.3)

    for i, (sv, color) in enumerate(SERVERS):
        med, lo, hi = [], [], []
        for key, _ in PCTS:
            vals = [r["bench"][key] for r in runs if r["server"] == sv and key in r["bench"]]
            m = statistics.median(vals) if vals else 0
            med.append(m)
            lo.append(m - min(vals) if vals else 0)
            hi.append(max(vals) - m if vals else 0)
        xs = [j + (i - 0.5) * width for j in range(len(PCTS))]
        ax2.bar(xs, med, width, yerr=[lo, hi], capsize=3, label=sv, color=color)
    ax2.set_xticks(range(len(PCTS)))
    ax2.set_xticklabels([name for _, name in PCTS])
    ax2.set_yscale("log")
    plain = FuncFormatter(lambda v, _: "%g" % v)
    ax2.yaxis.set_major_formatter(plain)
    ax2.yaxis.set_minor_formatter(plain)
    ax2.tick_params(axis="y", which="minor", labelsize=7)
    ax2.set_ylabel("latency, us (log)")
    ax2.set_title("latency percentiles (median of rounds, min..max)", fontsize=10)
    ax2.legend(fontsize=8)
    ax2.grid(axis="y", alpha=0.3, which="both")

    fig.tight_layout()
    if out.endswith(".png"):
        fig.savefig(out, dpi=110)  # for a quick look; the docs use SVG
    else:
        fig.savefig(out, format="svg", metadata={"Date": None})
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
