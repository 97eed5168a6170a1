"""Emotion directions: one unit vector per emotion and residual layer, the distributed unit
beside the emotion neurons.

1. Features: :func:`emoneuron.causal.evaluation.probe.residual_features` of the identification
   dialogues, each read alone: per residual layer, the mean of the residual stream over the
   dialogue's own word tokens. Layers as there: 0 the embeddings, ``r`` the output of decoder
   layer ``r - 1``; the top one is after the final norm, as transformers returns it.
2. Difference of means: per layer, each emotion's mean feature minus the mean of the six
   emotions' means (each emotion weighs the same, however many dialogues it has), so the six
   differences sum to zero.
3. Optionally, ``neutral_components`` principal components of emotion-neutral dialogues'
   features (centred on their own mean, per layer) are projected out of every difference: what
   varies in any text, whatever its emotion. The synthetic data has no neutral dialogues; the
   corpus loaders keep DailyDialog's "no emotion" turns and MELD's and GoEmotions' neutral
   utterances as emotion ``neutral`` (:data:`emoneuron.data.schema.NEUTRAL`), which the six-way
   analysis drops: pass those records.
4. Unit directions (:attr:`EmotionDirections.unit`): each difference over its norm.
5. Held-out accuracy, label-free of the classifier: each held-out dialogue's features, centred
   on the identification data's mean of emotion means, are given the emotion whose unit
   direction is closest in angle (the largest dot product), per layer.

Controls: :func:`random_directions` (seeded random unit directions, in the same subspace, with
each difference's norm) and :func:`shuffled_label_directions` (the same recipe on seeded
shuffled labels). :func:`direction_writes` projects every neuron's down-projection column on
its emotion's direction, which the ``direction-projection`` statistic
(:func:`emoneuron.selection.scores.direction_projection`) multiplies by the neuron's mean
activation.

>>> directions = emotion_directions(loaded, identify, evaluation)  # doctest: +SKIP
>>> directions.held_out_accuracy[12]  # doctest: +SKIP
0.81
>>> with applied_direction(loaded, directions.ablation("fear", [12])):  # doctest: +SKIP
...     ...
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from emoneuron.causal.evaluation.probe import (
    FEATURES,
    checked_features,
    emotion_labels,
    residual_features,
)
from emoneuron.causal.evaluation.residual import DirectionAblation, DirectionSteering
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.statistics import load_tensors, save_tensors

DIRECTIONS_FORMAT = "1"
IDENTIFICATION = "identification labels"
ACCURACY = ("nearest direction: each held-out dialogue's features, centred on the "
            "identification data's mean of emotion means, given the emotion whose unit "
            "direction has the largest dot product with them, per layer")


@dataclass(frozen=True, eq=False)
class EmotionDirections:
    """Per emotion and residual layer, the centred difference of means; E emotions, R
    residual layers (the model's layers + 1), H the hidden size.

    >>> labels = torch.arange(12) % 6
    >>> features = torch.randn(12, 2, 8, generator=torch.Generator().manual_seed(0))
    >>> features[:, 1, :6] += 4 * torch.eye(6)[labels]  # layer 1 carries the emotion
    >>> directions = EmotionDirections.fit(features, labels)
    >>> directions.difference.sum(0).abs().max() < 1e-12
    tensor(True)
    >>> directions.with_held_out(features, labels).held_out_accuracy[1]
    1.0
    """

    difference: torch.Tensor  # (E, R, H) float64, before normalisation
    centre: torch.Tensor  # (R, H) float64: the mean of the emotions' mean features
    neutral_components: torch.Tensor  # (R, k, H) orthonormal rows projected out; k may be 0
    source: str = IDENTIFICATION
    held_out_accuracy: tuple[float, ...] = ()  # per layer
    # Per emotion with held-out dialogues, per layer: the share of them named.
    held_out_recall: Mapping[str, tuple[float, ...]] = field(default_factory=dict)

    @property
    def n_layers(self) -> int:
        """Residual layers (the model's layers + 1)."""
        return int(self.difference.shape[1])

    @property
    def unit(self) -> torch.Tensor:
        """(E, R, H) unit directions; a zero vector where a difference is zero."""
        norm = self.difference.norm(dim=-1, keepdim=True)
        unit: torch.Tensor = self.difference / norm.clamp(min=torch.finfo(torch.float64).tiny)
        return unit

    @classmethod
    def fit(cls, features: torch.Tensor, labels: torch.Tensor | Sequence[int],
            neutral_features: torch.Tensor | None = None, neutral_components: int = 0,
            source: str = IDENTIFICATION) -> EmotionDirections:
        """Directions from ``features`` (N, R, H) and their ``labels`` (N,) emotion indices,
        with the top ``neutral_components`` principal components of ``neutral_features``
        (M, R, H) projected out."""
        x, y = checked_features(features, labels)
        counts = torch.bincount(y, minlength=len(EMOTIONS))
        if not counts.all():
            missing = [e for e, n in zip(EMOTIONS, counts.tolist(), strict=True) if not n]
            raise UserError(f"no identification dialogue of {', '.join(missing)}: every "
                            "emotion needs at least one to have a direction")
        means = torch.stack([x[y == e].mean(0) for e in range(len(EMOTIONS))])
        centre = means.mean(0)
        components = _neutral_components(neutral_features, neutral_components, x.shape[1:])
        return cls(difference=_without(means - centre, components), centre=centre,
                   neutral_components=components, source=source)

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        """(N, R) int64: the emotion index of the nearest direction, per dialogue and layer."""
        x = features.to(torch.float64)
        if x.ndim != 3 or tuple(x.shape[1:]) != tuple(self.centre.shape):
            raise UserError(f"features of shape {tuple(x.shape)}, but these directions read "
                            f"(N, {', '.join(map(str, self.centre.shape))}); were they "
                            "computed on another model?")
        return torch.einsum("nrh,erh->nre", x - self.centre, self.unit).argmax(-1)

    def with_held_out(self, features: torch.Tensor,
                      labels: torch.Tensor | Sequence[int]) -> EmotionDirections:
        """These directions with their nearest-direction accuracy on held-out ``features``
        recorded per layer, overall and per emotion (the share of its dialogues named)."""
        _, y = checked_features(features, labels)
        correct = (self.predict(features) == y[:, None]).to(torch.float64)
        recall = {emotion: tuple(correct[y == e].mean(0).tolist())
                  for e, emotion in enumerate(EMOTIONS) if (y == e).any()}
        return replace(self, held_out_accuracy=tuple(correct.mean(0).tolist()),
                       held_out_recall=recall)

    def ablation(self, emotion: str, layers: Iterable[int],
                 tokens: str = "all") -> DirectionAblation:
        """Project ``emotion``'s direction out at each residual layer of ``layers``."""
        return DirectionAblation.of(self._vectors(emotion, layers), tokens)

    def steering(self, emotion: str, layers: Iterable[int], alpha: float,
                 tokens: str = "all") -> DirectionSteering:
        """Add ``alpha`` times ``emotion``'s unit direction at each residual layer of
        ``layers``."""
        return DirectionSteering.of(self._vectors(emotion, layers), tokens, alpha=alpha)

    def _vectors(self, emotion: str, layers: Iterable[int]) -> dict[int, torch.Tensor]:
        if emotion not in EMOTIONS:
            raise UserError(f"unknown emotion {emotion!r}: use one of {', '.join(EMOTIONS)}")
        chosen = sorted(set(layers))
        outside = [layer for layer in chosen if not 0 <= layer < self.n_layers]
        if outside:
            raise UserError(f"layer {outside[0]} is outside these directions' residual layers "
                            f"0 to {self.n_layers - 1}")
        return {layer: self.difference[EMOTIONS.index(emotion), layer] for layer in chosen}

    def description(self) -> dict[str, Any]:
        """What the ``.json`` beside the tensors holds: everything but the tensors."""
        return {"format": DIRECTIONS_FORMAT, "kind": "emotion directions",
                "features": FEATURES, "emotions": list(EMOTIONS), "layers": self.n_layers,
                "hidden": int(self.centre.shape[1]),
                "neutral_components": int(self.neutral_components.shape[1]),
                "source": self.source, "accuracy": ACCURACY,
                "held_out_accuracy": list(self.held_out_accuracy),
                "held_out_recall": {e: list(r) for e, r in self.held_out_recall.items()}}

    def save(self, path: str | Path, metadata: Mapping[str, Any] | None = None) -> None:
        """Tensors to ``path`` (safetensors, e.g. ``directions.safetensors``) and the
        description, with ``metadata`` (say the model's name), as JSON beside it."""
        save_tensors(path, {"difference": self.difference, "centre": self.centre,
                            "neutral_components": self.neutral_components},
                     {**self.description(), **(metadata or {})})

    @classmethod
    def load(cls, path: str | Path) -> EmotionDirections:
        header, tensors = load_tensors(path, "an emotion directions file",
                                       "that EmotionDirections.save writes")
        if header.get("kind") != "emotion directions" \
                or header.get("format") != DIRECTIONS_FORMAT:
            raise UserError(f"{path}: not an emotion directions file of format "
                            f"{DIRECTIONS_FORMAT}; compute the directions again")
        return cls(difference=tensors["difference"], centre=tensors["centre"],
                   neutral_components=tensors["neutral_components"], source=header["source"],
                   held_out_accuracy=tuple(json.loads(header["held_out_accuracy"])),
                   held_out_recall={e: tuple(r) for e, r in
                                    json.loads(header["held_out_recall"]).items()})


def emotion_directions(loaded: LoadedModel, identify: Sequence[Record],
                       evaluation: Sequence[Record], neutral: Sequence[Record] = (),
                       neutral_components: int = 0, batch_size: int = 16,
                       progress: bool = False) -> EmotionDirections:
    """The directions of ``identify``'s dialogues, denoised with ``neutral_components``
    principal components of the ``neutral`` dialogues, their accuracy on ``evaluation``."""
    def features(records: Sequence[Record]) -> torch.Tensor:
        return residual_features(loaded, records, batch_size=batch_size, progress=progress)

    # The feature pass batches dialogues by emotion and reads no label: give the neutral
    # dialogues (labelled with none of the six) any one of them.
    neutral_features = (features([replace(r, emotion=EMOTIONS[0]) for r in neutral])
                        if neutral_components else None)
    directions = EmotionDirections.fit(features(identify), emotion_labels(identify),
                                       neutral_features, neutral_components)
    return directions.with_held_out(features(evaluation), emotion_labels(evaluation))


def shuffled_label_directions(features: torch.Tensor, labels: torch.Tensor | Sequence[int],
                              seed: int, neutral_features: torch.Tensor | None = None,
                              neutral_components: int = 0) -> EmotionDirections:
    """The control of the labels: directions fitted after a seeded permutation of ``labels``
    (each emotion keeps its number of dialogues, which now carry no emotion in common).

    >>> features = torch.randn(12, 2, 8, generator=torch.Generator().manual_seed(0))
    >>> shuffled_label_directions(features, torch.arange(12) % 6, seed=3).source
    'shuffled labels (seed 3)'
    """
    _, y = checked_features(features, labels)
    permutation = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    return EmotionDirections.fit(features, y[permutation], neutral_features,
                                 neutral_components, source=f"shuffled labels (seed {seed})")


def random_directions(directions: EmotionDirections, seed: int) -> EmotionDirections:
    """The control of the direction: seeded random unit directions, uniform on the sphere of
    the subspace ``directions`` lie in (their neutral components projected out), each scaled to
    the norm of the difference it replaces; the same centre. Held-out accuracy is not carried
    over: record it with :meth:`EmotionDirections.with_held_out`.

    >>> real = EmotionDirections.fit(torch.randn(12, 2, 8), torch.arange(12) % 6)
    >>> control = random_directions(real, seed=0)
    >>> torch.allclose(control.difference.norm(dim=-1), real.difference.norm(dim=-1))
    True
    """
    generator = torch.Generator().manual_seed(seed)
    drawn = torch.randn(directions.difference.shape, generator=generator, dtype=torch.float64)
    unit = _without(drawn, directions.neutral_components)
    unit = unit / unit.norm(dim=-1, keepdim=True)
    return EmotionDirections(
        difference=unit * directions.difference.norm(dim=-1, keepdim=True),
        centre=directions.centre, neutral_components=directions.neutral_components,
        source=f"random (seed {seed})")


def direction_writes(loaded: LoadedModel, directions: EmotionDirections) -> torch.Tensor:
    """(E, L, W) float64: what each neuron writes along its emotion's unit direction per unit
    of activation, its down-projection column projected on the direction at the residual
    layer of its MLP's decoder layer's output (neuron ``(l, i)``: residual layer ``l + 1``).

    The projection is exact where the MLP's output joins the residual stream unchanged; Gemma 3
    normalises it first (``post_feedforward_layernorm``), and the top residual layer is read
    after the final norm, so there it is a first-order reading."""
    if directions.n_layers != loaded.n_layers + 1:
        raise UserError(f"directions of {directions.n_layers} residual layers, but this model "
                        f"has {loaded.n_layers + 1}; were they found on another model?")
    unit = directions.unit
    with torch.no_grad():
        return torch.stack([
            unit[:, layer + 1] @ loaded.adapter.down_projection(loaded.model, layer)
            .to(device="cpu", dtype=torch.float64) for layer in range(loaded.n_layers)], dim=1)


def _neutral_components(neutral: torch.Tensor | None, k: int,
                        shape: torch.Size) -> torch.Tensor:
    """(R, k, H): per layer, the top ``k`` principal axes of ``neutral`` (M, R, H)."""
    layers, hidden = shape
    if k == 0:
        return torch.zeros((layers, 0, hidden), dtype=torch.float64)
    if neutral is None or neutral.ndim != 3 or tuple(neutral.shape[1:]) != tuple(shape):
        raise UserError(f"neutral_components {k} needs neutral features of shape (M, {layers}, "
                        f"{hidden}), got {None if neutral is None else tuple(neutral.shape)}")
    if not 0 < k < min(len(neutral), hidden + 1):
        raise UserError(f"neutral_components {k}: give 0, or 1 to {min(len(neutral) - 1, hidden)}"
                        f" (fewer than the {len(neutral)} neutral dialogues)")
    x = neutral.to(torch.float64)
    centred = (x - x.mean(0)).transpose(0, 1)  # (R, M, H)
    axes: torch.Tensor = torch.linalg.svd(centred, full_matrices=False).Vh[:, :k]
    return axes


def _without(vectors: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """``vectors`` (E, R, H) with their part in each layer's ``components`` (R, k, H,
    orthonormal rows) removed."""
    coefficients = torch.einsum("erh,rkh->erk", vectors, components)
    return vectors - torch.einsum("erk,rkh->erh", coefficients, components)
