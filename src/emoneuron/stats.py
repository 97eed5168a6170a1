"""Bootstrap confidence intervals for accuracies and paired accuracy differences.

Every interval resamples evaluation dialogues with replacement (percentile bootstrap, 95% by
default). Differences are *paired*: the same resampled dialogues enter both conditions, which is
what makes a drop on a few dozen dialogues testable at all.
"""

from __future__ import annotations

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
