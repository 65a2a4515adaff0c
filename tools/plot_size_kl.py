#!/usr/bin/env python3
"""Size vs KL (log scale) per method, as an SVG with no plotting library.

    python3 tools/plot_size_kl.py ROWS.json [ROWS.json ...] -o docs/size-vs-kl.svg [--title TEXT]
    python3 tools/plot_size_kl.py BENCH.json [BENCH.json ...] -o 'docs/size-vs-kl-{model}.svg'

ROWS.json: the per-text rows `tools/bench_calibration.py --json` writes (text, method, level,
top1, ppl_ratio, kl, ratio). Each method is drawn at its mean over texts: x = mean KL (log10),
y = size vs fp16; the levels of one method are joined by a line and labelled L1..L4.

BENCH.json: what `tools/bench_llama_quality.py --json` writes (its `summary`). One SVG per model
(`{model}` in -o is replaced by a file-name form of the model id): kvstore's levels 1-4 joined by a
line (one line per --profile the files were run with), int8/token, q8_0, q4_0 and the CacheGen
points labelled (a thin bar up to CacheGen's size without its per-chunk tables), and the +-1-ulp
noise floor as a dashed vertical line. Several files of one model and profile are averaged.
"""
from __future__ import annotations

import argparse
import json
import math
import re
from pathlib import Path

W, H, L, R, T, B = 820, 440, 70, 300, 40, 50
COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf", "#e377c2", "#7f7f7f",
          "#bcbd22"]
