"""Server-side SVG charts: no JavaScript, no CDN, readable by screen readers.

Each chart is an ``<svg role="img">`` labelled by its own ``<title>`` and ``<desc>`` (the desc
spells out every value), and every bar carries a visible text label and value.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

_ids = itertools.count(1)


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[int]
    css_class: str


def _uid(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


def _scale(value: int, maximum: int, length: float) -> float:
    return 0.0 if maximum <= 0 else round(length * value / maximum, 1)


def hbar_chart(
    title: str, bars: Sequence[tuple[str, int]], *, css_class: str = "", width: int = 420
) -> SafeString:
    """Return a horizontal bar chart: one row per (label, value), label left, value right."""
    row, label_w, value_w, pad = 24, 140, 56, 6
    height = max(row * len(bars), row) + pad
    plot = width - label_w - value_w
    maximum = max((v for _, v in bars), default=0)
    uid = _uid("chart")
    desc = "; ".join(f"{label}: {value}" for label, value in bars) or "No data."
    parts = [
        f'<svg class="chart {escape(css_class)}" role="img" aria-labelledby="{uid}-t {uid}-d" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape(desc)}</desc>',
    ]
    for i, (label, value) in enumerate(bars):
        y = pad + i * row
        w = _scale(value, maximum, plot)
        parts.append(
            f'<g class="bar"><text class="label" x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
            f"{escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{w}" height="{row - 8}" rx="2"></rect>'
            f'<text class="value" x="{label_w + w + 6}" y="{y + 15}">{value}</text></g>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated string is escaped above


def column_chart(
    title: str, labels: Sequence[str], series: Sequence[Series], *, width: int = 760, height: int = 220
) -> SafeString:
    """Return a grouped column chart over ``labels`` (e.g. weeks) with a legend and value labels."""
    left, bottom, top, legend_h = 34, 34, 26, 22
    plot_h = height - bottom - top - legend_h
    plot_w = width - left - 8
    group_w = plot_w / max(len(labels), 1)
    bar_w = max((group_w - 6) / max(len(series), 1), 1)
    maximum = max((v for s in series for v in s.values), default=0)
    uid = _uid("chart")
    desc_parts = []
    for i, label in enumerate(labels):
        values = ", ".join(f"{s.name} {s.values[i]}" for s in series)
        desc_parts.append(f"{label}: {values}")
    parts = [
        f'<svg class="chart columns" role="img" aria-labelledby="{uid}-t {uid}-d" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMinYMin meet" '
        f'xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{uid}-t">{escape(title)}</title>',
        f'<desc id="{uid}-d">{escape("; ".join(desc_parts) or "No data.")}</desc>',
    ]
    x = left
    for s in series:
        parts.append(
            f'<g class="legend {escape(s.css_class)}"><rect x="{x}" y="4" width="12" height="12"></rect>'
            f'<text x="{x + 16}" y="14">{escape(s.name)}</text></g>'
        )
        x += 24 + 8 * len(s.name)
    base = height - bottom
    parts.append(f'<line class="axis" x1="{left}" y1="{base}" x2="{width - 8}" y2="{base}"></line>')
    parts.append(
        f'<text class="axis-label" x="{left - 4}" y="{base - plot_h + 4}" text-anchor="end">{maximum}</text>'
    )
    parts.append(f'<text class="axis-label" x="{left - 4}" y="{base}" text-anchor="end">0</text>')
    for i, label in enumerate(labels):
        gx = left + i * group_w + 3
        for j, s in enumerate(series):
            value = s.values[i]
            h = _scale(value, maximum, plot_h)
            bx = round(gx + j * bar_w, 1)
            parts.append(
                f'<g class="bar {escape(s.css_class)}"><rect x="{bx}" y="{round(base - h, 1)}" '
                f'width="{round(bar_w - 1, 1)}" height="{h}"></rect>'
                + (
                    f'<text class="value" x="{round(bx + bar_w / 2, 1)}" y="{round(base - h - 3, 1)}" '
                    f'text-anchor="middle">{value}</text>'
                    if value
                    else ""
                )
                + "</g>"
            )
        parts.append(
            f'<text class="axis-label" x="{round(gx + group_w / 2 - 3, 1)}" y="{base + 16}" '
            f'text-anchor="middle">{escape(label)}</text>'
        )
    parts.append("</svg>")
    return mark_safe("".join(parts))  # noqa: S308 - every interpolated string is escaped above
