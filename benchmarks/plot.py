#!/usr/bin/env python3
"""Figures for docs/benchmarks.md from `weir-bench --json` output (matplotlib).

usage: python3 benchmarks/plot.py [--outdir docs] FILE.jsonl...

Every input line is a JSON object. Lines with "record": "context" (the first
line of each weir-bench --json invocation) give the machine and the command;
lines with a "record" key of another kind are ignored; every other line is a
result row, dispatched by its "bench" field:

  fib      -> fib-scaling.svg   speedup over serial vs workers, per variant
  fanout   -> fanout.svg        items/s vs branches N per mode; the line is
                                the median over the rows of one (mode, N)
                                (one row per invocation), the band min..max
  chain    -> chain-batch.svg   ns per item vs batch, weir against oneTBB
                                parallel_pipeline / flow::graph and the
                                direct loop
  farm     -> farm.svg          (rows at several worker counts) speedup (serial / variant) and efficiency
                                (pthreads limit / variant, same workers) vs
                                workers, one line per (variant, work_ns), by
                                the fields bench, variant, workers, work_ns,
                                items_per_s, speedup, efficiency
              farm-work.svg     (rows at several work_ns) speedup and
                                efficiency vs work per record at the
                                largest worker count

A figure is written only when rows for it exist. Under each figure: the
commands that produced its data and the machine (CPU, PUs allowed,
compiler, weir commit), from the context records.
"""
import argparse
import json
import os
import statistics
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "weir"  # reproducible SVG ids
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import ScalarFormatter  # noqa: E402

COLORS = {"weir": "#1f77b4", "pool": "#1f77b4", "omp": "#ff7f0e", "tbb": "#2ca02c",
          "tbb-pipeline": "#2ca02c", "tbb-graph": "#9467bd", "threads": "#d62728",
          "hybrid": "#2ca02c", "pool-nolock": "#9467bd", "direct": "#7f7f7f",
          "serial": "#7f7f7f"}


def load(paths):
    """Rows of each bench, and the context records of the invocations that
    produced them (keyed by bench)."""
    rows, contexts = {}, {}
    inv = 0
    for path in paths:
        ctx = None
        inv += 1
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                r = json.loads(line)
                if r.get("record") == "context":
                    ctx = r
                    inv += 1
                    continue
                if "record" in r or "bench" not in r:
                    continue
                bench = r["bench"]
                r["_inv"] = inv  # which invocation (file, context record) it came from
                rows.setdefault(bench, []).append(r)
                if ctx is not None:
                    contexts.setdefault(bench, [])
                    if ctx not in contexts[bench]:
                        contexts[bench].append(ctx)
    return rows, contexts


def caption(fig, ctxs, note=""):
    """The commands and the machine, under the axes."""
    cmds = []
    for c in ctxs:
        if c["command"] not in cmds:
            cmds.append(c["command"])
    lines = []
    if len(cmds) > 4:
        lines.append("$ " + cmds[0])
        lines.append("  ... %d invocations in all, the last: $ %s" % (len(cmds), cmds[-1]))
    else:
        lines += ["$ " + c for c in cmds]
    if ctxs:
        c = ctxs[0]
        lines.append("%s, %s PUs allowed; %s; weir %s (%s); %s" % (
            c.get("cpu_model", "?"), c.get("pus_allowed", "?"), c.get("compiler", "?"),
            c.get("weir_version", "?"), c.get("git_commit", "?"), c.get("date", "?")[:10]))
    if note:
        lines.append(note)
    text = "\n".join(textwrap.fill(l, 130, subsequent_indent="    ") for l in lines)
    n = text.count("\n") + 1
    fig.subplots_adjust(bottom=0.12 + 0.035 * n)
    fig.text(0.01, 0.01, text, fontsize=7, family="monospace", va="bottom")


def save(fig, outdir, name):
    path = os.path.join(outdir, name)
    fig.savefig(path, metadata={"Date": None})
    plt.close(fig)
    print("plot.py: wrote", path)


def plot_fib(rows, ctxs, outdir):
    # A variant's speedup is over the serial row of its own invocation;
    # invocations without one (--variants weir) are left out.
    serial = {r["_inv"]: r["median_ns"] for r in rows if r["variant"] == "serial"}
    base = {}
    series = {}
    for r in rows:
        if r["variant"] == "serial" or r["_inv"] not in serial:
            continue
        series.setdefault(r["variant"], []).append((r["workers"], serial[r["_inv"]] / r["median_ns"]))
        base[r["n"]] = True
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    wmax = 1
    for v, pts in sorted(series.items()):
        pts.sort()
        ax.plot([w for w, _ in pts], [s for _, s in pts], "o-", label=v, color=COLORS.get(v))
        wmax = max(wmax, max(w for w, _ in pts))
    ax.plot([1, wmax], [1, wmax], ":", color="#aaaaaa", label="ideal")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("workers (threads)")
    ax.set_ylabel("speedup over serial fib (serial median / median)")
    ax.set_title("fib(%s): fork-join scaling" % ",".join(str(n) for n in sorted(base)))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    caption(fig, ctxs)
    save(fig, outdir, "fib-scaling.svg")


