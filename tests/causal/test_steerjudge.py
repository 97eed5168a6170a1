"""Steering judged outside the classifier (:mod:`emoneuron.causal.experiments.steerjudge`): adding a
direction at alpha 0 changes no continuation, the probe judge names planted words' emotion, the
nulls match their unit, and the verdicts carry Holm's correction."""

from __future__ import annotations

import doctest
from collections.abc import Callable

import numpy as np
import pytest
import torch
from planted_words import SIGNATURES, planted

from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.evaluation.probe import emotion_labels, residual_features
from emoneuron.causal.evaluation.readout import probe_from
from emoneuron.causal.evaluation.residual import DirectionSteering
from emoneuron.causal.experiments import steerjudge
from emoneuron.causal.experiments.directions import EmotionDirections
from emoneuron.causal.experiments.dirtest import DirectionUnits
from emoneuron.causal.experiments.steer import continue_dialogues, neutral_prompts
from emoneuron.causal.experiments.steerjudge import (
    NO_CONTROL,
    NOT_BEYOND,
    TOWARD,
    UNSTEERED,
    Judged,
    generated_by_steer,
    judge_layer,
    judged_table,
    key,
    probe_judgements,
    steering_interventions,
)
from emoneuron.causal.inference.setlevel import Stratum, set_level_test
from emoneuron.causal.inference.significance import holm
from emoneuron.data.schema import EMOTIONS
from emoneuron.models.adapters import ACTIVATION_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.selection.config import IdentifyConfig
from emoneuron.selection.neurons import Neuron, NeuronSets

MakeTiny = Callable[[str], LoadedModel]


def test_steering_at_alpha_zero_is_the_identity(make_word_tiny: MakeTiny) -> None:
    loaded = make_word_tiny("llama")
    prompts = neutral_prompts()[:4]
    direction = torch.randn(32, generator=torch.Generator().manual_seed(0))
    unsteered = continue_dialogues(loaded, prompts, Ablation.of({}))
    for layer in (1, 2):
        assert continue_dialogues(loaded, prompts, DirectionSteering.of(
            {layer: direction}, alpha=0.0)) == unsteered
    # The same edit with a weight does change what the model writes: the test can fail.
    assert continue_dialogues(loaded, prompts, DirectionSteering.of(
        {1: direction}, alpha=50.0)) != unsteered


def test_the_probe_judge_names_the_emotion_of_planted_words(make_word_tiny: MakeTiny) -> None:
    """Continuations that are a planted dialogue's words on one line, read alone: the probe,
    trained on identification dialogues only, names their emotion at its judge layer."""
    loaded = make_word_tiny("llama")
    identify, held_out = planted(16, seed=0), planted(6, seed=1)
    train, labels = residual_features(loaded, identify), emotion_labels(identify)
    probe = probe_from(train, labels, residual_features(loaded, held_out),
                       emotion_labels(held_out))
    layer = judge_layer(probe.train_accuracy)
    texts = [" ".join(turn.text for turn in record.turns) for record in held_out]
    named = probe_judgements(loaded, probe, layer, texts, batch_size=5)
    assert (named == emotion_labels(held_out).numpy()).mean() >= 0.9
    # One signature word is enough, wherever it stands among the filler.
    alone = probe_judgements(loaded, probe, layer,
                             [f"the door {SIGNATURES[e]} book page" for e in EMOTIONS])
    assert alone.tolist() == list(range(len(EMOTIONS)))


def _sets() -> NeuronSets:
    """Anger's neurons in both layers of an 80-wide model, fear's in one; none for the rest."""
    emotions: dict[str, list[Neuron]] = {e: [] for e in EMOTIONS}
    emotions |= {"anger": [Neuron(0, 3, 1.0), Neuron(0, 7, 0.9), Neuron(1, 2, 0.8)],
                 "fear": [Neuron(1, 5, 1.0)]}
    return NeuronSets("tiny", ACTIVATION_SITE, 2, 80, IdentifyConfig(), emotions)


