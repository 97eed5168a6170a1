"""Interventions on the residual stream along directions, as small serialisable specs.

The residual stream's unit beside the neuron
:class:`~emoneuron.causal.evaluation.intervene.Ablation`:

- :class:`DirectionAblation`: ``h <- h - (h . d) d``, the unit direction ``d`` projected out;
- :class:`DirectionSteering`: ``h <- h + alpha * d``.

Each names one unit direction per residual layer (an emotion's direction at that layer, say
from :class:`emoneuron.causal.experiments.directions.EmotionDirections`), numbered as
:func:`emoneuron.causal.evaluation.probe.residual_features` numbers them: layer ``r`` is the output
of decoder layer ``r - 1`` (the adapter's layer list); layer 0, the embeddings, is not a decoder
layer's output and cannot be named. At the top layer the edit acts before the final norm.
``tokens`` scopes the edit as for neurons (``all``, ``dialogue``, ``last``; the caller sets
:attr:`~emoneuron.causal.evaluation.intervene.TokenScope.mask` for each forward pass).

:func:`applied_direction` hooks each named decoder layer's output and removes every hook on
exit, also when the body raises.

>>> ablation = DirectionAblation.of({2: [3.0, 4.0]})
>>> ablation.directions
((2, (0.6, 0.8)),)
>>> DirectionSteering.from_json(DirectionSteering.of({1: [0.0, 2.0]}, alpha=4.0).to_json())
DirectionSteering(directions=((1, (0.0, 1.0)),), tokens='all', alpha=4.0)
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import torch
from torch import nn

from emoneuron.causal.config import check_scope
from emoneuron.causal.evaluation.intervene import Ablation, TokenScope, applied, scope_positions
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel
from emoneuron.options import is_whole

# (residual layer, unit direction), sorted by layer.
Directions = tuple[tuple[int, tuple[float, ...]], ...]


@dataclass(frozen=True)
class DirectionEdit:
    """What both direction interventions share: one unit direction per residual layer and the
    token scope. Build one with :meth:`of`, which scales each vector to unit length."""

    directions: Directions
    tokens: str = "all"
    kind: ClassVar[str] = ""
    # The fields besides the directions and the scope, as the JSON form names them.
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def of(cls, by_layer: Mapping[int, Sequence[float] | torch.Tensor], tokens: str = "all",
           **settings: Any) -> Self:
        """The intervention along ``by_layer``'s vectors (residual layer -> vector of the
        model's hidden size), each divided by its norm."""
        unit = {}
        for layer, vector in by_layer.items():
            values = torch.as_tensor(vector, dtype=torch.float64)
            norm = float(values.norm()) if values.ndim == 1 else math.nan
            if not math.isfinite(norm) or norm == 0:
                raise UserError(f"the direction at layer {layer} must be one finite, non-zero "
                                f"vector, got shape {tuple(values.shape)} and norm {norm}")
            unit[layer] = tuple((values / norm).tolist())
        return cls.checked(tuple(sorted(unit.items())), tokens, **settings)

    @classmethod
    def checked(cls, directions: Directions, tokens: str, **settings: Any) -> Self:
        """The intervention as given, its layers and scope checked (vectors not rescaled)."""
        check_scope(tokens)
        bad = [layer for layer, _ in directions if not is_whole(layer) or layer < 1]
        if bad:
            raise UserError(f"residual layer {bad[0]!r}: name layers 1 (the first decoder "
                            "layer's output) and above; layer 0, the embeddings, cannot be "
                            "changed")
        return cls(directions=tuple((int(layer), vector) for layer, vector in directions),
                   tokens=tokens, **settings)

    @property
    def first_layer(self) -> int:
        """The lowest decoder layer whose output this edit changes (residual layer ``r`` is
        decoder layer ``r - 1``'s output; 0 when it changes none), as
        :attr:`~emoneuron.causal.evaluation.intervene.Ablation.first_layer` says of neurons: every
        layer below it computes exactly as without the edit.

        >>> DirectionAblation.of({3: [1.0], 5: [1.0]}).first_layer
        2
        """
        return min((layer for layer, _ in self.directions), default=1) - 1

    @property
    def size(self) -> int:
        """Directions edited: one per residual layer."""
        return len(self.directions)

    def layer_counts(self) -> dict[int, int]:
        """Per decoder layer whose output is edited, one direction."""
        return {layer - 1: 1 for layer, _ in self.directions}

    def edited(self, hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        """``hidden`` (..., hidden size) after the edit along the unit ``direction``."""
        raise NotImplementedError

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokens": self.tokens,
                **{name: getattr(self, name) for name in self.settings},
                "directions": {str(layer): list(vector) for layer, vector in self.directions}}

    @classmethod
    def from_json(cls, payload: Mapping[str, Any]) -> Self:
        if payload.get("kind") != cls.kind:
            raise UserError(f"a {payload.get('kind')!r} intervention, not a {cls.kind!r} one")
        directions = tuple(sorted((int(layer), tuple(float(v) for v in vector))
                                  for layer, vector in payload["directions"].items()))
        settings = {name: payload[name] for name in cls.settings}
        return cls.checked(directions, payload["tokens"], **settings)


