#!/usr/bin/env python3
"""A timeline per worker from a WEIR_TRACE file (matplotlib).

usage: python3 benchmarks/plot_trace.py TRACE.json OUT.svg [--from US] [--to US]

Reads the Chrome trace-event JSON weir writes (WEIR_TRACE=path, or
weir_trace_start/stop): one row per track (worker N, thread <stage>), a bar
per complete event ("X"), coloured by what ran: a term stage's activation
("stage: a * b"), a replica of a parallel stage ("replica: ..."), a keyed
shard ("shard i: ..."), any other job or fork-join root; steals and parks as
ticks above the row. Events nest (a stage activation inside the job that
runs it): the innermost one is drawn on top, thinner.
"""
import argparse
import json
import sys

import matplotlib

matplotlib.use("Agg")
matplotlib.rcParams["svg.hashsalt"] = "weir"
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

KINDS = [("stage: ", "#1f77b4", "term stage (dispatcher, source, sink)"),
         ("replica: ", "#2ca02c", "weir_parallel replica"),
         ("shard ", "#ff7f0e", "weir_keyed shard"),
         ("", "#c7c7c7", "job / fork-join root")]


def kind_of(name):
    for i, (prefix, _, _) in enumerate(KINDS):
        if name.startswith(prefix):
            return i
    return len(KINDS) - 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("out")
    ap.add_argument("--from", dest="t0", type=float, default=None, help="start, us")
    ap.add_argument("--to", dest="t1", type=float, default=None, help="end, us")
    a = ap.parse_args()
    with open(a.trace) as f:
        d = json.load(f)
    ev = d["traceEvents"] if isinstance(d, dict) else d
    names = {}
    for e in ev:
        if e.get("ph") == "M" and e.get("name") == "thread_name":
            names[e["tid"]] = e["args"]["name"]
    xs = [e for e in ev if e.get("ph") == "X"]
    if not xs:
        print("plot_trace.py: no complete events in", a.trace, file=sys.stderr)
        return 1
    t0 = a.t0 if a.t0 is not None else min(e["ts"] for e in xs)
    t1 = a.t1 if a.t1 is not None else max(e["ts"] + e["dur"] for e in xs)
    tids = sorted({e["tid"] for e in xs}, key=lambda t: names.get(t, str(t)))
    row = {t: i for i, t in enumerate(tids)}
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.7 * len(tids)))
    for e in sorted(xs, key=lambda e: -e["dur"]):  # outer first, inner on top
        if e["ts"] + e["dur"] < t0 or e["ts"] > t1:
            continue
        k = kind_of(e["name"])
        h = 0.7 if k == len(KINDS) - 1 else 0.5
        y = row[e["tid"]]
        ax.broken_barh([((e["ts"] - t0) / 1000.0, max(e["dur"], 0.05) / 1000.0)],
                       (y - h / 2, h), facecolors=KINDS[k][1], edgecolors="none")
    for e in ev:
        if e.get("ph") == "i" and e.get("tid") in row and t0 <= e["ts"] <= t1:
            mark = "v" if e["name"] == "steal" else "x"
            ax.plot([(e["ts"] - t0) / 1000.0], [row[e["tid"]] + 0.45], mark, color="#d62728",
                    markersize=4)
    ax.set_yticks(range(len(tids)))
    ax.set_yticklabels([names.get(t, "tid %d" % t) for t in tids])
    ax.set_xlabel("time since the first event shown (ms)")
    ax.set_xlim(0, (t1 - t0) / 1000.0)
    ax.invert_yaxis()
    handles = [Patch(color=c, label=l) for _, c, l in KINDS]
    handles.append(plt.Line2D([], [], marker="v", color="#d62728", linestyle="", label="steal"))
    handles.append(plt.Line2D([], [], marker="x", color="#d62728", linestyle="", label="park"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.35), ncol=3,
              fontsize=8)
    ax.set_title("weir trace: " + a.trace.split("/")[-1])
    fig.tight_layout()
    fig.savefig(a.out)
    print("plot_trace.py: wrote", a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
