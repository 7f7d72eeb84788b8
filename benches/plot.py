#!/usr/bin/env python3
"""Dependency-free SVG line charts for the benchmark cost curves (issue 14).

Standard library only (Python >= 3.8; written for 3.11): nothing to install on CI or
a fresh machine. One chart per invocation.

Usage
-----
    python3 benches/plot.py --csv FILE --out FILE.svg --title TITLE \\
        --x-label "subscribers" --y-label "deliveries/s" \\
        [--y2-label "p99 (ms)"] [--subtitle TEXT] [--log-x] [--log-y] [--log-y2] \\
        [--ref "VALUE=LABEL"]... [--png]

CSV format (first row is the header; column order free, extra columns ignored)
-----------------------------------------------------------------------------
    series,x,y[,y2]
    gateway,100,310000,2.1
    gateway,1000,1950000,4.0
    bare,100,320000,
    bare,1000,2900000,3.2

- ``series``: the line's name (legend entry); lines are drawn in order of first
  appearance, points sorted by x.
- ``x``: a number (required on every row).
- ``y``: plotted on the left axis (solid lines, filled markers).
- ``y2``: optional column, plotted on the right axis (dashed lines, open markers);
  needs ``--y2-label``.
- An empty ``y`` or ``y2`` cell skips that point (the line joins its neighbours).
- Numbers are plain (``1500``, ``1.5e6``); ``nan``/``inf`` are rejected.

Options
-------
--title, --x-label, --y-label are required; put the unit in the label
("RSS per connection (KiB)"). --log-x / --log-y / --log-y2 use a base-10 scale with
ticks at 1, 2, 5 x 10^k (labelled at the decades when three or more fit, else at
1/2/5 too); linear axes get ticks at 1-2-5 steps, and a linear y axis of non-negative
data starts at 0. Tick values are written compactly: 500, 1k, 1.5M, 0.25.

--ref "VALUE=LABEL" (repeatable) draws a horizontal reference line on the left axis,
e.g. --ref "4=target ≤ 4 KiB"; prefix the value with ``y2:`` for the right axis
(--ref "y2:100=p99 limit 100 ms"). VALUE may carry a k/M/G suffix (--ref "2M=...").

--png also writes FILE.png next to the SVG with ``rsvg-convert`` (Debian package
librsvg2-bin) when it is on PATH; without it the script says so and still exits 0
(the SVG is written either way).

The chart is 900x520 px on white, with the legend outside the plot area on the right.

Exit status: 0 on success, 2 on bad input (missing file or columns, empty file,
non-numeric value, non-positive value on a log axis, bad --ref), 1 if rsvg-convert
itself fails.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

WIDTH, HEIGHT = 900, 520
FONT = "DejaVu Sans, Arial, Helvetica, sans-serif"
TITLE_SIZE, SUBTITLE_SIZE, LABEL_SIZE, TICK_SIZE, LEGEND_SIZE = 18, 13, 14, 12, 13

# Okabe-Ito colour-blind-safe palette (yellow left out: too light on white).
COLOURS = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000"]
MARKERS = ["circle", "square", "triangle", "diamond", "triangle-down", "cross", "plus"]
MARKER_R = 4.5
Y2_DASH = "7 4"
REF_DASH = "10 3 2 3"


class InputError(Exception):
    """Bad input: reported on stderr, exit status 2."""


# --------------------------------------------------------------------------- numbers


def fmt_num(v: float) -> str:
    """Compact tick label: 0, 0.25, 500, 1k, 1.5k, 10k, 1M, 2.5G."""
    if v == 0 or abs(v) < 1e-12:
        return "0"
    a = abs(v)
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale * (1 - 1e-9):
            return _plain(v / scale) + suffix
    return _plain(v)


def _plain(v: float) -> str:
    s = f"{v:.4g}"
    if "e" in s:  # very small values: keep them readable without exponent noise
        s = f"{v:.6f}".rstrip("0").rstrip(".")
    return s


def parse_number(text: str, what: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{what}: {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"{what}: {text!r} is not a finite number")
    return v


def parse_suffixed(text: str, what: str) -> float:
    t = text.strip()
    mult = {"k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9}.get(t[-1:], None)
    if mult is not None:
        return parse_number(t[:-1], what) * mult
    return parse_number(t, what)


def nice_step(raw: float) -> float:
    """Smallest 1, 2 or 5 x 10^k that is >= raw."""
    e = math.floor(math.log10(raw))
    f = raw / 10.0**e
    for m in (1, 2, 5, 10):
        if f <= m * (1 + 1e-9):
            return m * 10.0**e
    return 10.0 ** (e + 1)


def linear_ticks(lo: float, hi: float, target: int = 6) -> list[float]:
    """Multiples of a 1-2-5 step within [lo, hi]: the count nearest target, at most 8
    (ties go to the larger step)."""
    small = nice_step((hi - lo) / (target + 2))
    candidates = [small, nice_step(small * 1.5), nice_step(nice_step(small * 1.5) * 1.5)]

    def count(step: float) -> int:
        return math.floor(hi / step + 1e-9) - math.ceil(lo / step - 1e-9) + 1

    fitting = [s for s in candidates if count(s) <= 8] or [candidates[-1]]
    step = min(fitting, key=lambda s: (abs(count(s) - target), -s))
    digits = max(0, 1 - math.floor(math.log10(step)))
    first = math.ceil(lo / step - 1e-9)
    ticks = []
    k = first
    while k * step <= hi + step * 1e-9:
        ticks.append(round(k * step, digits) + 0.0)  # + 0.0 turns -0.0 into 0.0
        k += 1
    return ticks


def log_ticks(lo: float, hi: float) -> tuple[list[float], list[float]]:
    """(labelled, unlabelled) ticks at 1/2/5 x 10^k within [lo, hi]."""
    eps = 1e-9
    all_ticks = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = float(f"{m}e{e}")
            if lo * (1 - eps) <= v <= hi * (1 + eps):
                all_ticks.append(v)
    decades = [v for v in all_ticks if f"{v:e}".startswith("1.")]
    if len(decades) >= 3:
        return decades, [v for v in all_ticks if v not in decades]
    if len(all_ticks) >= 2:
        return all_ticks, []
    # Less than one 1-2-5 step in range: linear ticks placed on the log scale.
    return [v for v in linear_ticks(lo, hi, 4) if v > 0], []


# --------------------------------------------------------------------------- scales


@dataclass
class Scale:
    lo: float
    hi: float
    log: bool
    p0: float  # pixel of lo
    p1: float  # pixel of hi

    def __call__(self, v: float) -> float:
        if self.log:
            t = (math.log10(v) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return self.p0 + t * (self.p1 - self.p0)

    def ticks(self) -> tuple[list[float], list[float]]:
        if self.log:
            return log_ticks(self.lo, self.hi)
        return linear_ticks(self.lo, self.hi), []


def domain(values: list[float], log: bool, pad: float, from_zero: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        a, b = math.log10(lo), math.log10(hi)
        if b - a < 1e-12:
            a, b = a - 0.3, b + 0.3
        p = (b - a) * pad
        return 10.0 ** (a - p), 10.0 ** (b + p)
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        d = abs(hi) * 0.5 or 1.0
        lo, hi = lo - d, hi + d
    p = (hi - lo) * pad
    if from_zero and min(values) >= 0:
        return 0.0, hi + p
    nlo = lo - p
    if min(values) >= 0 and nlo < 0:
        nlo = 0.0
    return nlo, hi + p


# --------------------------------------------------------------------------- input


@dataclass
class Series:
    name: str
    y: list[tuple[float, float]] = field(default_factory=list)
    y2: list[tuple[float, float]] = field(default_factory=list)


def read_csv(path: str) -> tuple[list[Series], bool]:
    """Returns the series and whether the CSV has a y2 column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text ({e.reason})") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path} is empty (expected a header row: series,x,y[,y2])")
    header = [c.strip().lower() for c in rows[0]]
    missing = [c for c in ("series", "x", "y") if c not in header]
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(missing)} in header {rows[0]!r} "
            "(expected series,x,y[,y2])"
        )
    col = {name: header.index(name) for name in ("series", "x", "y", "y2") if name in header}
    has_y2 = "y2" in col
    by_name: dict[str, Series] = {}
    for lineno, row in enumerate(rows[1:], start=2):
        def cell(name: str) -> str:
            i = col.get(name)
            return row[i].strip() if i is not None and i < len(row) else ""

        where = f"{path} line {lineno}"
        name = cell("series")
        x_text = cell("x")
        if not x_text:
            raise InputError(f"{where}: empty x")
        x = parse_number(x_text, f"{where}, column x")
        s = by_name.setdefault(name, Series(name))
        if cell("y"):
            s.y.append((x, parse_number(cell("y"), f"{where}, column y")))
        if cell("y2"):
            s.y2.append((x, parse_number(cell("y2"), f"{where}, column y2")))
    if not by_name:
        raise InputError(f"{path}: header only, no data rows")
    series = list(by_name.values())
    for s in series:
        s.y.sort(key=lambda p: p[0])
        s.y2.sort(key=lambda p: p[0])
    if not any(s.y or s.y2 for s in series):
        raise InputError(f"{path}: every y and y2 cell is empty, nothing to plot")
    return series, has_y2


