"""Interventions as small serialisable specs, applied by a context manager that always unhooks.

An :class:`Ablation` names neurons per layer at a site and what to do with their activation:

- ``zero``: set it to 0;
- ``mean``: set it to the neuron's mean activation on a reference set (``values``, one per neuron;
  :func:`with_means` fills them from a recording, e.g. of all emotions or of neutral text);
- ``scale``: multiply it by ``strength``, 0 <= strength < 1 (attenuation);
- ``amplify``: multiply it by ``strength`` > 1;
- ``clamp``: set it to ``strength``.

``tokens`` says where: ``all`` positions, only the ``dialogue`` being classified, or only the
``last`` position (the one whose next token is scored). The two restricted scopes need to know
which positions those are: the caller (the classifier) sets :attr:`TokenScope.mask` for each
forward pass; without a mask, ``last`` means the final position of the input and ``dialogue``
is refused.

:func:`applied` hooks each affected layer's neuron tensor at the ablation's site (a module's
input or output, :meth:`emoneuron.models.adapters.Site.hook`) and removes every hook on exit, also
when the body raises. At ``mlp.activation`` of a gated MLP the neuron is ``act(gate)`` before it
multiplies ``up``: zeroing or scaling it equals zeroing or scaling the default site's neuron, but
``mean`` and ``clamp`` set a different tensor and change the forward pass differently.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import torch

from emoneuron.causal.config import check_intervention
from emoneuron.errors import UserError
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.options import is_whole
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.neurons import NeuronSets

# What each mode puts in place of the chosen neurons' activations, from those activations,
# the strength and (mode mean) the reference values; keyed by emoneuron.causal.config.Mode.
Replacement = Callable[[torch.Tensor, float, torch.Tensor | None], torch.Tensor]
REPLACEMENTS: dict[str, Replacement] = {
    "zero": lambda chosen, _strength, _values: torch.zeros_like(chosen),
    "mean": lambda chosen, _strength, values: _as_values(values).to(chosen.dtype).expand_as(
        chosen),
    "scale": lambda chosen, strength, _values: chosen * strength,
    "amplify": lambda chosen, strength, _values: chosen * strength,
    "clamp": lambda chosen, strength, _values: torch.full_like(chosen, strength),
}


def _as_values(values: torch.Tensor | None) -> torch.Tensor:
    assert values is not None  # Ablation checks mode mean has its values before hooking
    return values


@dataclass(frozen=True)
class Ablation:
    """Which neurons to change, at which site, how and on which tokens: a small serialisable
    spec that :func:`applied` puts into effect.

    >>> Ablation.of({3: [7, 1], 5: []}).neurons
    ((3, (1, 7)),)
    >>> Ablation.of({3: [7]}, mode="scale", strength=0.5).size
    1

    :meth:`of_sets` takes an emotion's neurons from a selection with the site they were found at.
    """

    neurons: tuple[tuple[int, tuple[int, ...]], ...]  # (layer, indices), sorted by layer
    mode: str = "zero"
    strength: float = 0.0
    site: str = DEFAULT_SITE
    tokens: str = "all"
    # mode "mean": one value per neuron, aligned with ``neurons``.
    values: tuple[tuple[float, ...], ...] = ()

    @classmethod
    def of(cls, by_layer: Mapping[int, Sequence[int]], mode: str = "zero", strength: float = 0.0,
           site: str = DEFAULT_SITE, tokens: str = "all") -> Ablation:
        check_intervention(mode, strength, tokens)
        _check_neurons(by_layer)
        neurons = tuple((int(layer), tuple(sorted(int(i) for i in indices)))
                        for layer, indices in sorted(by_layer.items()) if indices)
        return cls(neurons=neurons, mode=mode, strength=float(strength), site=site,
                   tokens=tokens)

    @classmethod
    def of_sets(cls, sets: NeuronSets, emotion: str, mode: str = "zero", strength: float = 0.0,
                tokens: str = "all") -> Ablation:
        """``emotion``'s neurons of ``sets``, changed at the site the sets were found at: a
        neuron index means another tensor at another site, and modes mean and clamp set that
        tensor, so they act differently there (zero and scale of act(gate) equal those of
        act(gate) * up).

        >>> from emoneuron.selection.config import IdentifyConfig
        >>> from emoneuron.selection.neurons import Neuron
        >>> sets = NeuronSets("m", "mlp.activation", 4, 8, IdentifyConfig(),
        ...                   {"fear": [Neuron(3, 7, 0.9), Neuron(3, 1, 0.5)]})
        >>> ablation = Ablation.of_sets(sets, "fear", mode="clamp", strength=2.0)
        >>> ablation.site, ablation.neurons
        ('mlp.activation', ((3, (1, 7)),))
        """
        if emotion not in sets.emotions:
            raise UserError(f"no {emotion!r} neurons in these sets: use one of "
                            f"{', '.join(sets.emotions)}")
        return cls.of(sets.layer_indices(emotion), mode, strength, sets.site, tokens)

    @property
    def first_layer(self) -> int:
        """The lowest layer this ablation touches (0 when it touches none): everything below
        it computes exactly as without the ablation."""
        return min((layer for layer, _ in self.neurons), default=0)

    @property
    def size(self) -> int:
        return sum(len(indices) for _, indices in self.neurons)

    def layer_counts(self) -> dict[int, int]:
        """Neurons changed per layer."""
        return {layer: len(indices) for layer, indices in self.neurons}

    def to_json(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "site": self.site, "mode": self.mode, "strength": self.strength,
            "tokens": self.tokens,
            "neurons": {str(layer): list(indices) for layer, indices in self.neurons}}
        if self.values:
            payload["values"] = {str(layer): list(values)
                                 for (layer, _), values in zip(self.neurons, self.values,
                                                               strict=True)}
        return payload

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Ablation:
        ablation = cls.of({int(k): v for k, v in payload["neurons"].items()}, payload["mode"],
                          float(payload["strength"]), payload["site"],
                          payload.get("tokens", "all"))
        if "values" in payload:
            # Stored in the same (sorted) index order as the neurons they belong to.
            ablation = replace(ablation, values=tuple(
                tuple(float(v) for v in payload["values"][str(layer)])
                for layer, _ in ablation.neurons))
        return ablation


def _check_neurons(by_layer: Any) -> None:
    """A TypeError or ValueError naming ``by_layer`` unless it maps whole layer numbers to
    distinct whole neuron indices, all 0 or more: one truncated, negative or repeated would
    change other neurons than the caller named, or count one twice."""
    if not isinstance(by_layer, Mapping):
        raise TypeError(f"by_layer must map layers to neuron indices, e.g. {{3: [7, 1]}}, got "
                        f"{by_layer!r}")
    for layer, indices in by_layer.items():
        if isinstance(indices, str | bytes) or not isinstance(indices, Sequence | AbstractSet):
            raise TypeError(f"by_layer[{layer!r}] must be a list of neuron indices, got "
                            f"{indices!r}")
        bad = [value for value in (layer, *indices) if not is_whole(value) or value < 0]
        if bad:
            raise ValueError(f"by_layer {{{layer!r}: {list(indices)!r}}}: {bad[0]!r} is not a "
                             "whole number of 0 or more; give layers and indices as integers")
        if len(set(indices)) != len(indices):
            raise ValueError(f"by_layer[{layer!r}] lists a neuron twice ({list(indices)!r}); "
                             "list each once")


def with_means(ablation: Ablation, reference: ActivationStats) -> Ablation:
    """``ablation`` in mode ``mean``: each neuron set to its mean activation over every token of
    ``reference`` (all its emotions pooled)."""
    if reference.site != ablation.site:
        raise UserError(f"reference statistics were recorded at site {reference.site!r}, the "
                        f"intervention acts at {ablation.site!r}")
    mean = reference.sum.sum(0) / reference.tokens.sum().clamp(min=1)
    values = tuple(tuple(float(mean[layer, i]) for i in indices)
                   for layer, indices in ablation.neurons)
    return replace(ablation, mode="mean", values=values)


class TokenScope:
    """Which positions of the current forward pass a restricted intervention acts on: a bool
    tensor (batch, sequence) set by the caller before each pass, or ``None``."""

    def __init__(self, tokens: str) -> None:
        self.tokens = tokens
        self.mask: torch.Tensor | None = None


@contextmanager
def applied(loaded: LoadedModel, ablation: Ablation) -> Iterator[TokenScope]:
    """Apply ``ablation`` to ``loaded`` for the duration of the block; yields the
    :class:`TokenScope` a caller sets for the ``dialogue`` and ``last`` scopes.

    >>> with applied(loaded, Ablation.of_sets(sets, "fear")):  # doctest: +SKIP
    ...     logits = loaded.model(**inputs).logits  # without the fear neurons
    """
    if ablation.mode == "mean" and len(ablation.values) != len(ablation.neurons):
        raise UserError("mode mean needs one reference value per neuron: build the "
                        "intervention with emoneuron.causal.evaluation.intervene.with_means")
    site = loaded.adapter.site(ablation.site)
    modules = loaded.adapter.site_modules(loaded.model, ablation.site)
    for layer, indices in ablation.neurons:
        # Check every index, not only the largest: a negative one would silently wrap around.
        bad = [index for index in indices if not 0 <= index < loaded.width]
        if not 0 <= layer < len(modules) or bad:
            shown = bad[0] if bad else (indices[0] if indices else "-")
            raise UserError(f"neuron (layer {layer}, index {shown}) is outside this model "
                            f"({len(modules)} layers x {loaded.width} neurons); were the neurons "
                            "identified on another model?")
    scope = TokenScope(ablation.tokens)
    handles = []
    try:
        for position, (layer, indices) in enumerate(ablation.neurons):
            index = torch.tensor(indices, dtype=torch.long, device=loaded.device)
            values = (torch.tensor(ablation.values[position], device=loaded.device)
                      if ablation.mode == "mean" else None)
            handles.append(site.hook(modules[layer], _change(ablation, index, values, scope)))
        yield scope
    finally:
        for handle in handles:
            handle.remove()


def scope_positions(tokens: str, scope: TokenScope, shape: torch.Size) -> torch.Tensor | None:
    """(batch, sequence, 1) bool of the positions a ``tokens``-scoped intervention changes in
    a tensor of ``shape`` (batch, sequence, ...); ``None`` for every position."""
    if tokens == "all":
        return None
    if scope.mask is not None:
        if tuple(scope.mask.shape) != tuple(shape[:2]):
            raise RuntimeError(f"token scope mask {tuple(scope.mask.shape)} does not match the "
                               f"input {tuple(shape[:2])}")
        return scope.mask.unsqueeze(-1)
    if tokens == "dialogue":
        raise UserError("token scope 'dialogue' needs the dialogue's positions: run it "
                        "through the classifier (Classifier.predict(..., scope=...))")
    last = torch.zeros(shape[:2], dtype=torch.bool)
    last[:, -1] = True
    return last.unsqueeze(-1)


def _change(ablation: Ablation, index: torch.Tensor, values: torch.Tensor | None,
            scope: TokenScope) -> Callable[[torch.Tensor], torch.Tensor]:
    replacement, strength = REPLACEMENTS[ablation.mode], ablation.strength

    def change(hidden: torch.Tensor) -> torch.Tensor:
        nonlocal index, values
        if index.device != hidden.device:
            # This layer computes on another device than the model's inputs (a model split over
            # GPUs by ``device_map``): move the hook's tensors there once, not on every call.
            index = index.to(hidden.device)
            values = None if values is None else values.to(hidden.device)
        chosen = hidden[..., index]
        changed = replacement(chosen, strength, values)
        where = scope_positions(ablation.tokens, scope, hidden.shape)
        if where is not None:
            changed = torch.where(where.to(hidden.device), changed, chosen)
        hidden = hidden.clone()
        hidden[..., index] = changed
        return hidden
    return change
