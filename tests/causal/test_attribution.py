"""Gradient x activation attribution: against a plain full-sequence autograd reference, batched
with padding against one dialogue at a time, equal at the two zero-equivalent sites; its
additive statistics merge, save and load exactly; scores and identification read them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.experiments.attribution import attribute
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.attribution_stats import AttributionStats
from emoneuron.recording.recorder import site_hooks
from emoneuron.selection.identify import IdentifyConfig, identify
from emoneuron.selection.scores import attribution_scores, compute_scores


def _shots() -> list[Record]:
    return [Record(f"shot-{e}", e, (Turn("A", f"a {e} dialogue"),), "test") for e in EMOTIONS]


def _reference(classifier: Classifier, record: Record, site: str) -> torch.Tensor:
    """(L, W): one full forward of prefix + query, the gold label's log-probability among the
    labels differentiated by plain autograd, summed over the query positions."""
    loaded = classifier.loaded
    query = classifier.encode(record)[0]
    ids = torch.tensor([classifier.prefix_ids + query])
    kept: dict[int, torch.Tensor] = {}

    def keep(layer: int, tensor: torch.Tensor) -> None:
        tensor.retain_grad()
        kept[layer] = tensor

    with site_hooks(loaded, site, keep):
        logits = loaded.model(input_ids=ids).logits[0, -1]
    torch.log_softmax(logits[classifier.answer_ids], -1)[EMOTIONS.index(record.emotion)].backward()
    loaded.model.zero_grad(set_to_none=True)
    return torch.stack([(kept[layer] * kept[layer].grad)[0, -len(query):].sum(0).detach()
                        for layer in sorted(kept)]).double()


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_batched_attribution_equals_a_full_forward_reference(
        family: str, make_word_tiny: Callable[[str], LoadedModel],
        records: list[Record]) -> None:
    classifier = Classifier(make_word_tiny(family), _shots(), batch_size=3, calibrate=False)
    stats = attribute(classifier, records, groups=1, progress=False)
    for emotion in {r.emotion for r in records}:
        expected = sum(_reference(classifier, r, DEFAULT_SITE)
                       for r in records if r.emotion == emotion)
        torch.testing.assert_close(stats.total[EMOTIONS.index(emotion), 0], expected,
                                   atol=1e-5, rtol=1e-4)
    assert stats.dialogues.sum() == len(records)
    assert stats.total.abs().sum() > 0


def test_padding_contributes_nothing(make_word_tiny: Callable[[str], LoadedModel],
                                     records: list[Record]) -> None:
    loaded = make_word_tiny("llama")
    batched = attribute(Classifier(loaded, _shots(), batch_size=8), records, progress=False)
    single = attribute(Classifier(loaded, _shots(), batch_size=1), records, progress=False)
    assert len({len(Classifier(loaded, _shots()).encode(r)[0]) for r in records}) > 1
    torch.testing.assert_close(batched.total, single.total, atol=1e-5, rtol=1e-4)
    assert torch.equal(batched.dialogues, single.dialogues)


def test_zero_equivalent_sites_have_the_same_attribution(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    classifier = Classifier(make_word_tiny("llama"), _shots(), batch_size=4)
    down_input = attribute(classifier, records, DEFAULT_SITE, progress=False)
    activation = attribute(classifier, records, ACTIVATION_SITE, progress=False)
    torch.testing.assert_close(down_input.total, activation.total, atol=1e-5, rtol=1e-4)


def test_the_pass_leaves_the_model_as_it_was(make_word_tiny: Callable[[str], LoadedModel],
                                             records: list[Record]) -> None:
    classifier = Classifier(make_word_tiny("llama"), _shots(), batch_size=4)
    before = classifier.predict(records)
    attribute(classifier, records, progress=False)
    model = classifier.loaded.model
    assert all(p.grad is None for p in model.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert (classifier.predict(records) == before).all()


def test_shards_merge_into_the_whole_and_survive_a_round_trip(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record],
        tmp_path: Path) -> None:
    classifier = Classifier(make_word_tiny("llama"), _shots(), batch_size=3)
    whole = attribute(classifier, records, groups=4, progress=False)
    merged = attribute(classifier, records[:5], groups=4, progress=False).merge(
        attribute(classifier, records[5:], groups=4, progress=False))
    torch.testing.assert_close(merged.total, whole.total, atol=1e-5, rtol=1e-4)
    assert torch.equal(merged.dialogues, whole.dialogues)
    whole.save(tmp_path / "attribution.safetensors", {"model": "tiny"})
    loaded = AttributionStats.load(tmp_path / "attribution.safetensors")
    assert torch.equal(loaded.total, whole.total) and loaded.site == whole.site
    with pytest.raises(UserError, match="group seed"):
        whole.merge(attribute(classifier, records, groups=4, group_seed=1, progress=False))
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UserError, match="not an attribution file"):
        AttributionStats.load(tmp_path / "bad.safetensors")


def _planted_stats() -> AttributionStats:
    """Two layers of four neurons; emotion e's dialogues credit neuron e % 4 of layer e // 4."""
    stats = AttributionStats.zeros(2, 4, groups=2)
    stats.dialogues += 5
    for e in range(len(EMOTIONS)):
        stats.total[e, :, e // 4, e % 4] = 10.0
        stats.total[e, :, 1, 3] = 4.0  # neuron (1, 3) helps every emotion a little
    return stats


def test_attribution_scores_are_mean_attributions_per_dialogue() -> None:
    stats = _planted_stats()
    scores = attribution_scores(stats, specific=False)
    assert scores.per_emotion[0, 0, 0] == pytest.approx(2.0)  # 2 groups x 10 / 10 dialogues
    assert scores.per_emotion[0, 1, 3] == pytest.approx(0.8)
    specific = attribution_scores(stats, specific=True)
    assert specific.per_emotion[0, 1, 3] == pytest.approx(0.0)  # helps all alike
    assert specific.per_emotion[0, 0, 0] == pytest.approx(2.0)
    torch.testing.assert_close(specific.overall, specific.per_emotion.max(0).values)
    with pytest.raises(UserError, match="attribution"):
        compute_scores(stats, "lape")


@pytest.mark.parametrize("rule", ["global", "per-emotion"])
def test_identify_selects_each_emotions_credited_neuron(rule: str) -> None:
    config = IdentifyConfig(assignment="argmax",
                            statistic="attribution", rule=rule, top_n=1, share=6 / 8)
    sets = identify(_planted_stats(), config, "tiny")
    for e, emotion in enumerate(EMOTIONS):
        assert [(n.layer, n.index) for n in sets.emotions[emotion]][:1] == [(e // 4, e % 4)]