@dataclass
class Ref:
    value: float
    label: str
    right: bool


def parse_ref(spec: str) -> Ref:
    if "=" not in spec:
        raise InputError(f"--ref {spec!r}: expected VALUE=LABEL, e.g. --ref \"4=target ≤ 4 KiB\"")
    value, label = spec.split("=", 1)
    value = value.strip()
    right = value.lower().startswith("y2:")
    if right:
        value = value[3:]
    return Ref(parse_suffixed(value, f"--ref {spec!r}"), label.strip(), right)


# --------------------------------------------------------------------------- drawing


def text_width(s: str, size: float) -> float:
    """Rough rendered width in DejaVu Sans (a little generous)."""
    w = 0.0
    for ch in s:
        if ch in "il.,:;'|!":
            w += 0.32
        elif ch in " ()[]/-fjtr":
            w += 0.42
        elif ch.isupper() or ch in "mw%@":
            w += 0.78
        else:
            w += 0.63
    return w * size


def fit(s: str, size: float, max_w: float) -> str:
    if text_width(s, size) <= max_w:
        return s
    while s and text_width(s + "…", size) > max_w:
        s = s[:-1]
    return s.rstrip() + "…"


def f1(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def marker(kind: str, x: float, y: float, colour: str, filled: bool, cls: str) -> str:
    r = MARKER_R
    fill = colour if filled else "white"
    stroke = f'stroke="{colour}" stroke-width="1.6"'
    common = f'class="{cls}" fill="{fill}" {stroke}'
    if kind == "circle":
        return f'<circle {common} cx="{f1(x)}" cy="{f1(y)}" r="{f1(r)}"/>'
    if kind == "square":
        s = r * 0.9
        return f'<rect {common} x="{f1(x - s)}" y="{f1(y - s)}" width="{f1(2 * s)}" height="{f1(2 * s)}"/>'
    if kind in ("triangle", "triangle-down", "diamond"):
        if kind == "triangle":
            pts = [(x, y - r * 1.25), (x + r * 1.15, y + r * 0.8), (x - r * 1.15, y + r * 0.8)]
        elif kind == "triangle-down":
            pts = [(x, y + r * 1.25), (x + r * 1.15, y - r * 0.8), (x - r * 1.15, y - r * 0.8)]
        else:
            pts = [(x, y - r * 1.3), (x + r * 1.1, y), (x, y + r * 1.3), (x - r * 1.1, y)]
        return f'<polygon {common} points="{" ".join(f"{f1(a)},{f1(b)}" for a, b in pts)}"/>'
    # cross / plus: stroke-only shapes; an open variant gets a thinner stroke.
    d = r * 1.1
    if kind == "cross":
        path = f"M{f1(x - d)},{f1(y - d)}L{f1(x + d)},{f1(y + d)}M{f1(x - d)},{f1(y + d)}L{f1(x + d)},{f1(y - d)}"
    else:
        d *= 1.2
        path = f"M{f1(x - d)},{f1(y)}L{f1(x + d)},{f1(y)}M{f1(x)},{f1(y - d)}L{f1(x)},{f1(y + d)}"
    width = "2.6" if filled else "1.5"
    return f'<path class="{cls}" fill="none" stroke="{colour}" stroke-width="{width}" d="{path}"/>'


def series_marker(i: int) -> str:
    """Marker shape of series i; past len(COLOURS) series the shape shifts, so no pair repeats."""
    return MARKERS[(i + i // len(COLOURS)) % len(MARKERS)]


def text(x: float, y: float, s: str, size: float, anchor: str = "start", cls: str = "",
         extra: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    return (f'<text{c} x="{f1(x)}" y="{f1(y)}" font-size="{size}" text-anchor="{anchor}"'
            f'{(" " + extra) if extra else ""}>{escape(s)}</text>')


@dataclass
class Chart:
    title: str
    x_label: str
    y_label: str
    y2_label: str | None = None
    subtitle: str | None = None
    log_x: bool = False
    log_y: bool = False
    log_y2: bool = False
    refs: list[Ref] = field(default_factory=list)


def render(chart: Chart, series: list[Series]) -> str:
    has_y2 = any(s.y2 for s in series)
    xs = [p[0] for s in series for p in s.y + s.y2]
    ys = [p[1] for s in series for p in s.y] + [r.value for r in chart.refs if not r.right]
    y2s = [p[1] for s in series for p in s.y2] + [r.value for r in chart.refs if r.right]
    for vals, on, name in ((xs, chart.log_x, "x"), (ys, chart.log_y, "y"), (y2s, chart.log_y2, "y2")):
        if on and any(v <= 0 for v in vals):
            bad = min(vals)
            raise InputError(f"--log-{name}: {name} values must be > 0 on a log axis (found {fmt_num(bad)})")
    if not ys:
        ys = [0.0, 1.0]  # only y2 data: the left axis still needs a range

    # ---- layout: vertical
    title_y = 30
    plot_top = 58 if not chart.subtitle else 74
    x_label_y = HEIGHT - 16
    plot_bottom = x_label_y - 42

    # ---- scales (vertical first, so the y tick labels can be measured)
    ylo, yhi = domain(ys, chart.log_y, 0.05, from_zero=True)
    yscale = Scale(ylo, yhi, chart.log_y, plot_bottom, plot_top)
    y_major, y_minor = yscale.ticks()
    y_tick_w = max(text_width(fmt_num(v), TICK_SIZE) for v in y_major)
    y2scale = None
    y2_major: list[float] = []
    y2_minor: list[float] = []
    y2_tick_w = 0.0
    if has_y2:
        lo2, hi2 = domain(y2s, chart.log_y2, 0.05, from_zero=True)
        y2scale = Scale(lo2, hi2, chart.log_y2, plot_bottom, plot_top)
        y2_major, y2_minor = y2scale.ticks()
        y2_tick_w = max(text_width(fmt_num(v), TICK_SIZE) for v in y2_major)

    # ---- layout: horizontal. | ylabel | yticks | plot | y2ticks | y2label | legend |
    y_label_x = 20
    plot_left = y_label_x + 12 + y_tick_w + 14
    y2_label = chart.y2_label or "y2"
    key_entries = []
    if has_y2:
        key_entries = [(f"left: {chart.y_label}", False), (f"right: {y2_label}", True)]
    legend_max_w = 210.0
    legend_text_w = max(
        [text_width(s.name or "(no name)", LEGEND_SIZE) for s in series]
        + [text_width(k, LEGEND_SIZE) for k, _ in key_entries]
    )
    swatch_w = 34
    legend_w = swatch_w + 8 + min(legend_text_w, legend_max_w)
    legend_x = WIDTH - 16 - legend_w
    if has_y2:
        plot_right = legend_x - 26 - 16 - y2_tick_w - 14
    else:
        plot_right = legend_x - 24
    xlo, xhi = domain(xs, chart.log_x, 0.04, from_zero=False)
    xscale = Scale(xlo, xhi, chart.log_x, plot_left, plot_right)
    x_major, x_minor = xscale.ticks()

    out: list[str] = []
    w = out.append
    w('<?xml version="1.0" encoding="UTF-8"?>')
    w(f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
      f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="{FONT}" fill="#222">')
    w(f"<title>{escape(chart.title)}</title>")
    w(f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>')
    w(text(plot_left, title_y, chart.title, TITLE_SIZE, cls="title", extra='font-weight="bold"'))
    if chart.subtitle:
        w(text(plot_left, title_y + 21, chart.subtitle, SUBTITLE_SIZE, cls="subtitle", extra='fill="#555"'))

    pw = f"{f1(plot_left)}"
    # ---- grid
    w('<g class="grid" stroke-width="1">')
    for v in x_minor:
        px = f1(xscale(v))
        w(f'<line x1="{px}" y1="{f1(plot_top)}" x2="{px}" y2="{f1(plot_bottom)}" stroke="#f0f0f0"/>')
    for v in y_minor:
        py = f1(yscale(v))
        w(f'<line x1="{pw}" y1="{py}" x2="{f1(plot_right)}" y2="{py}" stroke="#f0f0f0"/>')
    for v in x_major:
        px = f1(xscale(v))
        w(f'<line x1="{px}" y1="{f1(plot_top)}" x2="{px}" y2="{f1(plot_bottom)}" stroke="#dedede"/>')
    for v in y_major:
        py = f1(yscale(v))
        w(f'<line x1="{pw}" y1="{py}" x2="{f1(plot_right)}" y2="{py}" stroke="#dedede"/>')
    w("</g>")

    # ---- reference lines (under the data)
    for r in chart.refs:
        sc = y2scale if r.right else yscale
        if sc is None:
            raise InputError(f"--ref y2:{fmt_num(r.value)}: the CSV has no y2 values")
        py = sc(r.value)
        w(f'<line class="ref-line" x1="{pw}" y1="{f1(py)}" x2="{f1(plot_right)}" y2="{f1(py)}" '
          f'stroke="#666" stroke-width="1.5" stroke-dasharray="{REF_DASH}"/>')

    # ---- data
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        kind = series_marker(i)
        for pts, sc, right in ((s.y, yscale, False), (s.y2, y2scale, True)):
            if not pts or sc is None:
                continue
            coords = " ".join(f"{f1(xscale(x))},{f1(sc(y))}" for x, y in pts)
            dash = f' stroke-dasharray="{Y2_DASH}"' if right else ""
            axis = "y2" if right else "y"
            w(f'<polyline class="series-line" data-series="{escape(s.name, {chr(34): "&quot;"})}" '
              f'data-axis="{axis}" points="{coords}" fill="none" stroke="{colour}" '
              f'stroke-width="2" stroke-linejoin="round" stroke-linecap="round"{dash}/>')
        for pts, sc, right in ((s.y, yscale, False), (s.y2, y2scale, True)):
            if not pts or sc is None:
                continue
            for x, y in pts:
                w(marker(kind, xscale(x), sc(y), colour, not right, "marker"))

    # ---- reference line labels (over the data, with a white halo)
    for r in chart.refs:
        if not r.label:
            continue
        py = (y2scale if r.right else yscale)(r.value)
        label_y = py - 6 if py - 6 - TICK_SIZE > plot_top else py + TICK_SIZE + 4
        w(text(plot_right - 6, label_y, fit(r.label, TICK_SIZE, plot_right - plot_left - 12),
               TICK_SIZE, "end", "ref-label",
               'fill="#444" stroke="white" stroke-width="4" paint-order="stroke" stroke-linejoin="round"'))

    # ---- frame and axes
    w(f'<rect x="{pw}" y="{f1(plot_top)}" width="{f1(plot_right - plot_left)}" '
      f'height="{f1(plot_bottom - plot_top)}" fill="none" stroke="#444" stroke-width="1"/>')
    w('<g class="ticks" stroke="#444" stroke-width="1">')
    for v in x_major:
        px = f1(xscale(v))
        w(f'<line x1="{px}" y1="{f1(plot_bottom)}" x2="{px}" y2="{f1(plot_bottom + 6)}"/>')
    for v in x_minor:
        px = f1(xscale(v))
        w(f'<line x1="{px}" y1="{f1(plot_bottom)}" x2="{px}" y2="{f1(plot_bottom + 3)}"/>')
    for v in y_major:
        py = f1(yscale(v))
        w(f'<line x1="{pw}" y1="{py}" x2="{f1(plot_left - 6)}" y2="{py}"/>')
    for v in y_minor:
        py = f1(yscale(v))
        w(f'<line x1="{pw}" y1="{py}" x2="{f1(plot_left - 3)}" y2="{py}"/>')
    if y2scale is not None:
        for v in y2_major:
            py = f1(y2scale(v))
            w(f'<line x1="{f1(plot_right)}" y1="{py}" x2="{f1(plot_right + 6)}" y2="{py}"/>')
        for v in y2_minor:
            py = f1(y2scale(v))
            w(f'<line x1="{f1(plot_right)}" y1="{py}" x2="{f1(plot_right + 3)}" y2="{py}"/>')
    w("</g>")

    for v in x_major:
        w(text(xscale(v), plot_bottom + 8 + TICK_SIZE, fmt_num(v), TICK_SIZE, "middle", "xtick"))
    for v in y_major:
        w(text(plot_left - 9, yscale(v) + TICK_SIZE * 0.36, fmt_num(v), TICK_SIZE, "end", "ytick"))
    if y2scale is not None:
        for v in y2_major:
            w(text(plot_right + 9, y2scale(v) + TICK_SIZE * 0.36, fmt_num(v), TICK_SIZE, "start", "y2tick"))

    # ---- axis labels
    mid_x = (plot_left + plot_right) / 2
    mid_y = (plot_top + plot_bottom) / 2
    w(text(mid_x, x_label_y, fit(chart.x_label, LABEL_SIZE, plot_right - plot_left), LABEL_SIZE,
           "middle", "x-label"))
    y_lab = fit(chart.y_label, LABEL_SIZE, plot_bottom - plot_top)
    w(text(y_label_x, mid_y, y_lab, LABEL_SIZE, "middle", "y-label",
           f'dominant-baseline="central" transform="rotate(-90 {f1(y_label_x)} {f1(mid_y)})"'))
    if has_y2:
        lx = plot_right + 14 + y2_tick_w + 14
        y2_lab = fit(y2_label, LABEL_SIZE, plot_bottom - plot_top)
        w(text(lx, mid_y, y2_lab, LABEL_SIZE, "middle", "y2-label",
               f'dominant-baseline="central" transform="rotate(90 {f1(lx)} {f1(mid_y)})"'))

    # ---- legend (outside the plot, on the right)
    row_h = 22
    ly = plot_top + 8
    w('<g class="legend">')
    for i, s in enumerate(series):
        colour = COLOURS[i % len(COLOURS)]
        kind = series_marker(i)
        cy = ly + i * row_h
        w(f'<line x1="{f1(legend_x)}" y1="{f1(cy)}" x2="{f1(legend_x + swatch_w)}" y2="{f1(cy)}" '
          f'stroke="{colour}" stroke-width="2"/>')
        w(marker(kind, legend_x + swatch_w / 2, cy, colour, True, "legend-marker"))
        w(text(legend_x + swatch_w + 8, cy + LEGEND_SIZE * 0.36, fit(s.name or "(no name)", LEGEND_SIZE, legend_max_w),
               LEGEND_SIZE, "start", "legend-entry"))
    if key_entries:
        ky = ly + len(series) * row_h + 14
        w(f'<line x1="{f1(legend_x)}" y1="{f1(ky - 12)}" x2="{f1(legend_x + legend_w)}" y2="{f1(ky - 12)}" '
          f'stroke="#ccc" stroke-width="1"/>')
        for j, (label, right) in enumerate(key_entries):
            cy = ky + 6 + j * row_h
            dash = f' stroke-dasharray="{Y2_DASH}"' if right else ""
            w(f'<line x1="{f1(legend_x)}" y1="{f1(cy)}" x2="{f1(legend_x + swatch_w)}" y2="{f1(cy)}" '
              f'stroke="#555" stroke-width="2"{dash}/>')
            w(marker("circle", legend_x + swatch_w / 2, cy, "#555", not right, "legend-key-marker"))
            w(text(legend_x + swatch_w + 8, cy + LEGEND_SIZE * 0.36, fit(label, LEGEND_SIZE, legend_max_w),
                   LEGEND_SIZE, "start", "legend-key"))
    w("</g>")
    w("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Render a benchmark CSV (series,x,y[,y2]) as an SVG line chart.",
        epilog='Example: python3 benches/plot.py --csv fanout.csv --out fanout.svg '
               '--title "Fan-out vs subscribers" --x-label subscribers --y-label "deliveries/s" '
               '--y2-label "p99 (ms)" --log-x --ref "y2:100=p99 limit 100 ms"',
    )
    p.add_argument("--csv", required=True, help="input CSV with header series,x,y[,y2]")
    p.add_argument("--out", required=True, help="output SVG path")
    p.add_argument("--title", required=True)
    p.add_argument("--subtitle", help="smaller grey line under the title (machine, date, ...)")
    p.add_argument("--x-label", required=True, help="x axis label, with unit")
    p.add_argument("--y-label", required=True, help="left y axis label, with unit")
    p.add_argument("--y2-label", help="right y axis label, with unit (for the y2 column)")
    p.add_argument("--log-x", action="store_true", help="base-10 log x axis")
    p.add_argument("--log-y", action="store_true", help="base-10 log left y axis")
    p.add_argument("--log-y2", action="store_true", help="base-10 log right y axis")
    p.add_argument("--ref", action="append", default=[], metavar="VALUE=LABEL",
                   help='horizontal reference line, repeatable: "4=target ≤ 4 KiB", "y2:100=p99 limit"')
    p.add_argument("--png", action="store_true",
                   help="also write a PNG next to the SVG with rsvg-convert, if installed")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        refs = [parse_ref(r) for r in args.ref]
        series, _ = read_csv(args.csv)
        has_y2 = any(s.y2 for s in series)
        if has_y2 and not args.y2_label:
            raise InputError(f"{args.csv} has y2 values: give --y2-label (with the unit)")
        chart = Chart(args.title, args.x_label, args.y_label, args.y2_label, args.subtitle,
                      args.log_x, args.log_y, args.log_y2, refs)
        svg = render(chart, series)
    except InputError as e:
        print(f"plot.py: error: {e}", file=sys.stderr)
        return 2
    if args.y2_label and not has_y2:
        print(f"plot.py: note: --y2-label given but {args.csv} has no y2 values; no right axis drawn",
              file=sys.stderr)
    try:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(svg)
    except OSError as e:
        print(f"plot.py: error: cannot write {args.out}: {e.strerror}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    if args.png:
        png = os.path.splitext(args.out)[0] + ".png"
        tool = shutil.which("rsvg-convert")
        if tool is None:
            print(f"plot.py: --png: rsvg-convert not found on PATH (apt-get install librsvg2-bin); "
                  f"wrote the SVG only", file=sys.stderr)
            return 0
        r = subprocess.run([tool, "--format", "png", "--output", png, args.out],
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"plot.py: rsvg-convert failed ({r.returncode}): {r.stderr.strip()}", file=sys.stderr)
            return 1
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
