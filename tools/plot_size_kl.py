#!/usr/bin/env python3
"""Size vs KL (log scale) per method, as an SVG with no plotting library.

    python3 tools/plot_size_kl.py ROWS.json [ROWS.json ...] -o docs/size-vs-kl.svg [--title TEXT]

ROWS.json: the per-text rows `tools/bench_calibration.py --json` writes (text, method, level,
top1, ppl_ratio, kl, ratio). Each method is drawn at its mean over texts: x = mean KL (log10),
y = size vs fp16; the levels of one method are joined by a line and labelled L1..L4.
"""
from __future__ import annotations

import argparse
import json
import math

W, H, L, R, T, B = 720, 440, 70, 200, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--title", default="kvstore levels: size vs KL (mean over held-out texts)")
    a = ap.parse_args(argv)
    rows = [r for f in a.rows for r in json.load(open(f))]
    groups: dict[str, dict] = {}
    for r in rows:
        g = groups.setdefault(r["method"], {}).setdefault(r["level"], [])
        g.append(r)
    series = []
    for method, levels in groups.items():
        pts = []
        for level, rs in sorted(levels.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            kl = sum(r["kl"] for r in rs) / len(rs)
            size = sum(r["ratio"] for r in rs) / len(rs)
            pts.append((max(kl, 1e-7), size, f"L{level}" if level else ""))
        series.append((method, pts))
    kls = [p[0] for _, pts in series for p in pts]
    sizes = [p[1] for _, pts in series for p in pts]
    x0, x1 = math.floor(math.log10(min(kls))), math.ceil(math.log10(max(kls)))
    y1 = math.ceil(max(sizes) / 2) * 2
    sx = lambda kl: L + (math.log10(kl) - x0) / max(1e-9, x1 - x0) * (W - L - R)
    sy = lambda s: H - B - s / y1 * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{a.title}</text>']
    for e in range(x0, x1 + 1):
        x = sx(10 ** e)
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 16}" text-anchor="middle">1e{e}</text>')
    for s in range(0, y1 + 1, 2):
        y = sy(s)
        out.append(f'<line x1="{L}" y1="{y:.1f}" x2="{W - R}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 8}" y="{y + 4:.1f}" text-anchor="end">{s}x</text>')
    out.append(f'<rect x="{L}" y="{T}" width="{W - L - R}" height="{H - T - B}" fill="none" stroke="#444"/>')
    out.append(f'<text x="{(L + W - R) / 2}" y="{H - 12}" text-anchor="middle">mean KL(exact || decoded), nats (log scale)</text>')
    out.append(f'<text x="16" y="{(T + H - B) / 2}" transform="rotate(-90 16 {(T + H - B) / 2})" text-anchor="middle">size vs fp16</text>')
    for i, (method, pts) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        if len(pts) > 1:
            path = " ".join(f"{sx(k):.1f},{sy(s):.1f}" for k, s, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        for k, s, lab in pts:
            out.append(f'<circle cx="{sx(k):.1f}" cy="{sy(s):.1f}" r="4" fill="{c}"/>')
            if lab:
                out.append(f'<text x="{sx(k) + 6:.1f}" y="{sy(s) - 6:.1f}" fill="{c}">{lab}</text>')
        ly = T + 14 + 18 * i
        out.append(f'<circle cx="{W - R + 16}" cy="{ly - 4}" r="4" fill="{c}"/>')
        out.append(f'<text x="{W - R + 26}" y="{ly}">{method}</text>')
    out.append("</svg>")
    with open(a.output, "w") as f:
        f.write("\n".join(out) + "\n")
    print(f"{a.output}: {len(series)} methods, {len(kls)} points")


if __name__ == "__main__":
    main()
