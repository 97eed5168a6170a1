"""Wilson, Tango and adjusted intervals; the slot permutation test; power. Each is checked
against published values, exact enumeration or a simulation of its error rate."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from emoneuron.causal.inference.significance import (
    adjusted_mean_interval,
    holm,
    mcnemar_exact,
    min_detectable_drop,
    near_chance,
    power_note,
    slot_permutation_test,
    tango_interval,
    wilson_interval,
)


def _outcomes(n: int, ones: int) -> np.ndarray:
    return np.array([1.0] * ones + [0.0] * (n - ones))


@pytest.mark.parametrize(("ones", "n", "low", "high"), [
    # Newcombe 1998, Statistics in Medicine 17:857, table II (Wilson score, no correction).
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611),
    (1, 29, 0.0061, 0.1718)])
def test_wilson_matches_newcombe(ones: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(_outcomes(n, ones))
    assert interval.estimate == pytest.approx(ones / n)
    assert (interval.low, interval.high) == pytest.approx((low, high), abs=5e-5)


def test_wilson_keeps_a_width_at_all_correct() -> None:
    interval = wilson_interval(np.ones(15))
    assert interval.high == pytest.approx(1.0)
    assert 0.75 < interval.low < 0.85  # 15/15: [0.796, 1]


def test_empty_input_gives_nan() -> None:
    for interval in (wilson_interval(np.array([])), adjusted_mean_interval(np.array([])),
                     tango_interval(np.array([]), np.array([]))):
        assert math.isnan(interval.estimate) and math.isnan(interval.low)


def _pairs(only_first: int, only_second: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rest = n - only_first - only_second
    return (np.r_[np.ones(only_first), np.zeros(only_second), np.ones(rest)],
            np.r_[np.zeros(only_first), np.ones(only_second), np.ones(rest)])


def test_tango_with_every_pair_concordant_has_its_closed_form() -> None:
    # No discordant pair: the score equation gives delta = z^2 / (n + z^2) at each end.
    interval = tango_interval(*_pairs(0, 0, 15))
    z2 = 1.959964 ** 2
    assert interval.estimate == 0.0
    assert (interval.low, interval.high) == pytest.approx((-z2 / (15 + z2), z2 / (15 + z2)),
                                                          abs=1e-6)


def _joint(first: float, second: float, dependence: float) -> tuple[float, float]:
    """P(only first right), P(only second right) for outcomes with the given dependence."""
    both = dependence * min(first, second) + (1 - dependence) * first * second
    return first - both, second - both


@pytest.mark.parametrize("n", [15, 60])
def test_tango_coverage_by_exact_enumeration(n: int) -> None:
    worst = 1.0
    for first, second in ((1, 1), (1, 0.9), (0.9, 0.9), (0.9, 0.6), (0.95, 0.8), (0.6, 0.5)):
        for dependence in (0.0, 0.5, 0.9):
            p_first, p_second = _joint(first, second, dependence)
            coverage = 0.0
            for b in range(n + 1):
                for c in range(n + 1 - b):
                    probability = (math.comb(n, b) * math.comb(n - b, c) * p_first**b
                                   * p_second**c * (1 - p_first - p_second) ** (n - b - c))
                    if probability > 1e-12:
                        interval = tango_interval(*_pairs(b, c, n))
                        truth = first - second
                        coverage += probability * (interval.low - 1e-9 <= truth
                                                   <= interval.high + 1e-9)
            worst = min(worst, coverage)
    assert worst >= 0.93


def _exchangeable(rng: np.random.Generator, runs: int, n: int, accuracies: tuple[float, ...],
                  dependence: float) -> np.ndarray:
    """0/1 outcomes (runs x dialogues x conditions): condition j right with probability
    accuracies[j], sharing each dialogue's difficulty with the given weight."""
    shared = rng.random((runs, n, 1))
    own = rng.random((runs, n, len(accuracies)))
    latent = np.where(rng.random(own.shape) < dependence, shared, own)
    return (latent < np.array(accuracies)).astype(float)


@pytest.mark.parametrize("seeds", [3, 5])
def test_adjusted_interval_coverage_against_averaged_controls(seeds: int) -> None:
    rng, runs = np.random.default_rng(0), 2000
    worst = 1.0
    for n in (15, 60):
        for masked, control in ((1, 1), (0.9, 0.9), (0.9, 1.0), (0.6, 0.9), (1.0, 0.9)):
            outcomes = _exchangeable(rng, runs, n, (masked, *[control] * seeds), 0.5)
            differences = outcomes[..., 1:].mean(axis=2) - outcomes[..., 0]
            intervals = [adjusted_mean_interval(d) for d in differences]
            truth = control - masked
            worst = min(worst, float(np.mean([i.low - 1e-9 <= truth <= i.high + 1e-9
                                              for i in intervals])))
    assert worst >= 0.93 - 2 * math.sqrt(0.95 * 0.05 / runs)


