"""Bootstrap confidence intervals for accuracies and paired accuracy differences.

Every interval resamples evaluation dialogues with replacement (percentile bootstrap, 95% by
default). Differences are *paired*: the same resampled dialogues enter both conditions, which is
what makes a drop on a few dozen dialogues testable at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float
    p_value: float = float("nan")


def _resample_means(values: np.ndarray, n_bootstrap: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(values), size=(n_bootstrap, len(values)))
    return np.asarray(values[picks].mean(axis=1), dtype=np.float64)


def mean_interval(values: np.ndarray, n_bootstrap: int = N_BOOTSTRAP, seed: int = 0,
                  level: float = 0.95) -> Interval:
    """Mean of ``values`` (per-dialogue scores or paired differences) with a percentile
    interval and a two-sided bootstrap p-value for "the mean is 0"."""
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    means = _resample_means(values, n_bootstrap, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    p_value = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    if np.all(values == 0):
        p_value = 1.0
    return Interval(float(values.mean()), float(low), float(high), float(p_value))


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


def sign_flip_exact(differences: np.ndarray, resolution: int) -> float:
    """Two-sided exact paired sign-flip test that the mean difference is 0.

    ``differences`` are multiples of ``1 / resolution`` (a 0/1 outcome minus the mean of
    ``resolution`` control seeds' 0/1 outcomes). Under the null each difference's sign is a fair
    coin; the distribution of their sum is built exactly by convolution. With one control seed
    this is McNemar's exact test."""
    steps = np.rint(np.asarray(differences, dtype=np.float64) * resolution).astype(int)
    steps = np.abs(steps[steps != 0])
    if len(steps) == 0:
        return 1.0
    total = int(steps.sum())
    counts = np.zeros(2 * total + 1)
    counts[total] = 1.0  # index = sum + total
    for step in steps:
        counts = (np.roll(counts, step) + np.roll(counts, -step)) / 2
    observed = abs(int(np.rint(np.sum(np.asarray(differences) * resolution))))
    sums = np.arange(-total, total + 1)
    return float(min(1.0, counts[np.abs(sums) >= observed].sum()))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (family-wise error across the given tests)."""
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(len(p_values))
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()