@dataclass(frozen=True)
class DirectionAblation(DirectionEdit):
    """Project the unit direction out of the residual stream: ``h - (h . d) d``."""

    kind: ClassVar[str] = "direction-ablation"

    def edited(self, hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return hidden - (hidden @ direction).unsqueeze(-1) * direction


@dataclass(frozen=True)
class DirectionSteering(DirectionEdit):
    """Add ``alpha`` times the unit direction to the residual stream: ``h + alpha d``;
    ``alpha`` is in the residual stream's own units (its norm per position varies by model
    and layer)."""

    alpha: float = 0.0
    kind: ClassVar[str] = "direction-steering"
    settings: ClassVar[tuple[str, ...]] = ("alpha",)

    def __post_init__(self) -> None:
        if not math.isfinite(self.alpha):
            raise UserError(f"steering alpha {self.alpha}: give a finite number")

    def edited(self, hidden: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
        return hidden + self.alpha * direction


@contextmanager
def applied_direction(loaded: LoadedModel, intervention: DirectionEdit) -> Iterator[TokenScope]:
    """Apply ``intervention`` to ``loaded`` for the duration of the block; yields the
    :class:`TokenScope` a caller sets for the ``dialogue`` and ``last`` scopes.

    >>> with applied_direction(loaded, directions.ablation("fear", [12])):  # doctest: +SKIP
    ...     logits = loaded.model(**inputs).logits  # without fear's direction at layer 12
    """
    layers = loaded.adapter.layers(loaded.model)
    hidden = loaded.hidden
    for layer, vector in intervention.directions:
        if not layer <= len(layers) or len(vector) != hidden:
            raise UserError(f"a direction of size {len(vector)} at residual layer {layer}, but "
                            f"this model has layers 1 to {len(layers)} of size {hidden}; were "
                            "the directions found on another model?")
    scope = TokenScope(intervention.tokens)
    handles = []
    try:
        for layer, vector in intervention.directions:
            change = _change(intervention, torch.tensor(vector, dtype=torch.float32), scope)
            # transformers records hidden_states with forward hooks of its own on these layers
            # (installed when first asked for); running first, the edit is what it records.
            handles.append(layers[layer - 1].register_forward_hook(change, prepend=True))
        yield scope
    finally:
        for handle in handles:
            handle.remove()


# Either unit's intervention: neurons, or directions of the residual stream. Both name their
# first changed layer, their size and their token scope, so the classifier, the probe and the
# condition store treat them alike.
Intervention = Ablation | DirectionEdit


def intervened(loaded: LoadedModel, intervention: Intervention
               ) -> AbstractContextManager[TokenScope]:
    """:func:`applied` for neurons, :func:`applied_direction` for directions.

    >>> with intervened(loaded, directions.ablation("fear", [12])):  # doctest: +SKIP
    ...     ...
    """
    if isinstance(intervention, Ablation):
        return applied(loaded, intervention)
    return applied_direction(loaded, intervention)


def _change(intervention: DirectionEdit, direction: torch.Tensor, scope: TokenScope) -> Any:
    def change(_module: nn.Module, _args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor:
        nonlocal direction
        if direction.device != output.device:
            # A model split over devices: move the direction to this layer's once.
            direction = direction.to(output.device)
        # In float32: a bfloat16 dot product over the hidden size would lose the projection.
        changed = intervention.edited(output.float(), direction).to(output.dtype)
        where = scope_positions(intervention.tokens, scope, output.shape)
        return changed if where is None else torch.where(where.to(output.device), changed,
                                                         output)
    return change

