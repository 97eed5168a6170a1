"""Where each architecture family keeps its FFN neurons: one small declarative adapter per family.

A neuron is ``(layer, index)`` in the FFN intermediate dimension. The default site is the input of
the FFN down projection: ``act(gate) * up`` in gated MLPs (Llama, Gemma, Qwen2, Mistral) and
``act(fc_in(x))`` in plain MLPs (GPT-2, GPT-NeoX). Every stage reaches the neurons through
:meth:`Adapter.site_modules`, and hooks the *input* of those modules with forward pre-hooks, so
recording and intervening see exactly the tensor the down projection multiplies.

Adding a family: append an :class:`Adapter` to :data:`ADAPTERS` naming the model classes, the
path to the decoder layer list, the path from a layer to its down projection, and how the config
spells the intermediate size. The tests in ``tests/test_adapters.py`` build a tiny random model
of each family from its config; add one for the new family.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from emoneuron.errors import UserError

DEFAULT_SITE = "mlp.down_proj.input"

ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _intermediate_size(config: PretrainedConfig) -> int:
    return int(config.intermediate_size)


def _gpt2_inner(config: PretrainedConfig) -> int:
    return int(config.n_inner or 4 * config.n_embd)


@dataclass(frozen=True)
class Adapter:
    family: str
    architectures: tuple[str, ...]
    layers_path: str
    down_proj_path: str
    width_of: Callable[[PretrainedConfig], int] = _intermediate_size
    gated: bool = True

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return _resolve(model, self.layers_path, nn.ModuleList)

    def site_modules(self, model: nn.Module) -> list[nn.Module]:
        """The module whose input is the neuron activation, one per layer, bottom to top."""
        return [_resolve(layer, self.down_proj_path, nn.Module) for layer in self.layers(model)]

    def n_layers(self, model: PreTrainedModel) -> int:
        return len(self.layers(model))

    def width(self, model: PreTrainedModel) -> int:
        return self.width_of(model.config.get_text_config())


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("llama", ("LlamaForCausalLM",), "model.layers", "mlp.down_proj"),
    Adapter("mistral", ("MistralForCausalLM",), "model.layers", "mlp.down_proj"),
    Adapter("qwen2", ("Qwen2ForCausalLM",), "model.layers", "mlp.down_proj"),
    Adapter("gemma3", ("Gemma3ForCausalLM",), "model.layers", "mlp.down_proj"),
    Adapter("gemma3-multimodal", ("Gemma3ForConditionalGeneration",),
            "model.language_model.layers", "mlp.down_proj"),
    Adapter("gpt2", ("GPT2LMHeadModel",), "transformer.h", "mlp.c_proj",
            width_of=_gpt2_inner, gated=False),
    Adapter("gpt-neox", ("GPTNeoXForCausalLM",), "gpt_neox.layers", "mlp.dense_4h_to_h",
            gated=False),
)


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``'s class, or a :class:`UserError` saying how to add one."""
    name = type(model).__name__
    for adapter in ADAPTERS:
        if name in adapter.architectures:
            return adapter
    supported = ", ".join(arch for adapter in ADAPTERS for arch in adapter.architectures)
    raise UserError(
        f"unsupported architecture {name}: emoneuron knows {supported}; add an Adapter for it "
        "in emoneuron/models/adapters.py (layer list path + down projection path)"
    )


def _resolve(root: nn.Module, path: str, expected: type[ModuleT]) -> ModuleT:
    node: object = root
    for part in path.split("."):
        node = getattr(node, part, None)
        if node is None:
            raise UserError(
                f"{type(root).__name__} has no submodule {path!r}; its adapter does not match "
                "this transformers version"
            )
    if not isinstance(node, expected):
        raise UserError(f"{type(root).__name__}.{path} is {type(node).__name__}, "
                        f"expected {expected.__name__}")
    return node
