"""The pieces every HTML page of emoneuron shares: page frame, CSS, sortable tables, figures.

Pages are self-contained: CSS and the one small script are inline, figures are embedded as base64
PNG, nothing is fetched when the page is viewed. Each figure is also written as
``<name>.png`` and ``<name>.svg`` for papers. Hover values need no script: a figure builder
marks regions with :func:`~emoneuron.reporting.figures.hover` (in data coordinates) and
:func:`render_figure` lays a transparent box with a ``title`` over each, positioned in percent
so it follows the image when the page scales it.

A figure is drawn once per content: beside ``<name>.png|svg`` :func:`render_figure` keeps
``<name>.json``, the key of what it was drawn from (the builder's arguments, the source of its
module, of this one and of :mod:`~emoneuron.reporting.figures`, matplotlib's version) and its
hover boxes; a later report whose key matches reuses the files instead of drawing again, and
imports no matplotlib (drawing is nearly all of a report's time).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import inspect
import io
import json
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from html import escape
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from emoneuron.io import atomic_open
from emoneuron.reporting import figures
from emoneuron.reporting.figures import hover_html, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}.sub{color:#555;margin-top:0}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:right}th{background:#f2f2f2}
td:first-child,th:first-child{text-align:left}caption{font-weight:bold;text-align:left}
table.sortable th{cursor:pointer;user-select:none}
table.sortable th[aria-sort=ascending]::after{content:" \\25B2"}
table.sortable th[aria-sort=descending]::after{content:" \\25BC"}
figure{margin:1.5em 0}figcaption{color:#444;font-size:.9em}
.fig{position:relative;display:inline-block;max-width:100%}.fig img{max-width:100%;display:block}
.fig span{position:absolute}.fig span:hover{outline:2px solid #000}
.warn{background:#fff3cd;border-left:4px solid #e0a800;padding:.5em}
.note{color:#555;font-style:italic}.tables{display:flex;flex-wrap:wrap;gap:1.5em}
nav a{margin-right:1em}
"""

