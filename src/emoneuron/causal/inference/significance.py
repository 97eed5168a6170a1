"""Intervals and exact tests for accuracies and paired accuracy differences on a few dozen
evaluation dialogues, chosen so that none collapses at 0% or 100% accuracy.

- An accuracy (a share of 0/1 outcomes) gets the Wilson score interval.
- A paired difference of 0/1 outcomes (baseline minus masked, or masked against one control
  seed) gets Tango's score interval (Tango 1998, Statistics in Medicine 17:891): it inverts the
  score test of "the two discordant shares differ by delta" with the restricted maximum
  likelihood of the discordant share, so it stays wide when every pair agrees.
- A paired difference against the mean of k > 1 control seeds (values in multiples of 1/k) gets
  Agresti and Min's adjusted Wald interval (2005, Biometrics 61:515) generalised to bounded
  values: two pseudo-dialogues (half a +1, half a -1, one 0) join the n before the Wald interval
  is formed. With one seed this is their published paired-proportion interval; the pseudo-
  dialogues floor the variance at about 1/(n+2), so the interval keeps a width when all
  differences are 0.
- The test of masked against k control seeds permutes, per dialogue, which of the k+1 outcomes
  is the masked one (see :func:`slot_permutation_test`); with k = 1 it is McNemar's exact test.
- Two independent accuracies (two models on their own data) differ by Newcombe's hybrid score
  interval, built from their Wilson intervals (:func:`newcombe_interval`).
- :func:`min_detectable_drop` states the power of McNemar's test against the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

N_BOOTSTRAP = 2000
CHANCE = 1 / 6
HOLM_FAMILY = 6  # the six self effects of one control set


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


def _z(level: float) -> float:
    return NormalDist().inv_cdf(1 - (1 - level) / 2)


def wilson_bounds(share: float, n: float, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a ``share`` over ``n`` trials (n may be an effective,
    fractional count, e.g. trials over a design effect)."""
    z = _z(level)
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def wilson_interval(outcomes: np.ndarray, level: float = 0.95) -> Interval:
    """Share of 1s in ``outcomes`` with its Wilson score interval (NaN when empty)."""
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if len(outcomes) == 0:
        return Interval(math.nan, math.nan, math.nan)
    share = float(outcomes.mean())
    return Interval(share, *wilson_bounds(share, len(outcomes), level))


def tango_interval(first: np.ndarray, second: np.ndarray, level: float = 0.95) -> Interval:
    """Mean of ``first - second`` over paired 0/1 outcomes with Tango's score interval."""
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    n = len(first)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    only_first = int(np.sum(first & ~second))
    only_second = int(np.sum(~first & second))
    z = _z(level)

    def score(delta: float) -> float:
        # Restricted MLE of P(only second) given P(only first) - P(only second) = delta.
        w = -(only_first + only_second) + (2 * n - only_first + only_second) * delta
        rest = (math.sqrt(w * w + 8 * n * only_second * delta * (1 - delta)) - w) / (4 * n)
        variance = n * (2 * rest + delta * (1 - delta))
        return (only_first - only_second - n * delta) / math.sqrt(variance)

    estimate = (only_first - only_second) / n
    low = _solve_decreasing(score, z, -1.0, estimate)
    high = _solve_decreasing(score, -z, estimate, 1.0)
    return Interval(estimate, low, high)


def _solve_decreasing(function: Callable[[float], float], target: float, low: float,
                      high: float) -> float:
    """Where a decreasing ``function`` crosses ``target`` in [low, high] (bisection; the ends
    themselves are never evaluated, as the score's variance can vanish there)."""
    if low == high:
        return low
    for _ in range(60):
        middle = (low + high) / 2
        if function(middle) > target:
            low = middle
        else:
            high = middle
    return (low + high) / 2


def adjusted_mean_interval(differences: np.ndarray, level: float = 0.95) -> Interval:
    """Mean of paired ``differences`` in [-1, 1] with the adjusted Wald interval described in
    the module docstring (estimate: the plain mean)."""
    differences = np.asarray(differences, dtype=np.float64)
    n = len(differences)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan)
    total = n + 2
    centre = float(differences.sum()) / total
    variance = (float(np.sum(differences ** 2)) + 1) / total - centre ** 2
    half = _z(level) * math.sqrt(variance / total)
    return Interval(float(differences.mean()), max(-1.0, centre - half),
                    min(1.0, centre + half))


def stratified_interval(strata: Sequence[np.ndarray], level: float = 0.95) -> Interval:
    """Sum over independent strata of each stratum's mean of per-dialogue values, with a
    normal interval (the variance is the sum of each stratum's sample variance over its size);
    used where a statistic adds means of different dialogues' paired differences."""
    estimate = sum(float(np.mean(values)) for values in strata)
    variance = sum(float(np.var(values, ddof=1)) / len(values) if len(values) > 1 else 0.0
                   for values in strata)
    half = _z(level) * math.sqrt(variance)
    return Interval(estimate, estimate - half, estimate + half)