def plot_fanout(rows, ctxs, outdir):
    groups = {}
    for r in rows:
        groups.setdefault((r["variant"], r["terms"]), []).append(r["items_per_s"] / 1e6)
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for v in sorted({k[0] for k in groups}):
        ns = sorted(n for (vv, n) in groups if vv == v)
        med = [statistics.median(groups[(v, n)]) for n in ns]
        lo = [min(groups[(v, n)]) for n in ns]
        hi = [max(groups[(v, n)]) for n in ns]
        ax.plot(ns, med, "o-", label=v, color=COLORS.get(v))
        ax.fill_between(ns, lo, hi, alpha=0.2, color=COLORS.get(v))
    reps = max(len(g) for g in groups.values())
    ax.set_xscale("log")
    ax.set_xlabel("branches N (source broadcast to N multiply -> sink branches)")
    ax.set_ylabel("throughput (million records delivered / s)")
    ax.set_title("fan-out: throughput by execution mode")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    caption(fig, ctxs, "line: median of %d invocations (each the median of its runs); "
            "band: min..max of the invocations" % reps)
    save(fig, outdir, "fanout.svg")


def plot_chain(rows, ctxs, outdir):
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    groups = {}
    direct = []
    stages = {r.get("stages") for r in rows}
    for r in rows:
        if r["variant"] == "direct":
            direct.append(r["ns_per_item"])
            continue
        groups.setdefault((r["variant"], r["batch"]), []).append(r["ns_per_item"])
    # one point per (variant, batch): the median over the invocations
    for v in sorted({k[0] for k in groups}):
        bs = sorted(b for (vv, b) in groups if vv == v)
        ys = [statistics.median(groups[(v, b)]) for b in bs]
        ax.plot(bs, ys, "o-", label=v, color=COLORS.get(v))
    if direct:
        ax.axhline(statistics.median(direct), ls="--", color=COLORS["direct"],
                   label="direct loop (1 thread)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.set_xlabel("batch (records per activation / per token)")
    ax.set_ylabel("time per record (ns, median of runs)")
    ax.set_title("chain of %s stages: per-record cost by batch, weir vs oneTBB" %
                 ",".join(str(s) for s in sorted(x for x in stages if x is not None)))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    caption(fig, ctxs)
    save(fig, outdir, "chain-batch.svg")


def plot_farm(rows, ctxs, outdir):
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.6))
    series = {}
    for r in rows:
        key = r["variant"] + (" (%g ns/item)" % r["work_ns"] if "work_ns" in r else "")
        series.setdefault(key, []).append(r)
    wmax = 1
    for key, rs in sorted(series.items()):
        rs.sort(key=lambda r: r["workers"])
        ws = [r["workers"] for r in rs]
        wmax = max(wmax, max(ws))
        a1.plot(ws, [r.get("speedup", float("nan")) for r in rs], "o-", label=key)
        if rs[0]["variant"] not in ("serial", "limit"):
            a2.plot(ws, [r.get("efficiency", float("nan")) for r in rs], "o-", label=key)
    a1.plot([1, wmax], [1, wmax], ":", color="#aaaaaa", label="ideal")
    a1.set_xlabel("workers")
    a1.set_ylabel("speedup over serial (serial time / time)")
    a2.set_xlabel("workers")
    a2.set_ylabel("efficiency (pthreads limit time / time, same workers)")
    a2.set_ylim(bottom=0)
    for a in (a1, a2):
        a.grid(True, alpha=0.3)
    a1.legend(fontsize=7)
    fig.suptitle("farm: a data-parallel stage")
    caption(fig, ctxs)
    save(fig, outdir, "farm.svg")


def plot_farm_work(rows, ctxs, outdir):
    """Speedup and efficiency against the work per record, at the largest
    worker count of the rows (the issue's figure: serial, weir, tbb, limit)."""
    wmax = max(r["workers"] for r in rows)
    rs = [r for r in rows if r["workers"] == wmax or r["variant"] == "serial"]
    series = {}
    for r in rs:
        series.setdefault(r["variant"], []).append(r)
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.6))
    for v, xs in sorted(series.items()):
        xs.sort(key=lambda r: r["work_ns"])
        ns = [r["work_ns"] for r in xs]
        style = "o:" if v in ("serial", "limit") else "o-"
        a1.plot(ns, [r.get("speedup", float("nan")) for r in xs], style, label=v)
        if v not in ("serial", "limit"):
            a2.plot(ns, [r.get("efficiency", float("nan")) for r in xs], "o-", label=v)
    for a in (a1, a2):
        a.set_xscale("log")
        a.set_xlabel("work per record (ns of dependent arithmetic)")
        a.grid(True, which="both", alpha=0.3)
    a1.set_ylabel("speedup over serial at %d workers" % wmax)
    a2.set_ylabel("efficiency (pthreads limit time / time)")
    a2.set_ylim(0, 1.3)
    a1.legend(fontsize=7)
    a2.legend(fontsize=7)
    fig.suptitle("farm: speedup against work per record, %d workers" % wmax)
    caption(fig, ctxs)
    save(fig, outdir, "farm-work.svg")


def plot_farm_any(rows, ctxs, outdir):
    if len({r["workers"] for r in rows if r["variant"] != "serial"}) > 1:
        plot_farm(rows, ctxs, outdir)
    if len({r.get("work_ns") for r in rows}) > 1:
        plot_farm_work(rows, ctxs, outdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--outdir", default="docs")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    rows, ctxs = load(a.files)
    os.makedirs(a.outdir, exist_ok=True)
    plots = {"fib": plot_fib, "fanout": plot_fanout, "chain": plot_chain, "farm": plot_farm_any}
    done = 0
    for bench, fn in plots.items():
        if rows.get(bench):
            fn(rows[bench], ctxs.get(bench, []), a.outdir)
            done += 1
    if done == 0:
        print("plot.py: no rows of fib, fanout, chain or farm in", " ".join(a.files),
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
