"""What a figure builder draws with: matplotlib, imported only when a figure is drawn.

A report whose figures are all reused (see :func:`emoneuron.reporting.html.render_figure`)
never imports matplotlib, which is most of a report's start-up time. So no reporting module
imports matplotlib at its top: a builder calls :func:`subplots` or :func:`panels` (or imports
from matplotlib inside its body) and marks hover regions with :func:`hover`.

>>> fig, [ax] = panels(1)
>>> hover(ax, (0.0, 0.0, 1.0, 1.0), "the whole panel")
>>> pyplot().close(fig)
"""

from __future__ import annotations

import math
from html import escape
from types import ModuleType
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def pyplot() -> ModuleType:
    """``matplotlib.pyplot`` on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def subplots(*args: Any, **kwargs: Any) -> tuple[Figure, Any]:
    """``matplotlib.pyplot.subplots(*args, **kwargs)``: the figure and its axes."""
    fig, axes = pyplot().subplots(*args, **kwargs)
    return fig, axes


def panels(n: int) -> tuple[Figure, list[Axes]]:
    """A figure of ``n`` panels, up to three per row; the unused cells hidden."""
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = subplots(nrows, ncols, figsize=(4.4 * ncols, 2.9 * nrows + 0.6),
                         layout="constrained", squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in the axes' data coordinates
_HOVERS: WeakKeyDictionary[Figure, list[tuple[Axes, Box, str]]] = WeakKeyDictionary()


def hover(ax: Axes, box: Box, text: str) -> None:
    """Show ``text`` when the pointer is over ``box`` of ``ax`` in the HTML page."""
    figure = ax.get_figure(root=True)
    assert figure is not None
    _HOVERS.setdefault(figure, []).append((ax, box, text))


def hover_html(fig: Figure) -> str:
    """Boxes in percent of the figure, from the layout of the last draw (the PNG's)."""
    width, height = fig.bbox.width, fig.bbox.height
    spans = []
    for ax, (x0, y0, x1, y1), text in _HOVERS.get(fig, []):
        (px0, py0), (px1, py1) = ax.transData.transform([(x0, y0), (x1, y1)])
        left, right = sorted((px0 / width, px1 / width))
        bottom, top = sorted((py0 / height, py1 / height))
        spans.append(f'<span style="left:{100 * left:.2f}%;top:{100 * (1 - top):.2f}%;'
                     f'width:{100 * (right - left):.2f}%;height:{100 * (top - bottom):.2f}%"'
                     f' title="{escape(text)}"></span>')
    return "".join(spans)
