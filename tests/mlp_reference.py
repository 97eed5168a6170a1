"""A hand-written MLP forward to check interventions against.

The reference replaces the MLP forward of the chosen layers with an explicit re-implementation
from the module's own weights (``act(gate) * up`` for gated MLPs, ``act(fc_in)`` for GPT-2 /
GPT-NeoX), edits the intermediate activation, and applies the down projection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.hooks import RemovableHandle

from emoneuron.models.loading import LoadedModel


def logits(loaded: LoadedModel, input_ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return loaded.model(input_ids=input_ids).logits


def hooked_forward(loaded: LoadedModel, ids: list[int],
                   handles: Sequence[RemovableHandle]) -> None:
    """One forward pass over ``ids`` with the hooks ``handles`` hold, then those hooks removed,
    also when the pass fails: a hook left behind would change every later test's forward."""
    try:
        with torch.no_grad():
            loaded.model(input_ids=torch.tensor([ids]))
    finally:
        for handle in handles:
            handle.remove()


def mlps(loaded: LoadedModel) -> list[nn.Module]:
    return [layer.mlp for layer in loaded.adapter.layers(loaded.model)]


def _intermediate(family: str, mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The FFN neuron activation computed by hand from the MLP's own weights."""
    if family == "gpt2":  # Conv1D: weight is (in, out)
        return mlp.act(x @ mlp.c_fc.weight + mlp.c_fc.bias)
    if family == "gpt-neox":
        return mlp.act(F.linear(x, mlp.dense_h_to_4h.weight, mlp.dense_h_to_4h.bias))
    gate = F.linear(x, mlp.gate_proj.weight, mlp.gate_proj.bias)
    up = F.linear(x, mlp.up_proj.weight, mlp.up_proj.bias)
    return mlp.act_fn(gate) * up


def _down(family: str, mlp: nn.Module, h: torch.Tensor) -> torch.Tensor:
    if family == "gpt2":
        return h @ mlp.c_proj.weight + mlp.c_proj.bias  # dropout is the identity in eval mode
    if family == "gpt-neox":
        return F.linear(h, mlp.dense_4h_to_h.weight, mlp.dense_4h_to_h.bias)
    return F.linear(h, mlp.down_proj.weight, mlp.down_proj.bias)


def reference_logits(loaded: LoadedModel, monkeypatch: pytest.MonkeyPatch,
                      input_ids: torch.Tensor, by_layer: Mapping[int, Sequence[int]],
                      edit: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Logits with the chosen layers' MLPs re-implemented by hand, ``edit`` applied to the
    selected neurons' activations; the patches are undone before returning."""
    family = loaded.adapter.family
    modules = mlps(loaded)
    with monkeypatch.context() as patch:
        for layer, indices in by_layer.items():
            mlp = modules[layer]
            index = torch.tensor(indices, dtype=torch.long)

            def forward(x: torch.Tensor, mlp: nn.Module = mlp,
                        index: torch.Tensor = index) -> torch.Tensor:
                h = _intermediate(family, mlp, x).clone()
                h[..., index] = edit(h[..., index])
                return _down(family, mlp, h)

            patch.setattr(mlp, "forward", forward)
        return logits(loaded, input_ids)


def assert_unhooked(loaded: LoadedModel) -> None:
    for site in loaded.adapter.sites:
        for layer, module in enumerate(loaded.adapter.site_modules(loaded.model, site)):
            assert not module._forward_pre_hooks, f"hook left on layer {layer} at {site}"
            assert not module._forward_hooks, f"hook left on layer {layer} at {site}"
