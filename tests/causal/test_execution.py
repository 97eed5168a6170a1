"""Which neurons a condition removes (ablation_for): the emotion's top-ranked share within a
layer range, or a control set matched to it."""

from __future__ import annotations

import math
from dataclasses import replace
from fractions import Fraction

import numpy as np
import pytest
import torch

from emoneuron.causal.conditions.grid import Condition, grid
from emoneuron.causal.config import DEFAULT_PROPORTIONS, LAYER_RANGES, Design
from emoneuron.causal.evaluation.execution import Sources, ablation_for
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.data.schema import EMOTIONS
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.controls import ShuffledControl, null_matched
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets

# -- ablation_for ------------------------------------------------------------------------------

N_LAYERS, WIDTH = 6, 20  # thirds of 6 layers: {0, 1}, {2, 3}, {4, 5}
THIRDS = {"bottom": {0, 1}, "middle": {2, 3}, "top": {4, 5}, "all": set(range(N_LAYERS))}
# Anger, ranked best first. Layer 0 holds 8 of its 20 neurons, so a control that did not
# exclude the emotion's own neurons would hit one of them almost always.
ANGER = [(0, 0), (2, 5), (0, 1), (4, 9), (0, 2), (1, 3), (0, 3), (5, 11), (0, 4), (3, 7),
         (0, 5), (0, 6), (2, 8), (0, 7), (4, 2)]
OTHERS = {"disgust": [(0, 10), (1, 3)], "fear": [(2, 5)], "happiness": [],
          "sadness": [(5, 0), (5, 1), (4, 4)], "surprise": [(3, 3)]}


SOURCES = Sources(ActivationStats.zeros(N_LAYERS, WIDTH, DEFAULT_SITE, "dialogue"))


def _neurons(positions: list[tuple[int, int]]) -> list[Neuron]:
    return [Neuron(layer, index, 1.0 - 0.01 * rank)
            for rank, (layer, index) in enumerate(positions)]


@pytest.fixture
def sets() -> NeuronSets:
    emotions = {"anger": _neurons(ANGER), **{e: _neurons(p) for e, p in OTHERS.items()}}
    return NeuronSets(model="toy", site="mlp.down_proj.input", n_layers=N_LAYERS, width=WIDTH,
                      config=IdentifyConfig(), emotions=emotions)


def _pairs(ablation: Ablation) -> list[tuple[int, int]]:
    return [(layer, index) for layer, indices in ablation.neurons for index in indices]


def _per_layer(ablation: Ablation) -> dict[int, int]:
    return {layer: len(indices) for layer, indices in ablation.neurons}


def test_baseline_removes_nothing(sets: NeuronSets) -> None:
    ablation = ablation_for(Condition("baseline"), sets, SOURCES)
    assert ablation.size == 0
    assert ablation.neurons == ()


def test_full_mask_removes_the_whole_set(sets: NeuronSets) -> None:
    ablation = ablation_for(Condition("mask", "anger"), sets, SOURCES)
    assert sorted(_pairs(ablation)) == sorted(ANGER)
    assert ablation.size == len(ANGER)
    assert ablation.mode == "zero"


@pytest.mark.parametrize("layer_range", LAYER_RANGES)
@pytest.mark.parametrize("proportion", [0.1, *DEFAULT_PROPORTIONS])
def test_proportion_takes_the_top_ranked_within_the_range(sets: NeuronSets, layer_range: str,
                                                          proportion: float) -> None:
    in_third = [pos for pos in ANGER if pos[0] in THIRDS[layer_range]]
    count = math.ceil(Fraction(str(proportion)) * len(in_third))
    ablation = ablation_for(Condition("mask", "anger", layer_range, proportion), sets, SOURCES)
    assert sorted(_pairs(ablation)) == sorted(in_third[:count])


def test_pinned_proportion_examples(sets: NeuronSets) -> None:
    # ceil(1.8) of 9, ceil(1.2) of 3, ceil(0.6) of 3
    bottom = ablation_for(Condition("mask", "anger", "bottom", 0.2), sets, SOURCES)
    assert sorted(_pairs(bottom)) == [(0, 0), (0, 1)]
    middle = ablation_for(Condition("mask", "anger", "middle", 0.4), sets, SOURCES)
    assert sorted(_pairs(middle)) == [(2, 5), (3, 7)]
    top = ablation_for(Condition("mask", "anger", "top", 0.2), sets, SOURCES)
    assert _pairs(top) == [(4, 9)]


