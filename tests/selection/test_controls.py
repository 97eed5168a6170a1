"""Control sets are matched layer by layer and differ from random in the way they claim."""

from __future__ import annotations

import numpy as np
import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.controls import (
    frequency,
    frequency_matched,
    least_selective,
    null_matched,
    random_matched,
)
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets
from emoneuron.selection.scores import entropy_selectivity

N_LAYERS, WIDTH = 2, 400


def _stats() -> ActivationStats:
    """Neurons with spread-out firing rates and selectivities."""
    generator = torch.Generator().manual_seed(0)
    stats = ActivationStats.zeros(N_LAYERS, WIDTH, DEFAULT_SITE, "dialogue")
    stats.tokens[:] = 1000
    stats.active[:] = torch.rand((len(EMOTIONS), N_LAYERS, WIDTH), generator=generator) ** 3 * 1000
    return stats


def _sets() -> NeuronSets:
    # Anger owns the 12 most frequent neurons of layer 0 and 5 of layer 1.
    rates = frequency(_stats())
    top0 = torch.argsort(rates[0], descending=True)[:12].tolist()
    anger = [Neuron(0, i, 1.0) for i in top0] + [Neuron(1, i, 1.0) for i in range(5)]
    emotions = {e: anger if e == "anger" else [] for e in EMOTIONS}
    return NeuronSets("toy", DEFAULT_SITE, N_LAYERS, WIDTH, IdentifyConfig(), emotions)


def _own() -> dict[int, list[int]]:
    return _sets().layer_indices("anger")


def _check_matched(control: dict[int, list[int]]) -> None:
    own = _own()
    assert {k: len(v) for k, v in control.items()} == {k: len(v) for k, v in own.items()}
    for layer, indices in control.items():
        assert len(set(indices)) == len(indices)
        assert not set(indices) & set(own[layer])


def test_frequency_matched_controls_fire_as_often_as_the_set() -> None:
    stats, sets = _stats(), _sets()
    rates = frequency(stats).numpy()
    own = _own()
    gaps = {"frequency": [], "random": []}
    for seed in range(10):
        rng = np.random.default_rng(seed)
        matched = frequency_matched(own, sets, "anger", stats, rng)
        uniform = random_matched(own, sets, "anger", np.random.default_rng(seed))
        _check_matched(matched)
        _check_matched(uniform)
        for name, control in (("frequency", matched), ("random", uniform)):
            gaps[name].append(abs(rates[0, control[0]].mean() - rates[0, own[0]].mean()))
    # The set is the 12 most frequent neurons of the layer: a random draw is far below it.
    assert np.mean(gaps["frequency"]) < 0.25 * np.mean(gaps["random"]), gaps


def test_least_selective_controls_are_active_and_unselective() -> None:
    stats, sets = _stats(), _sets()
    control = least_selective(_own(), sets, "anger", stats)
    _check_matched(control)
    _, selectivity = entropy_selectivity(stats)
    rates = frequency(stats)
    for layer, indices in control.items():
        assert (rates[layer, indices] >= rates[layer].median()).all()
        assert selectivity[layer, indices].max() <= selectivity[layer].quantile(0.1)


def test_null_matched_ranks_by_the_null_score_and_fills_a_short_layer_at_random() -> None:
    sets, own = _sets(), _own()  # anger: 12 neurons in layer 0, 5 in layer 1
    score = torch.arange(N_LAYERS * WIDTH, dtype=torch.float64).view(N_LAYERS, WIDTH)
    candidates = torch.zeros(N_LAYERS, WIDTH, dtype=torch.bool)
    candidates[0, 300:] = True  # plenty in layer 0 (own neurons excluded)
    candidates[1, [50, 60]] = True  # two in layer 1, where the set has five
    candidates[1, 3] = True  # one of anger's own: never a control
    control, filled = null_matched(own, sets, "anger", candidates, score,
                                   np.random.default_rng(0))
    _check_matched(control)
    best = [i for i in range(WIDTH - 1, 299, -1) if i not in own[0]][:12]
    assert control[0] == best
    assert control[1][:2] == [60, 50]
    assert filled == {0: 0, 1: 3}


def test_shuffled_control_matches_every_sets_layer_counts(make_tiny) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from emoneuron.data.synth import synthesize
    from emoneuron.errors import UserError
    from emoneuron.recording.recorder import record
    from emoneuron.selection.controls import shuffled_controls
    from emoneuron.selection.identify import identify

    loaded = make_tiny("llama")
    recording = record(loaded, synthesize(8, seed=0, max_turns=2), RecordConfig(batch_size=8),
                       progress=False)
    for config in (IdentifyConfig(assignment="argmax", share=0.05),
                   IdentifyConfig(share=0.05, assignment="lape", activity_quantile=0.5)):
        real = identify(recording, config, "tiny")
        first, again = (shuffled_controls(recording, config, real, (0, 1)) for _ in range(2))
        assert first == again  # seeded
        for control in first.values():
            for emotion in EMOTIONS:
                own = real.layer_indices(emotion)
                matched = control.matched(own, emotion)
                assert {k: len(v) for k, v in matched.items()} == {
                    k: len(v) for k, v in own.items()}, emotion
                for layer, indices in matched.items():
                    assert len(set(indices)) == len(indices)
                    assert not set(indices) & set(own[layer])
        assert first[0].neurons != first[1].neurons
    with pytest.raises(UserError, match="the auroc statistic"):
        shuffled_controls(recording, IdentifyConfig(assignment="argmax",
                                                    statistic="auroc"), real, (0,))
