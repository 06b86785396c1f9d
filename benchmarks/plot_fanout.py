#!/usr/bin/env python3
"""Plot `weir-bench fanout --json` output as an SVG (no dependencies).

usage: weir-bench fanout --terms 20,40,...,2000 --mode pool,threads --json > f.json
       python3 benchmarks/plot_fanout.py f.json > docs/fanout.svg

x: branches N (log scale); y: items/s (linear). One line per mode.
"""
import json
import math
import sys

rows = [json.loads(l) for f in sys.argv[1:] for l in open(f) if l.startswith("{")]
rows = [r for r in rows if r.get("bench") == "fanout"]
series = {}
for r in rows:
    series.setdefault(r["variant"], []).append((r["terms"], r["items_per_s"] / 1e6))
for v in series.values():
    v.sort()

W, H, L, R, T, B = 720, 420, 70, 150, 40, 60
xs = [n for v in series.values() for n, _ in v]
ymax = max(y for v in series.values() for _, y in v) * 1.1
x0, x1 = math.log10(min(xs)), math.log10(max(xs))


def px(n):
    return L + (math.log10(n) - x0) / (x1 - x0) * (W - L - R)


def py(y):
    return H - B - y / ymax * (H - T - B)


colors = {"pool": "#1f77b4", "threads": "#d62728", "hybrid": "#2ca02c", "pool-nolock": "#9467bd"}
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="22" text-anchor="middle" font-size="14">fan-out: source broadcast to N branches (multiply → one locked collector), 2 cores</text>']
for k in range(0, 6):
    y = ymax * k / 5
    out.append(f'<line x1="{L}" x2="{W-R}" y1="{py(y):.1f}" y2="{py(y):.1f}" stroke="#ddd"/>')
    out.append(f'<text x="{L-8}" y="{py(y)+4:.1f}" text-anchor="end">{y:.0f}</text>')
for n in sorted(set(xs)):
    out.append(f'<line x1="{px(n):.1f}" x2="{px(n):.1f}" y1="{H-B}" y2="{H-B+5}" stroke="black"/>')
    out.append(f'<text x="{px(n):.1f}" y="{H-B+18}" text-anchor="middle" font-size="10">{n}</text>')
out.append(f'<line x1="{L}" x2="{W-R}" y1="{H-B}" y2="{H-B}" stroke="black"/>')
out.append(f'<line x1="{L}" x2="{L}" y1="{T}" y2="{H-B}" stroke="black"/>')
out.append(f'<text x="{(L+W-R)/2}" y="{H-15}" text-anchor="middle">branches N (log scale)</text>')
out.append(f'<text x="18" y="{(T+H-B)/2}" text-anchor="middle" transform="rotate(-90 18 {(T+H-B)/2})">million items / s</text>')
for i, (name, pts) in enumerate(sorted(series.items())):
    c = colors.get(name, "#555")
    path = " ".join(f"{px(n):.1f},{py(y):.1f}" for n, y in pts)
    out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
    for n, y in pts:
        out.append(f'<circle cx="{px(n):.1f}" cy="{py(y):.1f}" r="3" fill="{c}"/>')
    out.append(f'<line x1="{W-R+15}" x2="{W-R+35}" y1="{T+20+i*20}" y2="{T+20+i*20}" stroke="{c}" stroke-width="2"/>')
    out.append(f'<text x="{W-R+40}" y="{T+24+i*20}">{name}</text>')
out.append("</svg>")
print("\n".join(out))
