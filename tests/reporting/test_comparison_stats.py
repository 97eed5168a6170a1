"""The comparison's numbers (emoneuron.reporting.comparison_stats) computed directly: the
Wasserstein distance on hand-computed cases, labels and differences of runs, the doctests. The
page and its files: test_comparison_page.py."""

from __future__ import annotations

import doctest
from pathlib import Path

import numpy as np
import pytest
from run_fixtures import make_run

from emoneuron.reporting import comparison_stats
from emoneuron.reporting.comparison_stats import differences, load_runs, wasserstein_1d


def test_wasserstein_hand_computed_cases() -> None:
    assert wasserstein_1d([0.0], [1], [0.5], [1]) == pytest.approx(0.5)
    assert wasserstein_1d([0.0, 1.0], [1, 1], [0.5], [3]) == pytest.approx(0.5)
    assert wasserstein_1d([0.1, 0.4], [2, 1], [0.1, 0.4], [4, 2]) == pytest.approx(0.0)
    # Moving a third of the mass from 0.2 to 0.8 costs 1/3 * 0.6.
    assert wasserstein_1d([0.2], [3], [0.2, 0.8], [2, 1]) == pytest.approx(0.2)
    assert np.isnan(wasserstein_1d([0.1], [0], [0.2], [1]))


def test_same_model_twice_gets_distinct_labels(tmp_path: Path) -> None:
    make_run(tmp_path / "a")
    make_run(tmp_path / "b")
    runs = load_runs([tmp_path / "a", tmp_path / "b"])
    assert [r.label for r in runs] == ["tiny-lm (a)", "tiny-lm (b)"]
    assert differences(runs) == {}  # same data and settings: no warning


def test_doctests() -> None:
    assert doctest.testmod(comparison_stats).failed == 0
