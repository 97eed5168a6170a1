"""Every site records the tensor a hand-written MLP forward computes there, in every family.

The reference captures each layer's MLP input with a hook on the MLP module itself and recomputes
the gate / fc_in, the activation and the down projection's input from the module's weights with
torch.nn.functional; the recorder hooks the adapter's site module instead.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.adapters import (
    ACTIVATION_SITE,
    DEFAULT_SITE,
    PRE_ACTIVATION_SITE,
)
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.config import RecordConfig
from emoneuron.recording.recorder import record
from emoneuron.selection.identify import IdentifyConfig, identify

MakeTiny = Callable[[str], LoadedModel]
SITES = (DEFAULT_SITE, ACTIVATION_SITE, PRE_ACTIVATION_SITE)
FAMILIES = ("llama", "mistral", "qwen2", "gemma3", "gpt2", "gpt-neox")
# The activation each tiny config uses (their configs' defaults).
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "llama": F.silu, "mistral": F.silu, "qwen2": F.silu,
    "gemma3": lambda x: F.gelu(x, approximate="tanh"),
    "gpt2": lambda x: F.gelu(x, approximate="tanh"),
    "gpt-neox": F.gelu,
}


def _by_hand(family: str, mlp: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    act = ACTIVATIONS[family]
    if family == "gpt2":  # Conv1D: weight is (in, out)
        pre = x @ mlp.c_fc.weight + mlp.c_fc.bias
        return {PRE_ACTIVATION_SITE: pre, ACTIVATION_SITE: act(pre), DEFAULT_SITE: act(pre)}
    if family == "gpt-neox":
        pre = F.linear(x, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias)
        return {PRE_ACTIVATION_SITE: pre, ACTIVATION_SITE: act(pre), DEFAULT_SITE: act(pre)}
    gate = F.linear(x, mlp.gate_proj.weight, mlp.gate_proj.bias)
    up = F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias)
    return {PRE_ACTIVATION_SITE: gate, ACTIVATION_SITE: act(gate), DEFAULT_SITE: act(gate) * up}


def _hand_values(loaded: LoadedModel, item: Record) -> list[dict[str, torch.Tensor]]:
    """Per layer, each site's (T, width) values for one record, all positions."""
    ids = loaded.tokenizer(render_dialogue(item).text)["input_ids"]
    inputs: dict[int, torch.Tensor] = {}
    layers = loaded.adapter.layers(loaded.model)
    handles = [layer.mlp.register_forward_pre_hook(
        lambda _m, args, i=i: inputs.__setitem__(i, args[0][0].detach().clone()))
        for i, layer in enumerate(layers)]
    try:
        with torch.no_grad():
            loaded.model(input_ids=torch.tensor([ids]))
            return [_by_hand(loaded.adapter.family, layer.mlp, inputs[i])
                    for i, layer in enumerate(layers)]
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_site_records_the_hand_computed_tensor(make_tiny: MakeTiny, records: list[Record],
                                                    family: str) -> None:
    loaded = make_tiny(family)
    items = records[:3]
    hand = [_hand_values(loaded, item) for item in items]
    for site in SITES:
        recording = record(loaded, items, RecordConfig(token_policy="all", batch_size=2,
                                                       site=site), progress=False)
        stats = recording.stats()
        for layer in range(loaded.n_layers):
            for emotion in {item.emotion for item in items}:
                e = EMOTIONS.index(emotion)
                values = torch.cat([h[layer][site] for h, item in zip(hand, items, strict=True)
                                    if item.emotion == emotion]).double()
                torch.testing.assert_close(stats.sum[e, layer], values.sum(0), rtol=1e-4,
                                           atol=1e-5)
                torch.testing.assert_close(stats.sum_sq[e, layer], values.square().sum(0),
                                           rtol=1e-4, atol=1e-5)
                assert torch.equal(stats.active[e, layer], (values > 0).sum(0).double())
            every = torch.cat([h[layer][site] for h in hand])
            torch.testing.assert_close(recording.top_values[layer, 0], every.max(0).values,
                                       rtol=1e-5, atol=1e-6)
    # The sites are different tensors (the pre-activation is not the activation).
    assert not torch.allclose(hand[0][0][PRE_ACTIVATION_SITE], hand[0][0][ACTIVATION_SITE])


@pytest.mark.parametrize(("family", "kind"), [("llama", "gated"), ("gpt2", "plain")])
def test_unknown_site_names_the_family_and_its_sites(make_tiny: MakeTiny, records: list[Record],
                                                     family: str, kind: str) -> None:
    loaded = make_tiny(family)
    assert loaded.adapter.gated == (kind == "gated")
    with pytest.raises(UserError) as caught:
        loaded.adapter.site("mlp.up_proj.output")
    message = str(caught.value)
    assert f"the {family} family" in message and "mlp.up_proj.output" in message
    for site in SITES:
        assert site in message


def test_site_is_in_every_artefact(make_tiny: MakeTiny, records: list[Record],
                                   tmp_path: Path) -> None:
    recording = record(make_tiny("llama"), records, RecordConfig(site=PRE_ACTIVATION_SITE),
                       progress=False)
    recording.save(tmp_path / "stats.safetensors", {"model": "tiny"})
    assert json.loads((tmp_path / "stats.json").read_text())["site"] == PRE_ACTIVATION_SITE
    sets = identify(recording, IdentifyConfig(assignment="argmax",
                                              statistic="smd", share=0.05), "tiny")
    sets.save(tmp_path / "neurons.json")
    assert json.loads((tmp_path / "neurons.json").read_text())["site"] == PRE_ACTIVATION_SITE