def newcombe_interval(first: Interval, second: Interval) -> Interval:
    """``second - first`` of two independent shares from their Wilson intervals (Newcombe 1998,
    Statistics in Medicine 17:873, method 10): each bound moves by the two relevant half-widths
    combined in quadrature.

    >>> d = newcombe_interval(Interval(0.5, 0.3, 0.7), Interval(0.8, 0.6, 0.9))
    >>> round(d.estimate, 2), round(d.low, 3), round(d.high, 3)
    (0.3, 0.017, 0.524)
    """
    estimate = second.estimate - first.estimate
    low = estimate - math.hypot(second.estimate - second.low, first.high - first.estimate)
    high = estimate + math.hypot(second.high - second.estimate, first.estimate - first.low)
    return Interval(estimate, max(-1.0, low), min(1.0, high))


def mcnemar_exact(first: np.ndarray, second: np.ndarray) -> float:
    """Two-sided exact McNemar test of paired 0/1 outcomes (same dialogues, two conditions)."""
    first, second = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    only_first = int(np.sum(first & ~second))
    only_second = int(np.sum(~first & second))
    discordant = only_first + only_second
    if discordant == 0:
        return 1.0
    tail = sum(math.comb(discordant, k) for k in range(min(only_first, only_second) + 1))
    return float(min(1.0, 2 * tail / 2**discordant))


def _binomial(n: int, p: float) -> np.ndarray:
    return np.array([math.comb(n, j) * p**j * (1 - p) ** (n - j) for j in range(n + 1)])


def slot_permutation_test(masked: np.ndarray, controls: np.ndarray) -> float:
    """Two-sided exact test that the emotion's set is one more control set.

    ``masked`` holds each dialogue's 0/1 outcome with the set masked, ``controls`` (k seeds x
    dialogues) the outcomes with each control set masked. Under the null the k+1 outcomes of a
    dialogue are exchangeable, so which slot is the masked one is uniform and independent
    across dialogues. The statistic is T = sum over dialogues of (control mean - masked); a
    dialogue with s of its k+1 outcomes correct contributes s/k - (1 + 1/k) x (masked slot's
    outcome), where that outcome is 1 with probability s/(k+1). Dialogues sharing s add up to a
    binomial, and the null distribution of T is the exact convolution of those binomials. The
    p-value doubles the smaller tail. With k = 1 this is McNemar's exact test."""
    masked = np.asarray(masked, dtype=np.int64)
    controls = np.atleast_2d(np.asarray(controls, dtype=np.int64))
    seeds = controls.shape[0]
    correct = masked + controls.sum(axis=0)
    # T in units of 1/k: sum(s) - (k+1) x (number of dialogues whose masked slot is correct).
    observed = int(np.sum(correct)) - (seeds + 1) * int(masked.sum())
    null = np.array([1.0])  # distribution of the number of correct masked slots
    for s in range(1, seeds + 1):  # s = 0 or k+1: every slot alike, no contribution
        count = int(np.sum(correct == s))
        if count:
            null = np.convolve(null, _binomial(count, s / (seeds + 1)))
    # T = constant - (k+1) x that number: the tails swap.
    constant = int(np.sum(correct[(correct > 0) & (correct <= seeds)]))
    values = constant - (seeds + 1) * np.arange(len(null))
    upper = float(null[values >= observed].sum())
    lower = float(null[values <= observed].sum())
    return min(1.0, 2 * min(upper, lower))


def min_detectable_drop(n: int, baseline: float, alpha: float = 0.05 / HOLM_FAMILY,
                        power: float = 0.8) -> float:
    """Smallest accuracy drop McNemar's exact test against the baseline detects at ``alpha``
    with probability ``power``, on ``n`` dialogues of which ``baseline`` are right, in the
    best case: masking only loses right answers, each independently with probability q, so
    the drop is q x baseline and all discordant pairs point one way. ``inf`` when even losing
    every right answer could not reach ``alpha``; NaN when there are no dialogues."""
    if n == 0:
        return math.nan
    right = round(baseline * n)
    needed = next((d for d in range(1, right + 1)
                   if mcnemar_exact(np.ones(d), np.zeros(d)) <= alpha), None)
    if needed is None:
        return math.inf

    def shortfall(q: float) -> float:  # decreasing in q
        return power - float(_binomial(right, q)[needed:].sum())

    return _solve_decreasing(shortfall, 0.0, 0.0, 1.0) * right / n


def near_chance(outcomes: np.ndarray, chance: float = CHANCE) -> bool:
    """True when the accuracy's Wilson lower bound is at or below chance: masking cannot show
    a drop on this emotion."""
    return bool(wilson_interval(outcomes).low <= chance)


def power_note(min_drop: float, baseline: float, is_near_chance: bool,
               chance: float = CHANCE) -> str:
    """What a null result on this emotion can mean, in words."""
    if is_near_chance:
        return "cannot show a drop (baseline near chance)"
    if not min_drop <= baseline - chance:
        return "underpowered: even a drop to chance could be missed"
    return f"no drop larger than {100 * min_drop:.0f} points is likely missed (80% power)"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error across the given tests)."""
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
