#!/usr/bin/python3
"""Latency against offered load from bench/latency_curve.sh's directory:
one bench/compare.sh results.json per rate (DIR/rate-R/results.json).
Prints a markdown table, one row per rate: the rate each server delivered,
p50 and p99 of each (medians over rounds), the median of the per-round p99
ratios geecached/memcached with its range, and requests per server
CPU-second's ratio. With --plot, draws DIR/curve.svg: p50 and p99 against
offered load for both servers (log latency axis, whiskers min..max over
rounds). Needs Debian's python3-matplotlib for --plot only.

    bench/plot_curve.py DIR [DIR...] [--plot] [-o chart.svg]

Several directories (e.g. a low-rate and a high-rate sweep) make one table
and one chart; the chart goes to the first one's curve.svg by default.
"""
import argparse
import glob
import json
import os
import statistics
import sys

SERVERS = (("geecached", "#1f77b4"), ("memcached", "#ff7f0e"))


def load(dirs):
    rows = []
    paths = [p for d in dirs for p in glob.glob(os.path.join(d, "rate-*", "results.json"))]
    for path in paths:
        with open(path) as f:
            res = json.load(f)
        runs = res["runs"]
        if not runs or runs[0]["bench"].get("mode") != "open":
            raise SystemExit("plot_curve.py: %s is not an open-loop run" % path)
        rows.append((runs[0]["bench"]["rate"], res))
    if not rows:
        raise SystemExit("plot_curve.py: no rate-*/results.json under %s" % " ".join(dirs))
    return sorted(rows, key=lambda x: x[0])


def per_server(res, sv, key):
    return [r["bench"][key] for r in res["runs"] if r["server"] == sv]


def rounds(rows):
    n = sorted({res["meta"]["rounds"] for _, res in rows})
    return "%d round%s" % (n[0], "" if n == [1] else "s") if len(n) == 1 else "%d-%d rounds" % (
        n[0], n[-1])


def table(rows):
    meta = rows[0][1]["meta"]
    print("geecached on %s, -t %s, preset %s, %s of %s s per rate, %s UTC"
          % (meta["backend"], meta["threads"], meta["preset"], rounds(rows),
             meta["seconds"], meta["date"].replace("T", " ").rstrip("Z")))
    print()
    print("| offered req/s | geecached req/s | memcached req/s | geecached p50 / p99 us "
          "| memcached p50 / p99 us | p99 ratio (median, range) | req/CPU-s ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate, res in rows:
        med = res["summary"]["median"]
        ratios = [p["p99_us_ratio"] for p in res["summary"]["per_round"]]
        g, m = med["geecached"], med["memcached"]
        print("| %d | %d | %d | %.0f / %.0f | %.0f / %.0f | **%.2f** (%.2f-%.2f) | %.2f |" % (
            rate, g["rps"], m["rps"], g["p50_us"], g["p99_us"], m["p50_us"], m["p99_us"],
            statistics.median(ratios), min(ratios), max(ratios),
            res["summary"]["median_ratio"]["req_per_cpu_s"]))


def plot(rows, out):
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "geecache"
    matplotlib.rcParams["svg.fonttype"] = "none"
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    meta = rows[0][1]["meta"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    rates = [r / 1e3 for r, _ in rows]
    for sv, color in SERVERS:
        for key, style, name in (("p99_us", "-o", "p99"), ("p50_us", "--s", "p50")):
            med, lo, hi = [], [], []
            for _, res in rows:
                vals = per_server(res, sv, key)
                m = statistics.median(vals)
                med.append(m)
                lo.append(m - min(vals))
                hi.append(max(vals) - m)
            ax.errorbar(rates, med, yerr=[lo, hi], fmt=style, color=color, capsize=3,
                        label="%s %s" % (sv, name), alpha=1.0 if name == "p99" else 0.7)
    ax.set_yscale("log")
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: "%g" % v)
    ax.yaxis.set_major_formatter(plain)
    ax.set_xticks(rates)  # the rates offered, and no others
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.tick_params(axis="x", labelsize=7)
    ax.set_xlabel("offered load, thousand req/s (open loop, log)")
    ax.set_ylabel("latency, us (log; median of rounds, min..max)")
    ax.set_title("workload %s, geecached on %s, -t %s, %s of %s s per rate, %s"
                 % (meta["preset"], meta["backend"], meta["threads"], rounds(rows),
                    meta["seconds"], meta["date"][:10]), fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    if out.endswith(".png"):
        fig.savefig(out, dpi=110)  # for a quick look; the docs use SVG
    else:
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dir", nargs="+")
    ap.add_argument("--plot", action="store_true")
    ap.add_argument("-o", "--out", default=None, help="SVG path (default: the first DIR's curve.svg)")
    a = ap.parse_args()
    rows = load(a.dir)
    table(rows)
    if a.plot:
        print()
        print(plot(rows, a.out or os.path.join(a.dir[0], "curve.svg")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
