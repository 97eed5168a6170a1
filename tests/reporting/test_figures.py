"""Figure builders' drawing helpers: the panel grid, and the docstring's example."""

from __future__ import annotations

import doctest

from emoneuron.reporting import figures


def test_panels_hide_the_unused_cells_of_the_last_row() -> None:
    fig, axes = figures.panels(4)
    try:
        assert len(axes) == 4
        assert [ax.get_visible() for ax in fig.axes] == [True] * 4 + [False] * 2  # 2 rows of 3
    finally:
        figures.pyplot().close(fig)


def test_docstring_examples() -> None:
    assert doctest.testmod(figures).failed == 0
