"""Percentile bootstrap intervals and two-sided bootstrap p-values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from emoneuron.stats import holm, mcnemar_exact, mean_interval, sign_flip_exact


def _proportion(n: int, ones: int) -> np.ndarray:
    return np.array([1.0] * ones + [0.0] * (n - ones))


def test_estimate_is_the_mean() -> None:
    values = np.random.default_rng(4).normal(0.3, 1.0, size=37)
    interval = mean_interval(values)
    assert interval.estimate == pytest.approx(float(values.mean()), abs=1e-12)


def test_accepts_a_plain_list() -> None:
    interval = mean_interval([1, 0, 1, 1])
    assert interval.estimate == pytest.approx(0.75)


@pytest.mark.parametrize("n", [10, 40, 200])
def test_interval_contains_estimate(n: int) -> None:
    interval = mean_interval(_proportion(n, int(0.7 * n)))
    assert interval.low <= interval.estimate <= interval.high
    assert interval.low < interval.high


def test_interval_narrows_as_n_grows_at_the_same_proportion() -> None:
    intervals = [mean_interval(_proportion(n, n // 2)) for n in (20, 80, 320)]
    widths = [interval.high - interval.low for interval in intervals]
    # Width shrinks like 1/sqrt(n): quadrupling n about halves it.
    assert widths[0] > widths[1] > widths[2]
    assert widths[1] / widths[0] == pytest.approx(0.5, abs=0.15)
    assert widths[2] / widths[1] == pytest.approx(0.5, abs=0.15)


def test_width_matches_the_normal_approximation() -> None:
    n = 400
    interval = mean_interval(_proportion(n, n // 2))
    expected = 2 * 1.96 * math.sqrt(0.25 / n)  # about 0.098
    assert interval.high - interval.low == pytest.approx(expected, rel=0.15)
    assert (interval.low + interval.high) / 2 == pytest.approx(0.5, abs=0.01)


def test_lower_level_gives_a_narrower_interval() -> None:
    values = _proportion(60, 25)
    wide = mean_interval(values, level=0.95)
    narrow = mean_interval(values, level=0.5)
    assert wide.low < narrow.low <= narrow.high < wide.high


@pytest.mark.parametrize("value", [0.0, 0.7, 1.0, -2.5])
def test_all_equal_values_give_zero_width(value: float) -> None:
    interval = mean_interval(np.full(30, value))
    assert interval.high - interval.low == pytest.approx(0.0, abs=1e-12)
    assert interval.low == pytest.approx(value, abs=1e-12)
    assert interval.estimate == pytest.approx(value, abs=1e-12)


def test_all_zero_differences_have_p_one() -> None:
    assert mean_interval(np.zeros(25)).p_value == 1.0


def test_clearly_positive_paired_difference_has_small_p() -> None:
    interval = mean_interval(_proportion(50, 40))
    assert interval.estimate == pytest.approx(0.8)
    assert interval.p_value < 0.01
    assert interval.low > 0


def test_clearly_negative_difference_has_small_p() -> None:
    interval = mean_interval(-_proportion(50, 40))
    assert interval.p_value < 0.01
    assert interval.high < 0


def test_symmetric_differences_have_large_p() -> None:
    values = np.array([1.0] * 20 + [-1.0] * 20 + [0.0] * 10)
    interval = mean_interval(values)
    assert interval.estimate == 0.0
    assert interval.p_value > 0.2
    assert interval.low < 0 < interval.high


def test_borderline_difference_has_intermediate_p() -> None:
    # Mean 0.1 with sd 0.7 on 50 values: z about 1, p about 0.3.
    values = np.array([1.0] * 15 + [-1.0] * 10 + [0.0] * 25)
    assert 0.2 < mean_interval(values).p_value < 0.8


def test_p_value_is_within_unit_interval() -> None:
    rng = np.random.default_rng(0)
    for _ in range(5):
        p = mean_interval(rng.normal(0.0, 1.0, size=15), n_bootstrap=300).p_value
        assert 0.0 <= p <= 1.0


def test_deterministic_for_a_fixed_seed() -> None:
    values = np.random.default_rng(1).normal(0.1, 1.0, size=40)
    assert mean_interval(values, seed=7) == mean_interval(values.copy(), seed=7)
    first, other = mean_interval(values, seed=7), mean_interval(values, seed=8)
    assert (other.low, other.high) != (first.low, first.high)


def test_empty_input_gives_nan() -> None:
    interval = mean_interval(np.array([]))
    assert math.isnan(interval.estimate)
    assert math.isnan(interval.low)
    assert math.isnan(interval.high)


def test_mcnemar_exact_by_hand() -> None:
    # 5 dialogues right only before, 1 right only after: p = 2 * (1 + 6) / 2**6.
    before = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1])
    after = np.array([0, 0, 0, 0, 1, 0, 1, 1, 0, 1])
    assert mcnemar_exact(before, after) == pytest.approx(14 / 64)
    assert mcnemar_exact(before, before) == 1.0
    assert mcnemar_exact(np.ones(12), np.zeros(12)) == pytest.approx(2 / 2**12)


def test_sign_flip_with_one_seed_is_mcnemar_and_is_exact_for_averaged_controls() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        assert sign_flip_exact(a - b, 1) == pytest.approx(mcnemar_exact(a, b))
    # Differences 1, 2/3, -1/3 in thirds: sums of +-3, +-2, +-1 over 8 sign patterns; the
    # observed 3 + 2 - 1 = 4 or more in size happens for (+,+,-), (+,+,+), and their mirrors.
    assert sign_flip_exact(np.array([1, 2 / 3, -1 / 3]), 3) == pytest.approx(4 / 8)
    assert sign_flip_exact(np.zeros(5), 3) == 1.0


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.5]) == [0.5]
