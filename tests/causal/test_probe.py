"""The label-free probe: features equal a hand-computed forward pass, the probe finds planted
structure and only that, round trips, and ablations change only the layers after them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.evaluation.probe import (
    Probe,
    emotion_labels,
    layers_after,
    probe_outcomes,
    residual_features,
    stratified_folds,
)
from emoneuron.data.render import render_dialogue, tokens_in_spans
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.models.embedded import EMBEDDED
from emoneuron.models.loading import LoadedModel, load
from emoneuron.recording.statistics import save_tensors


def _hand_features(loaded: LoadedModel, record: Record) -> torch.Tensor:
    """(layers + 1, hidden): one unpadded forward pass, the mean over the dialogue's words."""
    rendered = render_dialogue(record)
    encoded = loaded.tokenizer(rendered.text, return_offsets_mapping=True)
    words = torch.tensor(tokens_in_spans(encoded["offset_mapping"], rendered.spans))
    assert 0 < int(words.sum()) < len(words), "speaker tags must be left out: cannot fail"
    with torch.no_grad():
        states = loaded.model(input_ids=torch.tensor([encoded["input_ids"]]),
                              output_hidden_states=True).hidden_states
    return torch.stack([state[0, words].mean(0) for state in states])


def test_features_equal_a_hand_computed_forward_pass(tiny: LoadedModel,
                                                     records: list[Record]) -> None:
    # records[1] is the shortest: in one batch with the others most of its row is padding.
    features = residual_features(tiny, records, batch_size=len(records))
    assert features.shape == (len(records), tiny.n_layers + 1, 32)
    assert features.dtype == torch.float32
    for index in (1, 2):
        torch.testing.assert_close(features[index], _hand_features(tiny, records[index]),
                                   atol=1e-5, rtol=1e-5)
    # Every token's mean is another number: the word mask matters.
    encoded = tiny.tokenizer(render_dialogue(records[2]).text, return_tensors="pt")
    with torch.no_grad():
        every_token = tiny.model(**encoded, output_hidden_states=True).hidden_states[-1]
    assert (every_token[0].mean(0) - features[2, -1]).abs().max() > 1e-3


def test_features_do_not_depend_on_batch_size(tiny: LoadedModel, records: list[Record]) -> None:
    one = residual_features(tiny, records, batch_size=1)
    for batch_size in (3, len(records)):
        torch.testing.assert_close(residual_features(tiny, records, batch_size=batch_size), one,
                                   atol=1e-5, rtol=1e-5)


def test_ablating_a_whole_layer_changes_only_the_layers_after_it(
        tiny: LoadedModel, records: list[Record]) -> None:
    layer = tiny.n_layers - 1
    every_neuron = Ablation.of({layer: range(tiny.width)})
    clean = residual_features(tiny, records)
    ablated = residual_features(tiny, records, every_neuron)
    after = list(layers_after(every_neuron, tiny.n_layers))
    assert after == [tiny.n_layers]
    before = [index for index in range(tiny.n_layers + 1) if index not in after]
    torch.testing.assert_close(ablated[:, before], clean[:, before])
    assert ((ablated[:, after] - clean[:, after]).abs().amax(-1) > 1e-4).all()


def test_the_dialogue_scope_spares_speaker_tags(tiny: LoadedModel,
                                                 records: list[Record]) -> None:
    # At layer 0, what the ablation does at a speaker tag reaches the words through attention.
    every_neuron = {0: range(tiny.width)}
    clean = residual_features(tiny, records)
    everywhere = residual_features(tiny, records, Ablation.of(every_neuron))
    words_only = residual_features(tiny, records, Ablation.of(every_neuron, tokens="dialogue"))
    torch.testing.assert_close(words_only[:, 0], clean[:, 0])
    assert (words_only[:, 1:] - clean[:, 1:]).abs().max() > 1e-4
    assert (words_only[:, -1] - everywhere[:, -1]).abs().max() > 1e-4


def test_an_early_ablation_leaves_only_the_embeddings_unchanged(
        make_tiny: object, records: list[Record]) -> None:
    gemma = make_tiny("gemma3")  # type: ignore[operator]
    ablation = Ablation.of({0: range(gemma.width)})
    assert list(layers_after(ablation, gemma.n_layers)) == [1, 2, 3]
    changed = (residual_features(gemma, records, ablation)
               - residual_features(gemma, records)).abs().amax((0, 2))
    assert changed[0] == 0 and (changed[1:] > 1e-4).all()


