"""Draw plot data as small, self-contained SVG with matplotlib's SVG backend (no display, no pyplot state).

Text is never parsed as mathtext (a class named `$x$` prints as written), fonts are not embedded
(svg.fonttype none), and ids are salted per plot so several inline SVGs on one page cannot collide.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import matplotlib
from matplotlib.backends.backend_svg import FigureCanvasSVG
from matplotlib.figure import Figure

MAX_POINTS = 500  # points of any curve drawn (the sidecar JSON keeps the data)
MAX_LABEL_CHARS = 40
MAX_MATRIX_CLASSES = 30  # a larger confusion matrix is drawn without per-cell numbers
_UNPRINTABLE = re.compile(r"[^\x20-\x7e\u00a0-\uffff]|[\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_PROLOG = re.compile(rb"\A<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?")
_RC: dict[str, Any] = {
    "svg.fonttype": "none", "text.parse_math": False, "font.size": 9, "axes.titlesize": 10,
    "figure.dpi": 72, "svg.image_inline": True, "font.sans-serif": ["DejaVu Sans"]}
_STYLE = re.compile(rb' style="([^"]*)"')
_STYLE_ELEMENT = re.compile(rb"<style[^>]*>.*?</style>\s*", re.S)
_METADATA = re.compile(rb"<metadata>.*?</metadata>\s*", re.S)
# CSS properties that SVG also takes as presentation attributes (not subject to a page's CSP style-src)
_PRESENTATION = frozenset(b"""fill fill-opacity fill-rule stroke stroke-width stroke-linejoin stroke-linecap
    stroke-dasharray stroke-dashoffset stroke-miterlimit stroke-opacity opacity font-size font-family
    font-weight font-style font-stretch text-anchor dominant-baseline clip-path""".split())


def clean_text(value: object) -> str:
    """A label fit to print: printable characters only, capped (the SVG writer escapes XML)."""
    text = _UNPRINTABLE.sub("?", str(value))
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "\u2026"


def thin(points: Sequence, limit: int = MAX_POINTS) -> list:
    """At most `limit` points, evenly chosen, the first and last kept."""
    points = list(points)
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


# Margins of a figure whose text is the platform's own (axis names, numeric ticks, a legend inside the axes):
# a fixed layout, so the SVG is drawn once. bbox_inches="tight" draws it twice (once to measure), which is
# kept only for figures whose tick labels are participants' class names of any length (the confusion matrix).
_FIXED = {"left": 0.17, "right": 0.96, "bottom": 0.13, "top": 0.91}
_FIXED_WITH_COLORBAR = {"left": 0.19, "right": 0.98, "bottom": 0.13, "top": 0.91}
_TIGHT = "_evaluator_tight"


def _figure(size: tuple[float, float] = (4.2, 3.6), *, margins: dict | None = None) -> Figure:
    """A figure on the SVG canvas; with `margins` a fixed layout, without one measured when saved."""
    figure = Figure(figsize=size)
    FigureCanvasSVG(figure)
    if margins is None:
        setattr(figure, _TIGHT, True)
    else:
        figure.subplots_adjust(**margins)
    return figure


def to_svg(figure: Figure, name: str, title: str) -> bytes:
    """Serialise a figure to SVG without the XML prolog (it is inlined in pages), titled for screen readers."""
    sink = io.BytesIO()
    tight = "tight" if getattr(figure, _TIGHT, False) else None
    with matplotlib.rc_context({**_RC, "svg.hashsalt": name}):  # type: ignore[dict-item]  # keys are rc names
        figure.savefig(sink, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches=tight)
    svg = _presentational(_METADATA.sub(b"", _PROLOG.sub(b"", sink.getvalue())))
    # NOTE: ids unique on a page that inlines several plots (matplotlib numbers them per figure: figure_1, ...)
    prefix = name.encode() + b"-"
    svg = re.sub(rb'( id="|xlink:href="#|url\(#)', lambda m: m.group(1) + prefix, svg)
    # NOTE: an image with a name for assistive technology: role and aria-label on the root, a <title> first
    label = quoteattr(clean_text(title)).encode()
    head, _, rest = svg.partition(b">")
    named = b"<title>" + escape(clean_text(title)).encode() + b"</title>"
    return head + b' role="img" aria-label=' + label + b">" + named + rest


def _presentational(svg: bytes) -> bytes:
    """Style attributes and the <style> element as presentation attributes: the SVG then draws the same
    inline in a page whose Content-Security-Policy forbids inline styles (style-src 'self')."""

    def attributes(match: re.Match) -> bytes:
        out = []
        for declaration in match.group(1).split(b";"):
            name, _, value = declaration.partition(b":")
            name, value = name.strip(), value.strip()
            if name in _PRESENTATION and value:
                out.append(b" " + name + b'="' + value.replace(b'"', b"'") + b'"')
        return b"".join(out)

    svg = _STYLE_ELEMENT.sub(b"", _STYLE.sub(attributes, svg), count=1)
    head, _, rest = svg.partition(b">")
    head = re.sub(rb' (width|height)="[^"]*"', b"", head, count=2)  # the viewBox alone: it scales to its box
    # the removed <style> said *{stroke-linejoin: round; stroke-linecap: butt}
    return head + b' stroke-linejoin="round" stroke-linecap="butt">' + rest


def confusion_figure(classes: list, matrix: list[list[int]], other: list[int], title: str) -> Figure:
    """Rows: true classes; columns: predicted classes, then "other" (predictions outside the labels' classes)."""
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # the stubs want literal rc names
        figure = _figure((4.6, 4.0))
        axes = figure.subplots()
        rows = [list(row) + [extra] for row, extra in zip(matrix, other)]
        image = axes.imshow(rows or [[0]], cmap="Blues", aspect="auto")
        figure.colorbar(image, ax=axes, label="rows")
        names = [clean_text(c) for c in classes]
        axes.set_xticks(range(len(names) + 1), [*names, "other"], rotation=45, ha="right")
        axes.set_yticks(range(len(names)), names)
        axes.set_xlabel("predicted class")
        axes.set_ylabel("true class")
        axes.set_title(clean_text(title))
        if len(names) <= MAX_MATRIX_CLASSES:
            top = max((max(r) for r in rows), default=0)
            for i, row in enumerate(rows):
                for j, value in enumerate(row):
                    axes.text(j, i, str(value), ha="center", va="center", fontsize=7,
                              color="white" if top and value > top / 2 else "black")
    return figure


def curves_figure(curves: list[tuple[str, list]], *, title: str, xlabel: str, ylabel: str,
                  diagonal: bool = False, markers: bool = False) -> Figure:
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # the stubs want literal rc names
        figure = _figure(margins=_FIXED)
        axes = figure.subplots()
        if diagonal:
            axes.plot([0, 1], [0, 1], linestyle="--", color="0.6", linewidth=0.8, label="chance" if not markers
                      else "perfectly calibrated")
        for label, points in curves:
            points = thin(points)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axes.plot(xs, ys, marker="o" if markers else None, markersize=3, linewidth=1.4,
                      drawstyle="default", label=clean_text(label))
        axes.set_xlim(-0.02, 1.02)
        axes.set_ylim(-0.02, 1.02)
        axes.set_xlabel(xlabel)
        axes.set_ylabel(ylabel)
        axes.set_title(clean_text(title))
        axes.grid(True, linewidth=0.3)
        axes.legend(loc="best", fontsize=7)
    return figure


def histogram_figure(edges: list[float], counts: list[int], *, title: str, xlabel: str) -> Figure:
    """Bars of density (rows per unit), so unequal bins read right."""
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # the stubs want literal rc names
        figure = _figure(margins=_FIXED)
        axes = figure.subplots()
        widths = [high - low for low, high in zip(edges, edges[1:])]
        heights = [c / w if w > 0 else 0.0 for c, w in zip(counts, widths)]
        axes.bar(edges[:-1], heights, width=widths, align="edge", color="#4c72b0", edgecolor="white",
                 linewidth=0.4)
        axes.axvline(0.0, color="0.3", linewidth=0.8, linestyle="--")
        axes.set_xlabel(xlabel)
        axes.set_ylabel("rows per unit")
        axes.set_title(clean_text(title))
    return figure


def grid_figure(x_edges: list[float], y_edges: list[float], counts: list[list[int]], *, title: str) -> Figure:
    with matplotlib.rc_context(_RC):  # type: ignore[arg-type]  # the stubs want literal rc names
        figure = _figure((4.6, 3.8), margins=_FIXED_WITH_COLORBAR)
        axes = figure.subplots()
        if counts:
            transposed = [list(column) for column in zip(*counts)]  # rows: targets, columns: predictions
            # NOTE: pcolorfast draws one embedded image, not a path per cell (a 60 x 60 grid as paths is 700 kB)
            mesh = axes.pcolorfast(x_edges, y_edges, transposed, cmap="viridis")
            figure.colorbar(mesh, ax=axes, label="rows")
            low, high = max(x_edges[0], y_edges[0]), min(x_edges[-1], y_edges[-1])
            if low < high:
                axes.plot([low, high], [low, high], color="white", linestyle="--", linewidth=0.8)
        axes.set_xlabel("predicted")
        axes.set_ylabel("actual")
        axes.set_title(clean_text(title))
    return figure
