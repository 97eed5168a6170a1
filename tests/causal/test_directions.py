"""Emotion directions and the interventions along them: the edits equal a hand-computed forward
pass, the directions are centred differences of means that find a planted signal (and their
controls do not), and the direction-projection score is what zeroing a neuron removes."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from planted_words import FILLER, planted

from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.causal.evaluation.probe import emotion_labels, residual_features
from emoneuron.causal.evaluation.residual import (
    DirectionAblation,
    DirectionSteering,
    applied_direction,
)
from emoneuron.causal.experiments.directions import (
    EmotionDirections,
    direction_writes,
    emotion_directions,
    random_directions,
    shuffled_label_directions,
)
from emoneuron.data.schema import EMOTIONS, NEUTRAL, Record, Turn
from emoneuron.data.synth import synthesize
from emoneuron.errors import UserError
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import EncodedBatch, encode_for_recording, record
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.config import SELECTION_METHODS
from emoneuron.selection.identify import identify
from emoneuron.selection.scores import ProjectedStats, compute_scores, direction_projection

MakeTiny = Callable[[str], LoadedModel]
Edit = Callable[[torch.Tensor], torch.Tensor]


@pytest.fixture(scope="module")
def input_ids(tokenizer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    generator = torch.Generator().manual_seed(2)
    return torch.randint(3, len(tokenizer), (2, 10), generator=generator)


def _unit(size: int, seed: int) -> torch.Tensor:
    vector = torch.randn(size, generator=torch.Generator().manual_seed(seed))
    return vector / vector.norm()


def _hidden(loaded: LoadedModel) -> int:
    return int(loaded.model.config.get_text_config().hidden_size)


def _states(loaded: LoadedModel, input_ids: torch.Tensor) -> list[torch.Tensor]:
    """The logits, then every residual layer's hidden states (0 the embeddings, the top one
    after the final norm)."""
    with torch.no_grad():
        output = loaded.model(input_ids=input_ids, output_hidden_states=True)
    return [output.logits, *output.hidden_states]


def _reference(loaded: LoadedModel, input_ids: torch.Tensor, monkeypatch: pytest.MonkeyPatch,
               edits: dict[int, Edit]) -> list[torch.Tensor]:
    """:func:`_states` with each named residual layer's decoder layer's forward replaced by
    its own forward followed by ``edit``: no hook involved; undone before returning."""
    layers = loaded.adapter.layers(loaded.model)
    with monkeypatch.context() as patch:
        for residual_layer, edit in edits.items():
            layer = layers[residual_layer - 1]

            def forward(*args: Any, original: Any = layer.forward, edit: Edit = edit,
                        **kwargs: Any) -> torch.Tensor:
                return edit(original(*args, **kwargs))

            patch.setattr(layer, "forward", forward)
        return _states(loaded, input_ids)


def _hook_counts(loaded: LoadedModel) -> list[int]:
    # transformers keeps hooks of its own on the decoder layers: count, do not expect none.
    return [len(layer._forward_hooks) + len(layer._forward_pre_hooks)
            for layer in loaded.adapter.layers(loaded.model)]


def _close(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, atol=1e-5, rtol=1e-5)


# -- interventions -----------------------------------------------------------------------------

def test_directional_ablation_equals_a_hand_computed_forward_pass(
        tiny: LoadedModel, input_ids: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> None:
    clean = _states(tiny, input_ids)  # also installs transformers' hidden-state hooks first
    top = tiny.n_layers
    d1, d_top = _unit(_hidden(tiny), 1), _unit(_hidden(tiny), 2)

    def project(d: torch.Tensor) -> Edit:
        return lambda h: h - (h @ d).unsqueeze(-1) * d

    reference = _reference(tiny, input_ids, monkeypatch, {1: project(d1), top: project(d_top)})
    counts = _hook_counts(tiny)
    with applied_direction(tiny, DirectionAblation.of({1: d1 * 3, top: d_top})):
        ablated = _states(tiny, input_ids)
    _close(ablated, reference)
    torch.testing.assert_close(ablated[1], clean[1], atol=0, rtol=0)  # the embeddings
    assert (ablated[0] - clean[0]).abs().max() > 1e-3  # the edit changed the answer
    # The residual at layer 1 is exactly the clean one with d1 projected out, which the
    # hidden states report (transformers records them after the edit).
    torch.testing.assert_close(ablated[2], project(d1)(clean[2]), atol=1e-5, rtol=1e-5)
    assert _hook_counts(tiny) == counts


def test_after_ablation_the_residual_is_orthogonal_to_the_direction(
        tiny: LoadedModel, input_ids: torch.Tensor) -> None:
    layer = tiny.n_layers - 1 if tiny.n_layers > 2 else 1  # below the final norm
    d = _unit(_hidden(tiny), 3)
    clean = _states(tiny, input_ids)[1 + layer]
    with applied_direction(tiny, DirectionAblation.of({layer: d})):
        ablated = _states(tiny, input_ids)[1 + layer]
    assert ((clean @ d) / clean.norm(dim=-1)).abs().max() > 0.1  # cosines
    assert ((ablated @ d) / ablated.norm(dim=-1)).abs().max() < 1e-5


def test_steering_at_alpha_zero_is_the_identity_and_otherwise_adds_alpha_d(
        tiny: LoadedModel, input_ids: torch.Tensor) -> None:
    d = _unit(_hidden(tiny), 4)
    clean = _states(tiny, input_ids)
    with applied_direction(tiny, DirectionSteering.of({1: d}, alpha=0.0)):
        unchanged = _states(tiny, input_ids)
    for a, b in zip(unchanged, clean, strict=True):
        assert torch.equal(a, b)
    with applied_direction(tiny, DirectionSteering.of({1: 5 * d}, alpha=2.5)):
        steered = _states(tiny, input_ids)
    torch.testing.assert_close(steered[2] - clean[2], (2.5 * d).expand_as(clean[2]),
                               atol=1e-5, rtol=1e-5)
    assert (steered[0] - clean[0]).abs().max() > 1e-3


@pytest.mark.parametrize("edit", [DirectionAblation.of({1: [1.0]}),
                                  DirectionSteering.of({1: [1.0]}, alpha=3.0)],
                         ids=["ablation", "steering"])
def test_a_token_scope_edits_only_its_positions(make_tiny: MakeTiny, input_ids: torch.Tensor,
                                                edit: DirectionAblation) -> None:
    tiny = make_tiny("llama")
    d = _unit(_hidden(tiny), 5)
    scoped = type(edit).checked(((1, tuple(d.tolist())),), "dialogue",
                                **{name: getattr(edit, name) for name in edit.settings})
    where = torch.zeros(input_ids.shape, dtype=torch.bool)
    where[0, 2:6] = True
    where[1, 4:9] = True
    clean = _states(tiny, input_ids)[2]
    with applied_direction(tiny, scoped) as scope:
        scope.mask = where
        changed = _states(tiny, input_ids)[2]
    torch.testing.assert_close(changed[where], edit.edited(clean[where], d), atol=1e-5,
                               rtol=1e-5)
    assert (changed[where] - clean[where]).abs().max() > 1e-3
    assert torch.equal(changed[~where], clean[~where])  # layer 1's own output elsewhere


def test_hooks_are_removed_after_an_exception(make_tiny: MakeTiny,
                                              input_ids: torch.Tensor) -> None:
    tiny = make_tiny("gpt2")
    clean = _states(tiny, input_ids)
    counts = _hook_counts(tiny)
    ablation = DirectionAblation.of({1: _unit(_hidden(tiny), 6), 2: _unit(_hidden(tiny), 7)})
    with pytest.raises(RuntimeError, match="in the body"), applied_direction(tiny, ablation):
        assert _hook_counts(tiny) == [count + 1 for count in counts]
        raise RuntimeError("in the body")
    assert _hook_counts(tiny) == counts
    # Raised inside a hook: the dialogue scope without the dialogue's positions.
    scoped = DirectionAblation.checked(ablation.directions, "dialogue")
    with pytest.raises(UserError, match="dialogue"), applied_direction(tiny, scoped):
        _states(tiny, input_ids)
    assert _hook_counts(tiny) == counts
    for a, b in zip(_states(tiny, input_ids), clean, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("edit", [
    DirectionAblation.of({3: [0.5, -1.0, 2.0], 1: [1e-3, 7.0, 0.0]}),
    DirectionAblation.of({2: [1.0, 1.0, 1.0]}, tokens="dialogue"),
    DirectionSteering.of({4: [3.0, 0.1, -0.2]}, tokens="last", alpha=-1.25),
    DirectionSteering.of({}, alpha=8.0),
], ids=["ablation", "ablation-dialogue", "steering-last", "steering-empty"])
def test_specs_round_trip_through_json(edit: DirectionAblation) -> None:
    payload = json.loads(json.dumps(edit.to_json()))  # through real JSON text
    restored = type(edit).from_json(payload)
    assert restored == edit
    assert restored.to_json() == edit.to_json()
    for _, vector in edit.directions:
        assert abs(sum(v * v for v in vector) - 1) < 1e-12


def test_bad_specs_are_refused(make_tiny: MakeTiny) -> None:
    with pytest.raises(UserError, match="non-zero"):
        DirectionAblation.of({1: [0.0, 0.0]})
    with pytest.raises(UserError, match="finite"):
        DirectionAblation.of({1: [float("nan"), 1.0]})
    with pytest.raises(UserError, match="embeddings"):
        DirectionAblation.of({0: [1.0]})
    with pytest.raises(UserError, match="token scope"):
        DirectionSteering.of({1: [1.0]}, tokens="prefix", alpha=1.0)
    with pytest.raises(UserError, match="alpha"):
        DirectionSteering.of({1: [1.0]}, alpha=float("inf"))
    with pytest.raises(UserError, match="direction-steering"):
        DirectionAblation.from_json(DirectionSteering.of({1: [1.0]}, alpha=1.0).to_json())
    tiny = make_tiny("llama")
    for wrong in (DirectionAblation.of({1: [1.0, 2.0]}),
                  DirectionAblation.of({tiny.n_layers + 1: _unit(_hidden(tiny), 0)})):
        with pytest.raises(UserError, match="another model"), applied_direction(tiny, wrong):
            pytest.fail("a direction that does not fit the model was hooked")


# -- directions ----------------------------------------------------------------------------------

def test_directions_are_centred_differences_of_means() -> None:
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([e for e in range(6) for _ in range(e + 2)])  # 2 to 7 per emotion
    features = torch.randn(len(labels), 3, 5, generator=generator)
    directions = EmotionDirections.fit(features, labels)
    means = torch.stack([features[labels == e].double().mean(0) for e in range(6)])
    torch.testing.assert_close(directions.difference, means - means.mean(0))
    # Each emotion weighs the same in the centre, not each dialogue.
    assert (directions.centre - features.double().mean(0)).abs().max() > 1e-3
    assert directions.difference.sum(0).abs().max() < 1e-12
    torch.testing.assert_close(directions.unit.norm(dim=-1), torch.ones(6, 3, dtype=torch.float64))
    with pytest.raises(UserError, match="surprise"):
        EmotionDirections.fit(features[labels < 5], labels[labels < 5])


def test_neutral_components_are_projected_out() -> None:
    generator = torch.Generator().manual_seed(1)
    labels = torch.arange(60) % 6
    features = torch.randn(60, 2, 8, generator=generator)
    features[:, :, :6] += 3 * torch.eye(6)[labels].unsqueeze(1)
    shared = torch.randn(60, 1, 1, generator=generator)
    features[:, :, 7] += 10 * shared[:, :, 0] * (labels == 2).unsqueeze(1)  # fear varies on 7
    neutral = torch.randn(30, 2, 8, generator=generator) * 0.1
    neutral[:, :, 7] += 10 * torch.randn(30, 2, generator=generator)
    plain = EmotionDirections.fit(features, labels)
    denoised = EmotionDirections.fit(features, labels, neutral, neutral_components=1)
    assert denoised.neutral_components.shape == (2, 1, 8)
    axis = denoised.neutral_components[0, 0]
    assert axis[7].abs() > 0.99  # the neutral text's direction of largest variance
    assert (plain.unit[2, :, 7]).abs().max() > 0.05
    assert torch.einsum("erh,rkh->erk", denoised.unit, denoised.neutral_components).abs().max() \
        < 1e-12
    assert denoised.difference.sum(0).abs().max() < 1e-12
    with pytest.raises(UserError, match="neutral"):
        EmotionDirections.fit(features, labels, neutral[:1], neutral_components=1)


def test_random_directions_are_seeded_norm_matched_and_in_the_same_subspace() -> None:
    generator = torch.Generator().manual_seed(2)
    labels = torch.arange(24) % 6
    features = torch.randn(24, 2, 8, generator=generator)
    real = EmotionDirections.fit(features, labels, torch.randn(10, 2, 8, generator=generator),
                                 neutral_components=2)
    control = random_directions(real, seed=5)
    assert torch.equal(control.difference, random_directions(real, seed=5).difference)
    assert not torch.allclose(control.difference, random_directions(real, seed=6).difference)
    torch.testing.assert_close(control.difference.norm(dim=-1), real.difference.norm(dim=-1))
    assert torch.einsum("erh,rkh->erk", control.unit, real.neutral_components).abs().max() \
        < 1e-12
    cosine = torch.einsum("erh,erh->er", control.unit, real.unit)
    assert cosine.abs().max() < 0.99
    assert control.source == "random (seed 5)"


def test_save_and_load_round_trip_byte_identically(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    labels = torch.arange(18) % 6
    features = torch.randn(18, 3, 4, generator=generator)
    directions = EmotionDirections.fit(features, labels).with_held_out(features[:9], labels[:9])
    for name in ("a", "b"):
        directions.save(tmp_path / f"{name}.safetensors", {"model": "tiny"})
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    loaded = EmotionDirections.load(tmp_path / "a.safetensors")
    assert torch.equal(loaded.difference, directions.difference)
    assert torch.equal(loaded.centre, directions.centre)
    assert loaded.neutral_components.shape == (3, 0, 4)
    assert loaded.held_out_accuracy == directions.held_out_accuracy
    assert loaded.held_out_recall == directions.held_out_recall
    description = json.loads((tmp_path / "a.json").read_text())
    assert description["kind"] == "emotion directions" and description["model"] == "tiny"
    assert len(description["held_out_accuracy"]) == 3
    with pytest.raises(UserError, match="not an emotion directions file"):
        EmotionDirections.load(_probe_file(tmp_path))


def _probe_file(tmp_path: Path) -> Path:
    from emoneuron.causal.evaluation.probe import Probe

    probe = Probe.fit(torch.randn(12, 1, 3), torch.arange(12) % 6, l2=0.1)
    probe.save(tmp_path / "probe.safetensors")
    return tmp_path / "probe.safetensors"


def test_directions_find_a_planted_signal_and_their_controls_do_not(tiny: LoadedModel) -> None:
    identify, held_out = planted(16, seed=0), planted(8, seed=1)
    neutral = [Record(f"n{k}", NEUTRAL, (Turn("A", " ".join(random.Random(k).choices(FILLER,
                                                                                  k=8))),))
               for k in range(12)]
    directions = emotion_directions(tiny, identify, held_out, neutral, neutral_components=2)
    accuracy = torch.tensor(directions.held_out_accuracy)
    assert accuracy.shape == (tiny.n_layers + 1,)
    assert accuracy.max() >= 0.8, accuracy  # chance is 1/6
    assert set(directions.held_out_recall) == set(EMOTIONS)
    features, labels = residual_features(tiny, identify), emotion_labels(identify)
    held, held_labels = residual_features(tiny, held_out), emotion_labels(held_out)
    for control in (shuffled_label_directions(features, labels, seed=0),
                    random_directions(directions, seed=0)):
        chance = torch.tensor(control.with_held_out(held, held_labels).held_out_accuracy)
        assert chance.max() < 0.45, (control.source, chance)


# -- neurons from directions ---------------------------------------------------------------------

@pytest.mark.parametrize("family", ["llama", "qwen2", "gpt2", "gpt-neox"])
def test_direction_projection_is_what_zeroing_a_neuron_removes_along_the_direction(
        make_tiny: MakeTiny, family: str) -> None:
    """Zeroing neuron (0, i) changes residual layer 1 at every token by -a_t times its down
    column: its mean projection on e's direction over e's counted tokens is -score[e, 0, i].
    (Gemma 3 normalises the MLP's output before adding it, so the identity is first-order
    there; the top residual layer is read after the final norm.)"""
    tiny = make_tiny(family)
    records = synthesize(2, max_turns=2)
    stats = record(tiny, records, RecordConfig(site=DEFAULT_SITE, groups=2), progress=False).stats()
    directions = random_directions(EmotionDirections.fit(
        residual_features(tiny, records), emotion_labels(records)), seed=0)
    writes = direction_writes(tiny, directions)
    assert writes.shape == (6, tiny.n_layers, tiny.width)
    scores = direction_projection(ProjectedStats(stats, writes))
    neuron = int(scores.overall[0].abs().argmax())
    moved = torch.zeros(len(EMOTIONS), dtype=torch.float64)
    unit = directions.unit[:, 1].float()
    for batch in encode_for_recording(tiny, records, "dialogue", batch_size=4):
        clean = _residual_layer_one(tiny, batch)
        with applied(tiny, Ablation.of({0: [neuron]})):
            change = _residual_layer_one(tiny, batch) - clean
        along = change[batch.counted] @ unit.T  # (counted tokens, E)
        emotion = int(batch.emotion_index[0])  # the recorder batches one emotion at a time
        moved[emotion] += along[:, emotion].double().sum()
    # The tiny models' activations are small: the scores are about 1e-4.
    torch.testing.assert_close(moved / stats.tokens, -scores.per_emotion[:, 0, neuron],
                               atol=1e-8, rtol=1e-3)
    assert scores.per_emotion[:, 0, neuron].abs().max() > 1e-5


def _residual_layer_one(loaded: LoadedModel, batch: EncodedBatch) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model.base_model(input_ids=batch.input_ids,
                                       attention_mask=batch.attention_mask,
                                       output_hidden_states=True).hidden_states[1]


def test_direction_projection_needs_the_down_projection_input() -> None:
    writes = torch.ones(6, 2, 3, dtype=torch.float64)
    with pytest.raises(UserError, match=r"mlp\.activation"):
        direction_projection(ProjectedStats(
            ActivationStats.zeros(2, 3, ACTIVATION_SITE, "dialogue"), writes))
    with pytest.raises(UserError, match="another model"):
        direction_projection(ProjectedStats(
            ActivationStats.zeros(2, 4, DEFAULT_SITE, "dialogue"), writes))


def test_direction_projection_is_a_selection_method_on_a_tiny_model(make_tiny: MakeTiny) -> None:
    """Registered: identify keeps the globally top 1% of neurons by their best emotion's
    direction-projection score, each for that emotion; a recording alone is refused."""
    tiny = make_tiny("llama")
    records = synthesize(2, max_turns=2)
    recording = record(tiny, records, RecordConfig(site=DEFAULT_SITE, groups=2), progress=False)
    directions = EmotionDirections.fit(residual_features(tiny, records), emotion_labels(records))
    inputs = ProjectedStats(recording.stats(), direction_writes(tiny, directions))
    config = SELECTION_METHODS["direction-projection"].config
    sets = identify(inputs, config, "tiny", warn_empty=False)
    scores = compute_scores(inputs, "direction-projection").per_emotion
    kept = {(n.layer, n.index): emotion for emotion, ns in sets.emotions.items() for n in ns}
    assert len(kept) == round(0.01 * tiny.n_layers * tiny.width)
    best = scores.max(0).values.flatten().topk(len(kept)).indices.tolist()
    assert {layer * tiny.width + index for layer, index in kept} == set(best)
    for (layer, index), emotion in kept.items():
        assert EMOTIONS[int(scores[:, layer, index].argmax())] == emotion
    assert sets.site == DEFAULT_SITE and (sets.n_layers, sets.width) == (2, tiny.width)
    with pytest.raises(UserError, match="ProjectedStats"):
        identify(recording, config, "tiny")