def test_adjusted_interval_keeps_a_width_when_nothing_differs() -> None:
    interval = adjusted_mean_interval(np.zeros(15))
    assert interval.estimate == 0.0
    assert interval.low < -0.1 and interval.high > 0.1


def test_mcnemar_exact_by_hand() -> None:
    # 5 dialogues right only before, 1 right only after: p = 2 * (1 + 6) / 2**6.
    before = np.array([1, 1, 1, 0, 0, 1, 1, 1, 1, 1])
    after = np.array([0, 0, 0, 0, 1, 0, 1, 1, 0, 1])
    assert mcnemar_exact(before, after) == pytest.approx(14 / 64)
    assert mcnemar_exact(before, before) == 1.0
    assert mcnemar_exact(np.ones(12), np.zeros(12)) == pytest.approx(2 / 2**12)


def test_slot_test_with_one_seed_is_mcnemar() -> None:
    rng = np.random.default_rng(0)
    for _ in range(30):
        masked, control = rng.integers(0, 2, 15), rng.integers(0, 2, 15)
        assert slot_permutation_test(masked, control[None]) == pytest.approx(
            mcnemar_exact(masked, control))


def test_slot_test_by_hand() -> None:
    # Two seeds, three dialogues: (masked; controls) = (0; 1, 1), (0; 1, 0), (1; 1, 1).
    # The third has every slot right and says nothing. Under the null the first contributes
    # +1 (masked slot the wrong one, probability 1/3) or -1/2 (2/3); the second +1/2 (masked
    # slot one of the two wrong, 2/3) or -1 (1/3). Observed T = 3/2, the largest value:
    # P(T >= 3/2) = 1/3 * 2/3 = 2/9, doubled.
    p = slot_permutation_test(np.array([0, 0, 1]), np.array([[1, 1, 1], [1, 0, 1]]))
    assert p == pytest.approx(2 * 2 / 9)
    assert slot_permutation_test(np.ones(5), np.ones((3, 5))) == 1.0


def _type_one_error(test: Callable[[np.ndarray, np.ndarray], float], seeds: int, n: int,
                    easiest: float) -> float:
    """Share of null runs rejected at 0.05: each dialogue has its own accuracy, uniform in
    [easiest, 1], shared by its k+1 exchangeable conditions."""
    rng, runs = np.random.default_rng([seeds, n]), 2000
    accuracy = rng.uniform(easiest, 1.0, (runs, n, 1))
    outcomes = (rng.random((runs, n, seeds + 1)) < accuracy).astype(float)
    return sum(test(run[:, 0], run[:, 1:].T) <= 0.05 for run in outcomes) / runs


@pytest.mark.parametrize("seeds", [1, 3, 5])
@pytest.mark.parametrize("n", [30, 100])
def test_slot_test_holds_its_level_against_any_number_of_seeds(seeds: int, n: int) -> None:
    # Under the null every condition is one more random set. The former sign-flip test of
    # masked minus the control mean rejected 13% (five seeds, 30 dialogues) and 6.5% (five
    # seeds, 100) of these runs with mostly easy dialogues: it took the skewed differences as
    # symmetric.
    for easiest in (0.9, 0.3):
        assert _type_one_error(slot_permutation_test, seeds, n, easiest) <= 0.05 + 2 * math.sqrt(
            0.05 * 0.95 / 2000)


def test_min_detectable_drop_has_eighty_percent_power() -> None:
    n, baseline, alpha = 60, 0.8, 0.05 / 6
    drop = min_detectable_drop(n, baseline)
    rng, runs = np.random.default_rng(3), 2000
    right = np.r_[np.ones(48), np.zeros(12)]

    def power(of_drop: float) -> float:
        lost = rng.random((runs, n)) < of_drop / baseline
        return float(np.mean([mcnemar_exact(right, right * ~row) <= alpha for row in lost]))

    assert 0.75 <= power(drop) <= 0.9
    assert power(drop / 2) < 0.4
    assert 0 < drop < baseline


def test_min_detectable_drop_is_infinite_when_too_few_are_right() -> None:
    # Seven right answers all lost give p = 2 / 2**7 > 0.05 / 6: nothing is detectable.
    assert min_detectable_drop(15, 7 / 15) == math.inf
    assert math.isnan(min_detectable_drop(0, 0.5))


def test_near_chance_and_power_note() -> None:
    assert near_chance(_outcomes(15, 5))  # 33%: Wilson low 15.2% <= 1/6
    assert not near_chance(_outcomes(15, 6))  # 40%: Wilson low 19.8%
    assert power_note(0.1, 0.3, True) == "cannot show a drop (baseline near chance)"
    assert power_note(math.inf, 0.5, False).startswith("underpowered")
    assert power_note(0.4, 0.5, False).startswith("underpowered")
    assert power_note(0.2, 0.9, False).startswith("no drop larger than 20 points")


def test_holm_by_hand() -> None:
    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.5]) == [0.5]