def test_the_answer_position_scope_is_refused(tiny: LoadedModel, records: list[Record]) -> None:
    with pytest.raises(UserError, match="no answer position"):
        residual_features(tiny, records, Ablation.of({0: [1]}, tokens="last"))


def test_layers_after() -> None:
    assert list(layers_after(Ablation.of({0: [1]}), 2)) == [1, 2]
    assert list(layers_after(Ablation.of({}), 2)) == []
    with pytest.raises(UserError, match="beyond this model's 2 layers"):
        layers_after(Ablation.of({2: [1]}), 2)


def _planted(per_emotion: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (N, 4, 16): layers 1 and 3 shift a class-dependent mean, 0 and 2 are noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(per_emotion * len(EMOTIONS)) % len(EMOTIONS)
    features = torch.randn(len(labels), 4, 16, generator=generator)
    centres = torch.randn(len(EMOTIONS), 16, generator=torch.Generator().manual_seed(99))
    features[:, 1] += 1.5 * centres[labels]
    features[:, 3] += 0.7 * centres[labels]
    return features, labels


def test_probe_finds_planted_structure_and_nothing_else() -> None:
    train, train_labels = _planted(30, seed=1)
    test, test_labels = _planted(100, seed=2)
    probe = Probe.fit(train, train_labels).with_held_out(test, test_labels)
    accuracy = probe.held_out_accuracy
    assert accuracy[1] > 0.9 and accuracy[3] > 0.5, accuracy
    # Noise layers: about chance, within 4 binomial standard deviations at n 600.
    chance, n = 1 / len(EMOTIONS), len(test_labels)
    bound = 4 * math.sqrt(chance * (1 - chance) / n)
    assert abs(accuracy[0] - chance) < bound and abs(accuracy[2] - chance) < bound, accuracy
    # On the noise layers the training data is fitted far better than held-out data: the
    # held-out number is the honest one.
    assert probe.train_accuracy[0] > accuracy[0] + 0.1
    assert all(0 < c <= 1 for c in probe.cross_validated_accuracy)
    assert set(probe.l2) <= set(probe.l2_candidates)
    correct = probe.correct(test, test_labels)
    assert correct.shape == (n, 4) and correct.dtype == bool
    np.testing.assert_allclose(correct.mean(0), accuracy)


def test_cross_validation_chooses_the_penalty_and_is_seeded() -> None:
    train, labels = _planted(12, seed=3)
    first, again = Probe.fit(train, labels, seed=4), Probe.fit(train, labels, seed=4)
    assert torch.equal(first.weight, again.weight) and first.l2 == again.l2
    # A noise layer needs more shrinkage than the strongly planted one.
    assert first.l2[0] > first.l2[1], first.l2
    fixed = Probe.fit(train, labels, l2=0.5)
    assert fixed.l2 == (0.5,) * 4 and fixed.cross_validated_accuracy == ()
    # A stronger penalty shrinks the weights: the penalty reaches the fit.
    assert fixed.weight.norm() < Probe.fit(train, labels, l2=0.01).weight.norm()


def test_fewer_dialogues_than_features_fit_the_same_probe() -> None:
    """Below as many dialogues as features the fit runs in the span of the dialogues; with each
    dialogue twice (the same mean loss and standardisation) it runs on all features."""
    features, labels = _planted(5, seed=8)  # 30 dialogues, 16 features
    features = torch.cat([features, torch.randn(30, 4, 24)], dim=2)  # 40 features
    reduced = Probe.fit(features, labels, l2=0.1)
    full = Probe.fit(features.repeat(2, 1, 1), labels.repeat(2), l2=0.1)
    torch.testing.assert_close(reduced.weight, full.weight, atol=2e-3, rtol=0)
    torch.testing.assert_close(reduced.bias, full.bias, atol=2e-3, rtol=0)
    assert reduced.weight.abs().max() > 0.05


def test_folds_are_stratified_and_seeded() -> None:
    labels = torch.arange(60) % 6
    folds = stratified_folds(labels, 5, seed=0)
    for fold in range(5):
        assert torch.bincount(labels[folds == fold], minlength=6).tolist() == [2] * 6
    assert torch.equal(folds, stratified_folds(labels, 5, seed=0))
    assert not torch.equal(folds, stratified_folds(labels, 5, seed=1))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    train, labels = _planted(10, seed=5)
    probe = Probe.fit(train, labels, folds=3).with_held_out(*_planted(5, seed=6))
    probe.save(tmp_path / "probe.safetensors", {"model": "tiny"})
    loaded = Probe.load(tmp_path / "probe.safetensors")
    for name in ("weight", "bias", "mean", "std"):
        assert torch.equal(getattr(loaded, name), getattr(probe, name)), name
    assert loaded.description() == probe.description()
    np.testing.assert_array_equal(loaded.predict(train), probe.predict(train))
    readable = json.loads((tmp_path / "probe.json").read_text())
    assert readable["model"] == "tiny" and readable["held_out_accuracy"] == list(
        probe.held_out_accuracy)
    assert not list(tmp_path.glob(".*.tmp"))


def test_another_file_is_not_loaded_as_a_probe(tmp_path: Path) -> None:
    save_tensors(tmp_path / "stats.safetensors", {"sum": torch.zeros(2)}, {"format": "1"})
    with pytest.raises(UserError, match="not a probe file"):
        Probe.load(tmp_path / "stats.safetensors")


def test_bad_inputs_are_refused_in_one_line() -> None:
    train, labels = _planted(3, seed=7)
    with pytest.raises(UserError, match="too few training dialogues for anger"):
        Probe.fit(train[1:], labels[1:])
    with pytest.raises(UserError, match=r"labels range 0\.\.6"):
        Probe.fit(train, labels.clone().fill_(6).index_fill_(0, torch.tensor([0]), 0))
    with pytest.raises(UserError, match="one label per dialogue"):
        Probe.fit(train, labels[:-1], l2=1.0)
    with pytest.raises(UserError, match="positive penalty"):
        Probe.fit(train, labels, l2=0.0)
    probe = Probe.fit(train, labels, l2=1.0)
    with pytest.raises(UserError, match="computed on another model"):
        probe.predict(train[:, :, :8])


def test_probe_outcomes_read_the_ablated_forward_pass(tiny: LoadedModel) -> None:
    records = synthesize(2, seed=0, max_turns=2)
    labels = emotion_labels(records)
    assert labels.tolist() == [EMOTIONS.index(r.emotion) for r in records]
    probe = Probe.fit(residual_features(tiny, records), labels, l2=1e-3)
    assert min(probe.train_accuracy) == 1.0  # 12 dialogues in 32 dimensions: memorised
    clean = probe_outcomes(tiny, probe, records)
    assert clean.all()
    # Every neuron of layer 0 clamped high writes one large vector into every dialogue's
    # residual stream: the dialogues look alike from there on.
    drowned = Ablation.of({0: range(tiny.width)}, mode="clamp", strength=100.0)
    ablated = probe_outcomes(tiny, probe, records, drowned)
    assert ablated.shape == (len(records), tiny.n_layers + 1)
    assert ablated[:, 0].all()  # the embeddings come before the ablation
    after = list(layers_after(drowned, tiny.n_layers))
    assert not ablated[:, after].all(0).any(), "every layer after the set loses dialogues"
    assert ablated[:, after].mean() < 0.7


@pytest.mark.skipif(not EMBEDDED["smollm2-135m"].installed(),
                    reason="needs the embedded SmolLM2 (make installs it)")
def test_smollm2_represents_the_emotion_while_reading() -> None:
    """20 synthetic dialogues per emotion, 10 to train and 10 held out: the best layer's
    held-out accuracy is far above chance.

    Measured at seed 0 (60 held out, chance 0.17): 0.78 at layer 0 (the embeddings), 0.80-0.93
    at layers 1-30, best 0.93 (layers 15, 16, 23); cross-validated on the training half
    0.72-0.97. On 2 shared, busy CPU cores (load 7-8): load 9 s, features 160 s (5,074
    tokens; about 25 s at the 200 tokens/s of free cores, estimated), fit 86 s. Layer 0 is
    high: the synthetic dialogues' words carry the emotion (docs/methods.md, the probe)."""
    smollm2 = load("smollm2-135m")
    records = synthesize(20, seed=0, max_turns=2)
    train = [r for r in records if int(r.id.rsplit("-", 1)[1]) < 10]
    held_out = [r for r in records if r not in train]
    probe = Probe.fit(residual_features(smollm2, train), emotion_labels(train))
    probe = probe.with_held_out(residual_features(smollm2, held_out), emotion_labels(held_out))
    assert max(probe.held_out_accuracy) > 0.6, probe.held_out_accuracy
    assert probe.held_out_accuracy[0] < max(probe.held_out_accuracy)