# Click a header to sort by that column; click again to reverse. Cells compare as numbers when
# their text starts with one ("80.0% [70.1%, 88.2%]" sorts by 80.0), otherwise as text.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.querySelectorAll("th");
  heads.forEach(function (th, column) {
    th.title = "click to sort";
    th.addEventListener("click", function () {
      var descending = th.getAttribute("aria-sort") === "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      th.setAttribute("aria-sort", descending ? "descending" : "ascending");
      var key = function (row) {
        var text = row.cells[column].textContent.trim();
        var number = parseFloat(text.replace(/^[^0-9+.-]*/, "").replace(/,/g, ""));
        return isNaN(number) ? text : number;
      };
      var body = table.tBodies[0];
      Array.from(body.rows).sort(function (a, b) {
        var x = key(a), y = key(b), order;
        if (typeof x === typeof y) { order = x < y ? -1 : x > y ? 1 : 0; }
        else { order = typeof x === "number" ? -1 : 1; }
        return descending ? -order : order;
      }).forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


@dataclass(frozen=True)
class Section:
    """One ``<section>`` of a page: its id (the anchor), heading and inner HTML."""

    id: str
    heading: str
    body: str


def page(title: str, subtitle: str, sections: Sequence[Section]) -> str:
    """A complete, self-contained HTML document with a table of contents."""
    nav = "".join(f'<a href="#{s.id}">{escape(s.heading)}</a>' for s in sections)
    body = "".join(f'<section id="{s.id}"><h2>{escape(s.heading)}</h2>{s.body}</section>'
                   for s in sections)
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
            f'<h1>{escape(title)}</h1><p class="sub">{escape(subtitle)}</p><nav>{nav}</nav>'
            f"{body}<script>{SORT_SCRIPT}</script></body></html>\n")


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], caption: str = "",
          table_id: str = "") -> str:
    """A sortable table; every cell is escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>"
                   for r in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    anchor = f' id="{escape(table_id)}"' if table_id else ""
    return (f'<table class="sortable"{anchor}>{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def ul(items: Sequence[str]) -> str:
    return "<ul>" + "".join(f"<li>{escape(i)}</li>" for i in items) + "</ul>"


def pct(x: float, digits: int = 1) -> str:
    """A share as a percentage: ``pct(0.25)`` is ``'25.0%'``."""
    return f"{100 * x:.{digits}f}%"


def pp(x: float) -> str:
    """A difference of shares in signed points: ``pp(-0.05)`` is ``'-5.0'``."""
    return f"{100 * x:+.1f}"


def count(k: int, one: str, many: str = "") -> str:
    """``count(2, 'neuron')`` is ``'2 neurons'``."""
    return f"{k} {one if k == 1 else many or one + 's'}"


def with_ci(t: tuple[float, float, float], fmt: Callable[[float], str]) -> str:
    """A value and its interval: ``with_ci((0.5, 0.4, 0.6), pct)`` is ``'50.0% [40.0%, 60.0%]'``."""
    return f"{fmt(t[0])} [{fmt(t[1])}, {fmt(t[2])}]"


def _canonical(value: Any) -> Any:
    """``value`` in a form whose pickle depends on its content only (sets sorted, tables and
    arrays as their bytes), for :func:`figure_key`."""
    if isinstance(value, pd.DataFrame | pd.Series):
        return ("table", value.to_csv().encode())
    if isinstance(value, np.ndarray):
        return ("array", str(value.dtype), value.shape, value.tobytes())
    if isinstance(value, set | frozenset):
        return ("set", sorted(map(repr, value)))
    if isinstance(value, dict):
        return ("dict", sorted((repr(k), _canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, [_canonical(v) for v in value])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value).__qualname__, _canonical(dataclasses.asdict(value)))
    return value


def figure_key(title: str, caption: str, build: Callable[[], Figure]) -> str | None:
    """What a figure is drawn from, hashed: None where it cannot be said (a builder that is not
    a ``partial`` of a module-level function over picklable data), and then it is drawn."""
    if not isinstance(build, partial):
        return None
    try:
        payload = pickle.dumps((build.func.__module__, build.func.__qualname__,
                                _canonical(build.args), _canonical(build.keywords), title,
                                caption, metadata.version("matplotlib")), protocol=5)
        sources = [inspect.getsource(sys.modules[build.func.__module__]),
                   inspect.getsource(sys.modules[__name__]), inspect.getsource(figures)]
    except (pickle.PicklingError, TypeError, AttributeError, KeyError, OSError):
        return None
    digest = hashlib.sha256(payload)
    for source in sources:
        digest.update(source.encode())
    return digest.hexdigest()


def _drawn(fig_dir: Path, name: str, key: str | None) -> tuple[bytes, str] | None:
    """The PNG and hover boxes of ``name`` where they were drawn from ``key``."""
    if key is None:
        return None
    try:
        kept = json.loads((fig_dir / f"{name}.json").read_text(encoding="utf-8"))
        if kept.get("key") != key or not (fig_dir / f"{name}.svg").is_file():
            return None
        return (fig_dir / f"{name}.png").read_bytes(), str(kept["hovers"])
    except (OSError, ValueError, KeyError):
        return None


FIGURE_FILES = (".png", ".svg", ".json")  # what render_figure writes per figure


def remove_figure(fig_dir: Path, name: str) -> None:
    """Remove every file :func:`render_figure` wrote for ``name`` (a figure a page no longer
    draws must not stay beside it)."""
    for suffix in FIGURE_FILES:
        (fig_dir / f"{name}{suffix}").unlink(missing_ok=True)


def render_figure(fig_dir: Path, name: str, title: str, caption: str,
                  build: Callable[[], Figure]) -> str:
    """Build a figure, write ``fig_dir/name.png|svg`` (and ``name.json``, its key) and return
    its embedded ``<figure>``; reuse the files where they were drawn from the same content."""
    key = figure_key(title, caption, build)
    drawn = _drawn(fig_dir, name, key)
    if drawn is None:
        (fig_dir / f"{name}.json").unlink(missing_ok=True)  # no key beside files it did not draw
        fig = build()
        try:
            fig.suptitle(title, fontweight="bold")
            png = io.BytesIO()
            fig.savefig(png, format="png", dpi=100)
            spans = hover_html(fig)  # after the PNG's draw, so the boxes match its layout
            with atomic_open(fig_dir / f"{name}.png", "wb") as handle:
                handle.write(png.getvalue())
            with atomic_open(fig_dir / f"{name}.svg", "wb") as handle:
                fig.savefig(handle, format="svg", metadata={"Date": None})
        finally:
            pyplot().close(fig)
        drawn = png.getvalue(), spans
        if key is not None:  # written last: a key names complete files only
            with atomic_open(fig_dir / f"{name}.json") as handle:
                json.dump({"key": key, "hovers": spans}, handle)
    data = base64.b64encode(drawn[0]).decode("ascii")
    return (f'<figure id="fig-{name}"><div class="fig"><img src="data:image/png;base64,{data}"'
            f' alt="{escape(title)}">{drawn[1]}</div>'
            f"<figcaption><b>{escape(title)}.</b> {escape(caption)}</figcaption></figure>")