GREY = "#555"


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg(series: list[tuple[str, list[tuple[float, float, str]], dict]], title: str,
        floor: float | None = None) -> str:
    """series: (legend name, [(kl, size, point label)], style); style may hold "line" (join the
    points), "upper" (per point, a size the bar reaches). floor: a KL drawn as a vertical line."""
    kls = [p[0] for _, pts, _ in series for p in pts] + ([floor] if floor else [])
    sizes = [p[1] for _, pts, _ in series for p in pts] + [u for _, _, st in series for u in st.get("upper", [])]
    x0, x1 = math.floor(math.log10(min(kls))), math.ceil(math.log10(max(kls)))
    x1 = max(x1, x0 + 1)
    y1 = math.ceil(max(sizes) / 2) * 2
    sx = lambda kl: L + (math.log10(kl) - x0) / (x1 - x0) * (W - L - R)
    sy = lambda s: H - B - s / y1 * (H - T - B)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{L}" y="22" font-size="14">{esc(title)}</text>']
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
    if floor:
        x = sx(floor)
        out.append(f'<line x1="{x:.1f}" y1="{T}" x2="{x:.1f}" y2="{H - B}" stroke="{GREY}" stroke-dasharray="5,4"/>')
        out.append(f'<text x="{x + 4:.1f}" y="{T + 14}" fill="{GREY}">±1-ulp floor</text>')
    placed: list[tuple[float, float, float]] = []  # labels drawn so far: x, baseline y, width

    def label_at(x: float, y: float, text: str) -> float:
        """y for a label at (x, y) that overlaps none drawn so far (moved down a line at a time)."""
        w = 7 * len(text)
        while any(abs(y - py) < 13 and x < px + pw and px < x + w for px, py, pw in placed):
            y += 13
        placed.append((x, y, w))
        return y

    for i, (method, pts, style) in enumerate(series):
        c = COLORS[i % len(COLORS)]
        if style.get("line") and len(pts) > 1:
            path = " ".join(f"{sx(k):.1f},{sy(s):.1f}" for k, s, _ in pts)
            out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="1.5"/>')
        for j, (k, s, lab) in enumerate(pts):
            if style.get("upper"):
                u = style["upper"][j]
                out.append(f'<line x1="{sx(k):.1f}" y1="{sy(s):.1f}" x2="{sx(k):.1f}" y2="{sy(u):.1f}" stroke="{c}" stroke-width="1" opacity="0.6"/>')
            out.append(f'<circle cx="{sx(k):.1f}" cy="{sy(s):.1f}" r="4" fill="{c}"/>')
            if lab:
                out.append(f'<text x="{sx(k) + 6:.1f}" y="{label_at(sx(k) + 6, sy(s) - 6, lab):.1f}" fill="{c}">{esc(lab)}</text>')
        ly = T + 14 + 18 * i
        out.append(f'<circle cx="{W - R + 16}" cy="{ly - 4}" r="4" fill="{c}"/>')
        out.append(f'<text x="{W - R + 26}" y="{ly}">{esc(method)}</text>')
    if any(st.get("upper") for _, _, st in series):
        ly = T + 14 + 18 * len(series) + 8
        for k, line in enumerate(["CacheGen: numpy re-implementation,", "ideal arithmetic-coded size; bar up to",
                                  "its size without per-chunk CDF tables"]):
            out.append(f'<text x="{W - R + 10}" y="{ly + 15 * k}" fill="{GREY}" font-size="11">{line}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def rows_series(rows: list[dict]) -> list:
    """bench_calibration.py rows -> one series per method, at its mean over texts."""
    groups: dict[str, dict] = {}
    for r in rows:
        groups.setdefault(r["method"], {}).setdefault(r["level"], []).append(r)
    series = []
    for method, levels in groups.items():
        pts = []
        for level, rs in sorted(levels.items(), key=lambda kv: (kv[0] is None, kv[0] or 0)):
            kl = sum(r["kl"] for r in rs) / len(rs)
            size = sum(r["ratio"] for r in rs) / len(rs)
            pts.append((max(kl, 1e-7), size, f"L{level}" if level else ""))
        series.append((method, pts, {"line": True}))
    return series


def mean(v):
    return sum(v) / len(v)


def bench_series(runs: list[dict]) -> tuple[list, float]:
    """bench_llama_quality.py JSONs of one model -> (series, mean floor KL). kvstore's levels: one
    line per profile; every other summary entry (int8/token, q8_0, q4_0, cachegen*) one point."""
    series = []
    by_profile: dict[str, list[dict]] = {}
    for r in runs:
        by_profile.setdefault(r["args"].get("profile") or "", []).append(r["summary"]["levels"])
    for profile, lvls in by_profile.items():
        pts = []
        for level in ("1", "2", "3", "4"):
            got = [x[level] for x in lvls if level in x]
            if got:
                pts.append((max(mean([g["kl"] for g in got]), 1e-9), mean([g["compression"] for g in got]), f"L{level}"))
        name = f"kvstore ({Path(profile).stem} profile)" if profile else "kvstore (default profile)"
        series.append((name, pts, {"line": True}))
    names = list(dict.fromkeys(k for r in runs for k in r["summary"] if k not in ("floor", "levels")))
    for b in names:
        got = [r["summary"][b] for r in runs if b in r["summary"]]
        style = {}
        if "compression_shared_tables" in got[0]:
            style["upper"] = [mean([g["compression_shared_tables"] for g in got])]
        series.append((b, [(max(mean([g["kl"] for g in got]), 1e-9), mean([g["compression"] for g in got]), b)], style))
    return series, mean([r["summary"]["floor"]["kl"] for r in runs])


def file_name(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model.split("@")[0].split("/")[-1]).strip("-") or "model"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("rows", nargs="+")
    ap.add_argument("-o", "--output", required=True, help="SVG path; for bench files, {model} = the model")
    ap.add_argument("--title", help="title (default: per input kind; {model} = the model)")
    a = ap.parse_args(argv)
    loaded = [json.load(open(f)) for f in a.rows]
    if all(isinstance(x, dict) and "summary" in x for x in loaded):
        models: dict[str, list[dict]] = {}
        for x in loaded:
            models.setdefault(x["model"], []).append(x)
        if len(models) > 1 and "{model}" not in a.output:
            ap.error(f"{len(models)} models ({', '.join(models)}): put {{model}} in -o for one SVG each")
        for model, runs in models.items():
            series, floor = bench_series(runs)
            texts = sorted({t for r in runs for t in r["args"]["texts"].split(",")})
            title = (a.title or "{model}: size vs KL in llama.cpp ({n} text{s})").format(model=file_name(model), n=len(texts), s="" if len(texts) == 1 else "s")
            path = a.output.format(model=file_name(model))
            Path(path).write_text(svg(series, title, floor))
            print(f"{path}: {len(series)} series, floor KL {floor:.2e}")
        return
    if any(isinstance(x, dict) for x in loaded):
        ap.error("mix of bench_llama_quality JSON and bench_calibration rows")
    series = rows_series([r for x in loaded for r in x])
    Path(a.output).write_text(svg(series, a.title or "kvstore levels: size vs KL (mean over held-out texts)"))
    print(f"{a.output}: {len(series)} methods, {sum(len(p) for _, p, _ in series)} points")


if __name__ == "__main__":
    main()