def test_each_unit_has_nulls_of_its_size_and_the_directions_share_theirs() -> None:
    features = torch.randn(24, 3, 32, generator=torch.Generator().manual_seed(1))
    labels = torch.arange(24) % 6
    units = DirectionUnits(EmotionDirections.fit(features, labels), features, labels, (1, 2))
    conditions = steering_interventions(_sets(), units, 4.0, seed=0, draws=3, alpha=2.5)
    assert next(iter(conditions)) == key(UNSTEERED) and not conditions[key(UNSTEERED)].size
    assert key("neurons", "disgust") not in conditions  # no neurons, nothing to steer
    for emotion in ("anger", "fear"):
        own = conditions[key("neurons", emotion)]
        assert isinstance(own, Ablation) and own.mode == "amplify" and own.strength == 4.0
        nulls = [conditions[key("neurons", emotion, draw)] for draw in range(3)]
        assert isinstance(own, Ablation)
        assert len({null.neurons for null in nulls if isinstance(null, Ablation)}) == 3
        for null in nulls:
            assert isinstance(null, Ablation) and null.mode == "amplify"
            assert null.layer_counts() == own.layer_counts()
            assert null.strength == 4.0 and null.site == own.site
            assert not {(layer, i) for layer, indices in null.neurons for i in indices} & {
                (layer, i) for layer, indices in own.neurons for i in indices}
    directions = [conditions[key("direction", emotion)] for emotion in EMOTIONS]
    nulls = [conditions[key("direction", draw=draw)] for draw in range(3)]
    assert len(conditions) == 1 + 2 * 4 + 6 + 3  # one null set of directions for all six
    for steering in (*directions, *nulls):
        assert isinstance(steering, DirectionSteering) and steering.alpha == 2.5
        assert [layer for layer, _ in steering.directions] == [1, 2]
        for _, vector in steering.directions:
            assert torch.tensor(vector).norm() == pytest.approx(1.0)
    assert len({steering.directions for steering in (*directions, *nulls)}) == 9


def test_the_classifier_steerings_continuations_are_named_as_these() -> None:
    steering = {"emotions": {e: {"none": {"continuations": ["same"]},
                                 "emotion": {"continuations": [f"{e}!"]}} for e in EMOTIONS}}
    generated = generated_by_steer(steering)
    assert generated[key(UNSTEERED)] == ["same"]
    assert generated[key("neurons", "fear")] == ["fear!"]
    assert set(generated) <= set(steering_interventions(
        NeuronSets("tiny", ACTIVATION_SITE, 2, 80, IdentifyConfig(),
                   {e: [Neuron(0, k, 1.0)] for k, e in enumerate(EMOTIONS)}),
        None, 4.0, seed=0, draws=0, alpha=0.0))


def _judged(steered: int, null: list[int], n: int = 12) -> Judged:
    """``steered`` of ``n`` continuations judged as the emotion, each null draw its count."""
    def outcome(count: int) -> np.ndarray:
        return np.arange(n) < count
    return Judged(outcome(steered), np.array([outcome(c) for c in null]), outcome(0), 5)


def test_verdicts_are_holm_corrected_across_the_six_emotions() -> None:
    """Six emotions whose steering each has p near 0.02 against its nulls: each alone is
    below 0.05, none survives Holm's correction across the six; a seventh, strong result in
    another unit's family is unaffected by them."""
    weak, nulls = 9, [2, 3, 4, 1, 5, 3, 2, 4]
    p = set_level_test([Stratum(1.0, _judged(weak, nulls).steered.astype(float),
                                _judged(weak, nulls).null.astype(float))]).p_value
    assert 0.05 / 6 < p < 0.05 and 6 * p > 0.05  # a verdict without Holm would differ
    results = {("neurons", "probe", e): _judged(weak, nulls) for e in EMOTIONS}
    results |= {("direction", "probe", e): _judged(12 if e == "anger" else 2, nulls)
                for e in EMOTIONS}
    table = judged_table(results)
    neurons = table[table.unit == "neurons"]
    assert neurons.p.tolist() == pytest.approx([p] * 6)
    assert neurons.p_holm.tolist() == pytest.approx(holm([p] * 6))
    assert set(neurons.verdict) == {NOT_BEYOND} and not neurons.toward.any()
    direction = table[table.unit == "direction"].set_index("emotion")
    assert direction.loc["anger", "verdict"] == TOWARD and direction.loc["anger", "toward"]
    assert direction.p_holm.tolist() == pytest.approx(holm(direction.p.tolist()))
    anger = direction.loc["anger"]
    assert anger.share == 1.0 and anger.share_ci_low < 1.0  # Wilson keeps a width
    assert anger.null_mean_share == pytest.approx(np.mean(nulls) / 12)
    assert anger.ci_low <= anger.excess <= anger.ci_high


def test_without_null_draws_there_is_no_verdict() -> None:
    table = judged_table({("neurons", "lexicon", e): _judged(12, []) for e in EMOTIONS})
    assert set(table.verdict) == {NO_CONTROL}
    assert table.p.isna().all() and table.p_holm.isna().all() and table.excess.isna().all()
    assert (table.share == 1.0).all() and (table.null_draws == 0).all()


def test_the_modules_examples_hold() -> None:
    assert doctest.testmod(steerjudge).failed == 0
