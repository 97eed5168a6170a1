"""Interventions as small serialisable specs, applied by a context manager that always unhooks.

An :class:`Ablation` names neurons per layer at a site and what to do with them: ``zero`` sets
their activation to 0, ``scale`` multiplies it by ``strength``. :func:`applied` registers one
forward pre-hook per affected layer on the adapter's site module and removes every hook on exit,
also when the body raises.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from emoneuron.errors import UserError
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel

MODES = ("zero", "scale")


@dataclass(frozen=True)
class Ablation:
    neurons: tuple[tuple[int, tuple[int, ...]], ...]  # (layer, indices), sorted by layer
    mode: str = "zero"
    strength: float = 0.0
    site: str = DEFAULT_SITE

    @classmethod
    def of(cls, by_layer: Mapping[int, Sequence[int]], mode: str = "zero", strength: float = 0.0,
           site: str = DEFAULT_SITE) -> Ablation:
        if mode not in MODES:
            raise UserError(f"unknown intervention mode {mode!r}: use one of {', '.join(MODES)}")
        neurons = tuple((int(layer), tuple(sorted(int(i) for i in indices)))
                        for layer, indices in sorted(by_layer.items()) if indices)
        return cls(neurons=neurons, mode=mode, strength=strength, site=site)

    @property
    def first_layer(self) -> int:
        """The lowest layer this ablation touches (0 when it touches none): everything below
        it computes exactly as without the ablation."""
        return min((layer for layer, _ in self.neurons), default=0)

    @property
    def size(self) -> int:
        return sum(len(indices) for _, indices in self.neurons)

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "mode": self.mode, "strength": self.strength,
                "neurons": {str(layer): list(indices) for layer, indices in self.neurons}}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Ablation:
        return cls.of({int(k): v for k, v in payload["neurons"].items()}, payload["mode"],
                      float(payload["strength"]), payload["site"])


@contextmanager
def applied(loaded: LoadedModel, ablation: Ablation) -> Iterator[None]:
    """Apply ``ablation`` to ``loaded`` for the duration of the block."""
    if ablation.site != DEFAULT_SITE:
        raise UserError(f"site {ablation.site!r} is not supported yet; use {DEFAULT_SITE}")
    modules = loaded.adapter.site_modules(loaded.model)
    for layer, indices in ablation.neurons:
        # Check every index, not only the largest: a negative one would silently wrap around.
        bad = [index for index in indices if not 0 <= index < loaded.width]
        if not 0 <= layer < len(modules) or bad:
            shown = bad[0] if bad else (indices[0] if indices else "-")
            raise UserError(f"neuron (layer {layer}, index {shown}) is outside this model "
                            f"({len(modules)} layers x {loaded.width} neurons); were the neurons "
                            "identified on another model?")
    factor = None if ablation.mode == "zero" else ablation.strength
    handles = []
    try:
        for layer, indices in ablation.neurons:
            index = torch.tensor(indices, dtype=torch.long, device=loaded.device)
            handles.append(modules[layer].register_forward_pre_hook(_scaler(index, factor)))
        yield
    finally:
        for handle in handles:
            handle.remove()


def _scaler(index: torch.Tensor, factor: float | None) -> Any:
    """Multiply the indexed activations by ``factor``; ``None`` sets them to exactly 0."""

    def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        hidden = args[0].clone()
        if factor is None:
            hidden[..., index] = 0
        else:
            hidden[..., index] *= factor
        return (hidden, *args[1:])
    return hook
