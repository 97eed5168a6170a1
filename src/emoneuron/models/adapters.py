"""Where each architecture family keeps its FFN neurons: one small declarative adapter per family.

A neuron is ``(layer, index)`` in the FFN intermediate dimension. The default site is the input of
the FFN down projection: ``act(gate) * up`` in gated MLPs (Llama, Gemma, Qwen2, Mistral) and
``act(fc_in(x))`` in plain MLPs (GPT-2, GPT-NeoX). Every stage reaches the neurons through
:meth:`Adapter.site_modules` and :meth:`Site.hook`, so recording and intervening see exactly the
same tensor.

Sites: besides the default, every family offers ``mlp.activation`` (the activation's output:
``act(gate)`` alone in gated MLPs; in plain MLPs the same tensor as the default) and
``mlp.pre_activation`` (the gate before its activation in gated MLPs, ``fc_in(x)`` in plain
ones). A site is a module path inside a decoder layer and whether its input or output is the
neuron tensor (:class:`Site`); :meth:`Site.hook` reads (recording) or replaces (interventions)
that tensor, so both stages work at every site.

Other tools: :meth:`Adapter.hook_template` names each site as TransformerLens (a
HookedTransformer hook name) and nnsight (the Hugging Face module path and whether the neuron
tensor is its input or output) reach it; the TransformerLens hook is part of each :class:`Site`,
the nnsight path follows from the row's layer list and site module. docs/models.md lists both
for every family.

Neuron cards project a neuron's output direction (its column of the down projection) through the
final norm and the unembedding, so each adapter also names those two modules.

Adding a family: append an :class:`Adapter` to :data:`ADAPTERS` naming the model classes, the
path to the decoder layer list, its sites (:func:`_gated_sites` / :func:`_plain_sites`), the
final norm and unembedding, and how the config spells the intermediate size. The tests in
``tests/models/test_adapters.py`` build a tiny random model of each family from its config; add
one for the new family.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from emoneuron.errors import UserError
from emoneuron.models.config import ACTIVATION_SITE as ACTIVATION_SITE
from emoneuron.models.config import DEFAULT_SITE as DEFAULT_SITE
from emoneuron.models.config import PRE_ACTIVATION_SITE as PRE_ACTIVATION_SITE
from emoneuron.models.config import SITES as SITES
from emoneuron.models.config import Tool

if TYPE_CHECKING:  # transformers is heavy to import; the adapters need only its types
    from transformers import PretrainedConfig, PreTrainedModel


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def _intermediate_size(config: PretrainedConfig) -> int:
    return int(config.intermediate_size)


def _gpt2_inner(config: PretrainedConfig) -> int:
    return int(config.n_inner or 4 * config.n_embd)


@dataclass(frozen=True)
class Site:
    """The neuron tensor is the ``tensor`` (input or output) of the module at ``path`` in a
    decoder layer."""

    path: str
    tensor: Literal["input", "output"]
    description: str
    # The hook of TransformerLens's MLP (HookedTransformer's blocks.{layer}.mlp.*) that holds
    # the same tensor; None where TransformerLens has no hook for it.
    transformerlens: str | None

    def hook(self, module: nn.Module,
             change: Callable[[torch.Tensor], torch.Tensor | None]) -> RemovableHandle:
        """On every forward of ``module`` (this site's module of one layer), call ``change``
        with the neuron tensor; a tensor it returns replaces the neuron tensor downstream."""
        if self.tensor == "input":
            def before(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...] | None:
                changed = change(args[0])
                return None if changed is None else (changed, *args[1:])
            return module.register_forward_pre_hook(before)

        def after(_module: nn.Module, _args: tuple[Any, ...],
                  output: torch.Tensor) -> torch.Tensor | None:
            return change(output)
        return module.register_forward_hook(after)


def _gated_sites(gate: str, act: str, down: str) -> Mapping[str, Site]:
    # TransformerLens's GatedMLP hooks x @ W_gate (hook_pre), x @ W_in (hook_pre_linear) and
    # act(pre) * pre_linear (hook_post); act(gate) alone passes no hook.
    return {DEFAULT_SITE: Site(down, "input", "act(gate) * up, the down projection's input",
                               "hook_post"),
            ACTIVATION_SITE: Site(act, "output", "act(gate) alone", None),
            PRE_ACTIVATION_SITE: Site(gate, "output", "the gate before its activation",
                                      "hook_pre")}


def _plain_sites(fc_in: str, act: str, down: str) -> Mapping[str, Site]:
    # TransformerLens's MLP hooks x @ W_in + b_in (hook_pre) and act(pre) (hook_post).
    return {DEFAULT_SITE: Site(down, "input", "act(fc_in(x)), the down projection's input",
                               "hook_post"),
            ACTIVATION_SITE: Site(act, "output",
                                  "act(fc_in(x)), the same tensor as the default site",
                                  "hook_post"),
            PRE_ACTIVATION_SITE: Site(fc_in, "output", "fc_in(x) before the activation",
                                      "hook_pre")}


LLAMA_SITES = _gated_sites("mlp.gate_proj", "mlp.act_fn", "mlp.down_proj")


@dataclass(frozen=True)
class Adapter:
    family: str
    architectures: tuple[str, ...]
    layers_path: str
    sites: Mapping[str, Site]
    final_norm_path: str
    unembedding_path: str = "lm_head"
    width_of: Callable[[PretrainedConfig], int] = _intermediate_size
    gated: bool = True
    # GPT-2's Conv1D stores the down projection as (width, hidden), nn.Linear as (hidden, width).
    down_proj_transposed: bool = False

    def layers(self, model: nn.Module) -> nn.ModuleList:
        return _resolve(model, self.layers_path, nn.ModuleList)

    def site(self, name: str) -> Site:
        """The site called ``name``, or a :class:`UserError` listing the family's sites."""
        if name not in self.sites:
            raise UserError(f"site {name!r} is not available for the {self.family} family: "
                            f"use one of {', '.join(self.sites)}")
        return self.sites[name]

    def site_modules(self, model: nn.Module, site: str = DEFAULT_SITE) -> list[nn.Module]:
        """The module holding the neuron tensor of ``site``, one per layer, bottom to top."""
        path = self.site(site).path
        return [_resolve(layer, path, nn.Module) for layer in self.layers(model)]

    def hook_template(self, site: str, tool: Tool) -> str:
        """Where ``tool`` finds ``site``'s neuron tensor, ``{layer}`` standing for the layer: a
        TransformerLens hook name as HookedTransformer spells it, or for nnsight the Hugging
        Face module path and ``.input`` or ``.output``. A neuron's index is the same in both.

        >>> llama = adapter_named("llama")
        >>> llama.hook_template("mlp.down_proj.input", "transformerlens")
        'blocks.{layer}.mlp.hook_post'
        >>> llama.hook_template("mlp.activation", "nnsight")
        'model.layers.{layer}.mlp.act_fn.output'
        """
        chosen = self.site(site)
        if tool == "nnsight":
            return f"{self.layers_path}.{{layer}}.{chosen.path}.{chosen.tensor}"
        if tool != "transformerlens":
            raise UserError(f"unknown tool {tool!r}: use transformerlens or nnsight")
        if chosen.transformerlens is None:
            raise UserError(
                f"site {site!r} ({chosen.description}) has no TransformerLens hook in the "
                f"{self.family} family's gated MLP (hook_pre is the gate before it, hook_post "
                "act(gate) * up); use nnsight's module paths, or read it from hook_pre as "
                "docs/models.md shows")
        return f"blocks.{{layer}}.mlp.{chosen.transformerlens}"

    def hook_names(self, site: str, tool: Tool, n_layers: int) -> list[str]:
        """:meth:`hook_template` for each layer, bottom to top.

        >>> adapter_named("gpt2").hook_names("mlp.activation", "transformerlens", 2)
        ['blocks.0.mlp.hook_post', 'blocks.1.mlp.hook_post']
        """
        template = self.hook_template(site, tool)
        return [template.format(layer=layer) for layer in range(n_layers)]

    def down_projection(self, model: nn.Module, layer: int) -> torch.Tensor:
        """Layer ``layer``'s down-projection weight as (hidden, width): column ``i`` is what
        neuron ``i`` writes into the residual stream per unit of activation."""
        module = self.site_modules(model, DEFAULT_SITE)[layer]
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        return weight.T if self.down_proj_transposed else weight

    def final_norm(self, model: nn.Module) -> nn.Module:
        return _resolve(model, self.final_norm_path, nn.Module)

    def unembedding_module(self, model: nn.Module) -> nn.Module:
        return _resolve(model, self.unembedding_path, nn.Module)

    def unembedding(self, model: nn.Module) -> torch.Tensor:
        """The (vocab, hidden) output embedding."""
        weight = self.unembedding_module(model).weight
        assert isinstance(weight, torch.Tensor)
        return weight

    def n_layers(self, model: PreTrainedModel) -> int:
        return len(self.layers(model))

    def width(self, model: PreTrainedModel) -> int:
        return self.width_of(model.config.get_text_config())


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("llama", ("LlamaForCausalLM",), "model.layers", LLAMA_SITES, "model.norm"),
    Adapter("mistral", ("MistralForCausalLM",), "model.layers", LLAMA_SITES, "model.norm"),
    Adapter("qwen2", ("Qwen2ForCausalLM",), "model.layers", LLAMA_SITES, "model.norm"),
    Adapter("gemma3", ("Gemma3ForCausalLM",), "model.layers", LLAMA_SITES, "model.norm"),
    Adapter("gemma3-multimodal", ("Gemma3ForConditionalGeneration",),
            "model.language_model.layers", LLAMA_SITES, "model.language_model.norm"),
    Adapter("gpt2", ("GPT2LMHeadModel",), "transformer.h",
            _plain_sites("mlp.c_fc", "mlp.act", "mlp.c_proj"), "transformer.ln_f",
            width_of=_gpt2_inner, gated=False, down_proj_transposed=True),
    Adapter("gpt-neox", ("GPTNeoXForCausalLM",), "gpt_neox.layers",
            _plain_sites("mlp.dense_h_to_4h", "mlp.act", "mlp.dense_4h_to_h"),
            "gpt_neox.final_layer_norm", unembedding_path="embed_out", gated=False),
)