def test_every_grid_condition_removes_the_expected_count(sets: NeuronSets) -> None:
    for condition in grid(Design((0, 1), ("random",), dose_strengths=())):
        if condition.kind == "baseline":
            continue
        ranked = [n for n in sets.emotions[condition.masked_emotion]
                  if n.layer in THIRDS[condition.layer_range]]
        expected = math.ceil(Fraction(str(condition.proportion)) * len(ranked))
        assert ablation_for(condition, sets, SOURCES).size == expected, condition.key


def _small_null(sets: NeuronSets) -> ShuffledControl:
    """A shuffled-label null that ranks only three neurons at all: far fewer than any set."""
    candidates = torch.zeros(N_LAYERS, WIDTH, dtype=torch.bool)
    candidates[0, [12, 15]] = True
    candidates[5, 19] = True
    score = torch.rand(N_LAYERS, WIDTH, generator=torch.Generator().manual_seed(0))
    neurons, filled = {}, {}
    for e, emotion in enumerate(EMOTIONS):
        neurons[emotion], filled[emotion] = null_matched(
            sets.layer_indices(emotion), sets, emotion, candidates, score,
            np.random.default_rng([0, e]))
    return ShuffledControl(0, neurons, filled)


@pytest.mark.parametrize(("layer_range", "proportion"), [("all", 1.0), ("bottom", 0.6),
                                                         ("all", 0.4)])
def test_shuffled_control_has_the_sets_per_layer_counts_when_the_null_is_smaller(
        sets: NeuronSets, layer_range: str, proportion: float) -> None:
    sources = replace(SOURCES, shuffled={0: _small_null(sets)})
    for emotion in EMOTIONS:
        mask = ablation_for(Condition("mask", emotion, layer_range, proportion), sets, sources)
        control = ablation_for(Condition("control", emotion, layer_range, proportion, seed=0,
                                         control="shuffled"), sets, sources)
        assert _per_layer(control) == _per_layer(mask), emotion
        assert not set(_pairs(control)) & {(n.layer, n.index) for n in sets.emotions[emotion]}
    anger = ablation_for(Condition("control", "anger", seed=0, control="shuffled"), sets,
                         sources)
    assert {12, 15} <= set(dict(anger.neurons)[0])  # the null's own choices come first


def test_interventions_act_at_the_sets_site(sets: NeuronSets) -> None:
    at_activation = replace(sets, site=ACTIVATION_SITE)
    for condition in (Condition("mask", "anger"),
                      Condition("control", "anger", seed=0, control="random")):
        assert ablation_for(condition, at_activation, SOURCES).site == ACTIVATION_SITE


@pytest.mark.parametrize(("layer_range", "proportion"), [("all", 1.0), ("bottom", 0.6),
                                                         ("top", 1.0), ("all", 0.4)])
def test_control_matches_per_layer_counts_and_avoids_own_neurons(
        sets: NeuronSets, layer_range: str, proportion: float) -> None:
    mask = ablation_for(Condition("mask", "anger", layer_range, proportion), sets, SOURCES)
    own = set(ANGER)
    for seed in range(20):
        control = ablation_for(
            Condition("control", "anger", layer_range, proportion, seed=seed, control="random"),
            sets, SOURCES)
        assert _per_layer(control) == _per_layer(mask)
        pairs = _pairs(control)
        assert len(pairs) == len(set(pairs))
        assert not set(pairs) & own, seed
        assert all(0 <= index < WIDTH for _, index in pairs)


def test_control_is_deterministic_per_seed_and_differs_between_seeds(sets: NeuronSets) -> None:
    def control(seed: int) -> Ablation:
        condition = Condition("control", "anger", control="random", seed=seed)
        return ablation_for(condition, sets, SOURCES)

    assert control(3) == control(3)
    assert len({tuple(_pairs(control(seed))) for seed in range(5)}) == 5


def _hundred_neuron_sets() -> NeuronSets:
    anger = [Neuron(0, index, 1.0 - 0.001 * index) for index in range(100)]
    emotions = {e: anger if e == "anger" else [] for e in EMOTIONS}
    return NeuronSets(model="toy", site="s", n_layers=1, width=200, config=IdentifyConfig(),
                      emotions=emotions)


def test_proportion_count_is_not_inflated_by_float_error() -> None:
    condition = Condition("mask", "anger", "all", 0.55)
    ablation = ablation_for(condition, _hundred_neuron_sets(), SOURCES)
    assert ablation.size == 55
