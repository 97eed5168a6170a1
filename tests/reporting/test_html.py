"""The shared HTML pieces: page frame, sortable tables and hover boxes over figures."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from emoneuron.reporting.html import Section, hover, page, render_figure, table


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
