"""The statistics against independent computations on raw samples.

Welch's t and the frequency difference are computed with numpy from the raw values; the AUROC
from histograms is compared with the exact Mann-Whitney AUROC over all pairs of raw values, and
the histograms themselves are counted with plain comparisons against the bin edges.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.recording.statistics import N_BINS, ActivationStats, bin_edges
from emoneuron.selection.scores import (
    STATISTICS,
    auroc,
    compute_scores,
    frequency_difference,
    welch_t,
)

N_NEURONS = 4


def _samples(seed: int = 0) -> list[np.ndarray]:
    """Raw activations per emotion, (tokens, neurons): neuron 0 shifted up for fear, neuron 1
    identical for all, neuron 2 log-normal with a larger scale for anger, neuron 3 mostly
    exactly zero (ReLU-like) and more often positive for sadness."""
    rng = np.random.default_rng(seed)
    samples = []
    for e, emotion in enumerate(EMOTIONS):
        n = 150 + 20 * e
        values = np.empty((n, N_NEURONS))
        values[:, 0] = rng.normal(0.8 if emotion == "fear" else 0.0, 0.5, n)
        values[:, 1] = rng.normal(0.1, 1.0, n)
        values[:, 2] = rng.lognormal(0.5 if emotion == "anger" else -1.0, 1.0, n)
        rate = 0.6 if emotion == "sadness" else 0.2
        values[:, 3] = np.where(rng.random(n) < rate, rng.exponential(0.3, n), 0.0)
        samples.append(values)
    return samples


def _histogram(values: np.ndarray) -> np.ndarray:
    """(neurons, bins) counts by comparisons: bin b holds edges[b-1] <= x < edges[b]."""
    edges = bin_edges().numpy()
    lower = np.concatenate([[-np.inf], edges])
    upper = np.concatenate([edges, [np.inf]])
    inside = (values[:, :, None] >= lower) & (values[:, :, None] < upper)
    return inside.sum(0)


def _stats(samples: list[np.ndarray]) -> ActivationStats:
    """Per-emotion sufficient statistics of the raw samples, one layer."""
    def per_emotion(reduce) -> torch.Tensor:  # type: ignore[no-untyped-def]
        return torch.tensor(np.stack([reduce(v) for v in samples]))[:, None, :]

    return ActivationStats(
        tokens=torch.tensor([float(len(v)) for v in samples], dtype=torch.float64),
        active=per_emotion(lambda v: (v > 0).sum(0).astype(float)),
        sum=per_emotion(lambda v: v.sum(0)), sum_sq=per_emotion(lambda v: (v ** 2).sum(0)),
        histogram=per_emotion(_histogram).to(torch.int32))


def _exact_auroc(positive: np.ndarray, negative: np.ndarray) -> float:
    greater = (positive[:, None] > negative[None, :]).mean()
    equal = (positive[:, None] == negative[None, :]).mean()
    return float(greater + 0.5 * equal)


def test_welch_t_equals_numpy() -> None:
    samples = _samples()
    t = welch_t(_stats(samples))
    for e in range(len(EMOTIONS)):
        rest = np.concatenate([v for i, v in enumerate(samples) if i != e])
        mine = samples[e]
        expected = (mine.mean(0) - rest.mean(0)) / np.sqrt(
            mine.var(0, ddof=1) / len(mine) + rest.var(0, ddof=1) / len(rest))
        np.testing.assert_allclose(t[e, 0].numpy(), expected, rtol=1e-8)
    assert t[EMOTIONS.index("fear"), 0, 0] > 10  # the planted shift is found


def test_frequency_difference_equals_numpy() -> None:
    samples = _samples()
    difference = frequency_difference(_stats(samples))
    for e in range(len(EMOTIONS)):
        rest = np.concatenate([v for i, v in enumerate(samples) if i != e])
        expected = (samples[e] > 0).mean(0) - (rest > 0).mean(0)
        np.testing.assert_allclose(difference[e, 0].numpy(), expected, rtol=1e-10)


def test_histogram_auroc_is_within_the_documented_bound_of_the_exact_auroc() -> None:
    samples = _samples()
    stats = _stats(samples)
    assert stats.histogram is not None and stats.histogram.shape[-1] == N_BINS
    approximate = auroc(stats)
    edges = bin_edges().numpy()
    for e in range(len(EMOTIONS)):
        rest = np.concatenate([v for i, v in enumerate(samples) if i != e])
        for neuron in range(N_NEURONS):
            exact = _exact_auroc(samples[e][:, neuron], rest[:, neuron])
            # The bound: half the probability that a pair shares a bin.
            p = np.bincount(np.searchsorted(edges, samples[e][:, neuron], side="right"),
                            minlength=N_BINS) / len(samples[e])
            q = np.bincount(np.searchsorted(edges, rest[:, neuron], side="right"),
                            minlength=N_BINS) / len(rest)
            error = abs(float(approximate[e, 0, neuron]) - exact)
            assert error <= 0.5 * float(p @ q) + 1e-12, (e, neuron)
            assert error < 0.03, (e, neuron, exact)  # and small for these distributions
    fear, anger, sadness = (EMOTIONS.index(e) for e in ("fear", "anger", "sadness"))
    assert approximate[fear, 0, 0] > 0.8 and approximate[anger, 0, 2] > 0.8
    assert approximate[sadness, 0, 3] > 0.6
    assert abs(float(approximate[fear, 0, 1]) - 0.5) < 0.1  # no signal, about one half


def test_auroc_without_histograms_is_a_user_error() -> None:
    stats = _stats(_samples())
    stats.histogram = None
    with pytest.raises(UserError, match="histograms"):
        auroc(stats)


def test_unknown_statistic_is_a_user_error() -> None:
    with pytest.raises(UserError, match="entropy"):
        compute_scores(_stats(_samples()), "entropy")


@pytest.mark.parametrize("statistic", STATISTICS)
def test_every_statistic_ranks_the_planted_neurons(statistic: str) -> None:
    scores = compute_scores(_stats(_samples()), statistic, activity_quantile=0.0)
    assert scores.per_emotion.shape == (len(EMOTIONS), 1, N_NEURONS)
    best = scores.per_emotion[:, 0].argmax(0).tolist()
    if statistic != "lape":  # LAPE sees only activity, not the size of an activation
        assert best[0] == EMOTIONS.index("fear")
    assert best[3] == EMOTIONS.index("sadness")


def test_a_statistic_is_one_registry_entry() -> None:
    """The registry names every statistic once: the config's choices, what each reads and the
    function that scores it all come from its entry."""
    import typing

    from emoneuron.options import choices
    from emoneuron.selection import scores
    from emoneuron.selection.config import STATISTICS as REGISTRY
    from emoneuron.selection.config import IdentifyConfig, statistics_reading

    assert choices(typing.get_type_hints(IdentifyConfig)["statistic"]) == tuple(REGISTRY)
    assert set(scores.READS) == {entry.reads for entry in REGISTRY.values()}
    for entry in REGISTRY.values():
        assert callable(getattr(scores, entry.scorer)), entry
    assert statistics_reading("recording") == STATISTICS
    assert sum(map(len, map(statistics_reading, scores.READS))) == len(REGISTRY)
    with pytest.raises(UserError, match="an attribution pass"):
        compute_scores(_stats(_samples()), "attribution")
