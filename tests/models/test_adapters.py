"""Adapters find the FFN neurons of every family; interventions on them match a hand-written MLP.

The reference for an intervention replaces the MLP forward of the chosen layers with an explicit
re-implementation from the module's own weights (``act(gate) * up`` for gated MLPs, ``act(fc_in)``
for GPT-2 / GPT-NeoX), edits the intermediate activation, and applies the down projection. The
hook-based :func:`emoneuron.causal.evaluation.intervene.applied` must give the same logits.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from mlp_reference import assert_unhooked, logits, reference_logits
from transformers import BertConfig, BertForMaskedLM

from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.errors import UserError
from emoneuron.models.adapters import DEFAULT_SITE, adapter_for
from emoneuron.models.loading import LoadedModel

# Families whose config field holds the FFN width; GPT-2 spells it n_inner.
WIDTH_FIELD = {"gpt2": "n_inner"}


@pytest.fixture(scope="module")
def input_ids(tokenizer) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Two unpadded sequences of 12 real token ids."""
    generator = torch.Generator().manual_seed(1)
    return torch.randint(3, len(tokenizer), (2, 12), generator=generator)


def _chosen(loaded: LoadedModel) -> dict[int, list[int]]:
    return {0: [1, 5], loaded.n_layers - 1: [2]}


def test_adapter_finds_family_layers_and_width(tiny: LoadedModel) -> None:
    model = tiny.model
    family = tiny.name.removeprefix("tiny-")
    adapter = adapter_for(model)
    assert adapter.family == family
    config = model.config
    assert len(adapter.site_modules(model)) == config.num_hidden_layers == adapter.n_layers(model)
    expected_width = getattr(config, WIDTH_FIELD.get(family, "intermediate_size"))
    assert adapter.width(model) == expected_width
    if family == "gpt2":
        assert expected_width != 4 * config.n_embd  # the fixture must tell n_inner apart

    seen: dict[int, int] = {}
    modules = adapter.site_modules(model)
    handles = [module.register_forward_pre_hook(
        lambda _m, args, layer=layer: seen.__setitem__(layer, args[0].shape[-1]))
        for layer, module in enumerate(modules)]
    try:
        logits(tiny, torch.tensor([[5, 6, 7, 8]]))
    finally:
        for handle in handles:
            handle.remove()
    assert seen == {layer: expected_width for layer in range(len(modules))}
    # Each site is a distinct module, bottom to top.
    assert len({id(module) for module in modules}) == len(modules)
    assert modules[0] is not modules[-1]


def test_hand_written_mlp_reproduces_the_model(tiny: LoadedModel, input_ids: torch.Tensor,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Sanity for the reference itself: with nothing edited it equals the model."""
    clean = logits(tiny, input_ids)
    everything = {layer: [] for layer in range(tiny.n_layers)}
    reference = reference_logits(tiny, monkeypatch, input_ids, everything, lambda h: h)
    torch.testing.assert_close(reference, clean, atol=1e-5, rtol=1e-5)


def test_zeroing_equals_hand_computed_forward(tiny: LoadedModel, input_ids: torch.Tensor,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    chosen = _chosen(tiny)
    clean = logits(tiny, input_ids)
    reference = reference_logits(tiny, monkeypatch, input_ids, chosen, torch.zeros_like)
    assert_unhooked(tiny)

    with applied(tiny, Ablation.of(chosen)):
        ablated = logits(tiny, input_ids)
    torch.testing.assert_close(ablated, reference, atol=1e-5, rtol=1e-5)
    assert (ablated - clean).abs().max() > 1e-4, "ablation had no effect: the test cannot fail"

    assert_unhooked(tiny)
    torch.testing.assert_close(logits(tiny, input_ids), clean, atol=0, rtol=0)


def test_hooks_removed_when_body_raises(tiny: LoadedModel, input_ids: torch.Tensor) -> None:
    clean = logits(tiny, input_ids)
    with pytest.raises(RuntimeError, match="boom"), applied(tiny, Ablation.of(_chosen(tiny))):
        assert any(module._forward_pre_hooks
                   for module in tiny.adapter.site_modules(tiny.model))
        raise RuntimeError("boom")
    assert_unhooked(tiny)
    torch.testing.assert_close(logits(tiny, input_ids), clean, atol=0, rtol=0)


def test_unsupported_architecture_names_the_class() -> None:
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=24, max_position_embeddings=32)
    with pytest.raises(UserError, match="BertForMaskedLM"):
        adapter_for(BertForMaskedLM(config))


def test_adapter_with_wrong_path_is_a_user_error(make_tiny) -> None:  # type: ignore[no-untyped-def]
    loaded = make_tiny("llama")
    sites = {**loaded.adapter.sites,
             DEFAULT_SITE: replace(loaded.adapter.sites[DEFAULT_SITE], path="mlp.no_such_proj")}
    broken = replace(loaded.adapter, sites=sites)
    with pytest.raises(UserError, match=r"mlp\.no_such_proj"):
        broken.site_modules(loaded.model)


def _out_of_range(loaded: LoadedModel) -> list[dict[int, list[int]]]:
    n, width = loaded.n_layers, loaded.width
    return [
        {n: [0]},  # one layer past the top
        {0: [width]},  # one index past the width
        {0: [1], n - 1: [width + 7]},  # a bad index in a later layer
    ]


def test_out_of_range_neurons_raise(tiny: LoadedModel, input_ids: torch.Tensor) -> None:
    for by_layer in _out_of_range(tiny):
        with pytest.raises(UserError, match="outside this model"), \
                applied(tiny, Ablation.of(by_layer)):
            pytest.fail(f"{by_layer} was accepted")
        assert_unhooked(tiny)
    # A negative layer or index is refused when the spec is made, before any model is touched.
    for negative in ({-1: [0]}, {0: [-1]}, {0: [-1, 3]}):
        with pytest.raises(ValueError, match=r"-1 is not a whole number of 0 or more"):
            Ablation.of(negative)
    # The edges themselves are valid.
    with applied(tiny, Ablation.of({tiny.n_layers - 1: [0, tiny.width - 1]})):
        logits(tiny, input_ids)
    assert_unhooked(tiny)


def test_ablation_of_normalises() -> None:
    ablation = Ablation.of({3: [7, 1], 0: [2], 5: []})
    assert ablation.neurons == ((0, (2,)), (3, (1, 7)))
    assert ablation.size == 3
