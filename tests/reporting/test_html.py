"""The shared HTML pieces: page frame, sortable tables and hover boxes over figures."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import pytest
from matplotlib.figure import Figure

from emoneuron.reporting.figures import hover
from emoneuron.reporting.html import Section, figure_key, page, render_figure, table

DRAWN: list[str] = []  # the data each _bars figure was drawn from, in order


def _bars(values: pd.DataFrame, highlighted: set[str]) -> Figure:
    """A figure with a hover box per bar; each draw is recorded in DRAWN."""
    DRAWN.append(values.to_csv())
    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(values.index, values.x, color=["red" if i in highlighted else "grey"
                                          for i in values.index])
    for k, label in enumerate(values.index):
        hover(ax, (k - 0.4, 0, k + 0.4, float(values.x.iloc[k])), f"{label}: {values.x.iloc[k]}")
    return fig


def _failing() -> Figure:
    raise RuntimeError("drawing failed")


def test_page_has_sections_in_order_a_nav_and_only_inline_script() -> None:
    html = page("T <1>", "sub", [Section("summary", "Summary", "<p>first</p>"),
                                 Section("figures", "Figures", "<p>second</p>")])
    assert html.startswith("<!DOCTYPE html>") and "<title>T &lt;1&gt;</title>" in html
    assert html.index('<section id="summary">') < html.index('<section id="figures">')
    assert '<a href="#summary">Summary</a><a href="#figures">Figures</a>' in html
    assert re.findall(r"<script[^>]*>", html) == ["<script>"]
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html)


def test_table_is_sortable_and_escaped() -> None:
    html = table(["name", "a<b"], [["<x>", 1], ["y & z", 2.5]], caption="c", table_id="top-x")
    assert html.startswith('<table class="sortable" id="top-x"><caption>c</caption><thead>')
    assert "<th>a&lt;b</th>" in html and "<td>&lt;x&gt;</td><td>1</td>" in html
    assert "<tbody><tr>" in html and "<td>y &amp; z</td><td>2.5</td>" in html


def test_hover_boxes_sit_on_their_data_region(tmp_path: Path) -> None:
    def build() -> Figure:
        fig = plt.figure(figsize=(4, 2))
        ax = fig.add_axes((0.25, 0.25, 0.5, 0.5))  # fixed: no layout engine moves it
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 10)
        hover(ax, (0, 0, 5, 10), 'left half "<b>"')
        hover(ax, (10, 10, 5, 5), "upper right quarter, corners given reversed")
        return fig

    html = render_figure(tmp_path, "demo", "Demo", "A caption.", build)
    spans = re.findall(r'<span style="([^"]*)" title="([^"]*)"></span>', html)
    assert spans == [
        ("left:25.00%;top:25.00%;width:25.00%;height:50.00%", "left half &quot;&lt;b&gt;&quot;"),
        ("left:50.00%;top:25.00%;width:25.00%;height:25.00%",
         "upper right quarter, corners given reversed")]
    assert html.startswith('<figure id="fig-demo"><div class="fig"><img src="data:image/png')
    assert "<figcaption><b>Demo.</b> A caption.</figcaption>" in html
    assert (tmp_path / "demo.png").read_bytes().startswith(b"\x89PNG")
    assert b"<svg" in (tmp_path / "demo.svg").read_bytes()


def test_a_figure_is_drawn_once_per_content_and_reused_byte_for_byte(tmp_path: Path) -> None:
    DRAWN.clear()
    values = pd.DataFrame({"x": [1.0, 3.0, 2.0]}, index=["a", "b", "c"])
    # The set's order differs between processes; the key must not.
    first = render_figure(tmp_path, "bars", "T", "c", partial(_bars, values, {"b", "a"}))
    again = render_figure(tmp_path, "bars", "T", "c", partial(_bars, values.copy(), {"a", "b"}))
    assert again == first and len(DRAWN) == 1  # reused: the same page, not drawn again
    assert first.count("<span ") == 3  # the hover boxes came back with it
    changed = values.assign(x=[1.0, 3.0, 2.5])
    render_figure(tmp_path, "bars", "T", "c", partial(_bars, changed, {"a", "b"}))
    render_figure(tmp_path, "bars", "T", "another caption", partial(_bars, changed, {"a", "b"}))
    assert len(DRAWN) == 3  # other data, then another caption: drawn again
    (tmp_path / "bars.svg").unlink()  # a file of the figure missing: drawn again
    render_figure(tmp_path, "bars", "T", "another caption", partial(_bars, changed, {"a", "b"}))
    assert len(DRAWN) == 4 and (tmp_path / "bars.svg").is_file()
    kept = json.loads((tmp_path / "bars.json").read_text())
    assert kept["key"] == figure_key("T", "another caption", partial(_bars, changed, {"b", "a"}))


def test_a_figure_that_cannot_be_keyed_is_always_drawn_and_a_failed_draw_keeps_no_key(
        tmp_path: Path) -> None:
    DRAWN.clear()
    values = pd.DataFrame({"x": [1.0]}, index=["a"])
    for _ in range(2):
        render_figure(tmp_path, "plain", "T", "c", lambda: _bars(values, set()))
    assert len(DRAWN) == 2 and not (tmp_path / "plain.json").exists()
    render_figure(tmp_path, "bars", "T", "c", partial(_bars, values, set()))
    assert (tmp_path / "bars.json").exists()
    with pytest.raises(RuntimeError, match="drawing failed"):
        render_figure(tmp_path, "bars", "T", "c", partial(_failing))
    assert not (tmp_path / "bars.json").exists()  # the old key no longer names these files