def adapter_for(model: nn.Module) -> Adapter:
    """The adapter for ``model``'s class, or a :class:`UserError` saying how to add one."""
    return adapter_for_architecture(type(model).__name__)


def adapter_for_architecture(name: str) -> Adapter:
    """The adapter for the model class called ``name`` (known from a config before the weights
    load), or a :class:`UserError` saying how to add one.

    >>> adapter_for_architecture("Qwen2ForCausalLM").family
    'qwen2'
    """
    for adapter in ADAPTERS:
        if name in adapter.architectures:
            return adapter
    supported = ", ".join(arch for adapter in ADAPTERS for arch in adapter.architectures)
    raise UserError(
        f"unsupported architecture {name}: emoneuron knows {supported}; add an Adapter for it "
        "in emoneuron/models/adapters.py (layer list path, sites, final norm, unembedding)"
    )


def adapter_named(family: str) -> Adapter:
    """The adapter of ``family`` (as a run's manifest records it), or a :class:`UserError`
    listing the families.

    >>> adapter_named("qwen2").layers_path
    'model.layers'
    """
    for adapter in ADAPTERS:
        if adapter.family == family:
            return adapter
    raise UserError(f"unknown model family {family!r}: emoneuron knows "
                    f"{', '.join(adapter.family for adapter in ADAPTERS)}")


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
