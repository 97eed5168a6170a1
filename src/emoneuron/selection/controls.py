"""Control neuron sets: what an emotion's neurons are compared with when they are removed.

Each control has the same number of neurons *in every layer* as the set it controls for, so a
difference cannot come from how many neurons, or which depth, was touched:

- ``random``: uniformly drawn from the layer's other neurons (the emotion's own excluded);
- ``frequency``: also matched on activation frequency: each neuron is replaced by one of the
  ``FREQUENCY_NEIGHBOURS`` unused neurons of its layer whose frequency (share of recorded tokens
  with activation > 0, all emotions pooled) is closest to its own;
- ``least``: the layer's least selective neurons (lowest entropy selectivity) among those that
  fire at least as often as the layer's median neuron: active neurons that carry no emotion;
- ``shuffled``: the rule's own null (:func:`shuffled_controls`): the identification labels are
  permuted, and in each layer the k_l neurons the same rule ranks highest for the emotion on
  those labels replace the set's k_l (the set's own neurons excluded). When the null ranks fewer
  than k_l eligible neurons in a layer, the rest is drawn at random (seeded) from the layer's
  other neurons, and :attr:`ShuffledControl.filled` counts them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_json
from emoneuron.recording.statistics import ActivationStats, Recording
from emoneuron.selection.config import check_controls
from emoneuron.selection.identify import IdentifyConfig, NeuronSets, membership
from emoneuron.selection.scores import entropy_selectivity
from emoneuron.selection.stability import permuted_weights

CONTROLS = ("random", "frequency", "least", "shuffled")
FREQUENCY_NEIGHBOURS = 10

ByLayer = Mapping[int, Sequence[int]]


def _pool(sets: NeuronSets, emotion: str, layer: int, needed: int) -> np.ndarray:
    own = sets.layer_indices(emotion).get(layer, [])
    pool = np.setdiff1d(np.arange(sets.width), own)
    if len(pool) < needed:
        raise UserError(f"layer {layer}: {emotion} owns too many of its {sets.width} neurons "
                        "to draw a disjoint control; select fewer neurons (a run: a lower "
                        "--share, in a new --out directory)")
    return pool


def random_matched(by_layer: ByLayer, sets: NeuronSets, emotion: str,
                   rng: np.random.Generator) -> dict[int, list[int]]:
    return {layer: rng.choice(_pool(sets, emotion, layer, len(indices)), size=len(indices),
                              replace=False).tolist()
            for layer, indices in sorted(by_layer.items())}


def frequency(stats: ActivationStats) -> torch.Tensor:
    """Share of all recorded tokens on which each neuron fires, (layers, width)."""
    return stats.active.sum(0) / stats.tokens.sum().clamp(min=1)


def frequency_matched(by_layer: ByLayer, sets: NeuronSets, emotion: str, stats: ActivationStats,
                      rng: np.random.Generator) -> dict[int, list[int]]:
    rates = frequency(stats).numpy()
    controls: dict[int, list[int]] = {}
    for layer, indices in sorted(by_layer.items()):
        unused = list(_pool(sets, emotion, layer, len(indices)))
        chosen = []
        for index in indices:
            distance = np.abs(rates[layer, unused] - rates[layer, index])
            nearest = np.argsort(distance, kind="stable")[:FREQUENCY_NEIGHBOURS]
            chosen.append(int(unused.pop(int(rng.choice(nearest)))))
        controls[layer] = chosen
    return controls


def least_selective(by_layer: ByLayer, sets: NeuronSets, emotion: str,
                    stats: ActivationStats) -> dict[int, list[int]]:
    _, selectivity = entropy_selectivity(stats)
    rates = frequency(stats)
    controls: dict[int, list[int]] = {}
    for layer, indices in sorted(by_layer.items()):
        pool = torch.from_numpy(_pool(sets, emotion, layer, len(indices)))
        active = pool[rates[layer, pool] >= rates[layer].median()]
        if len(active) < len(indices):
            active = pool
        order = torch.argsort(selectivity[layer, active], stable=True)
        controls[layer] = active[order[:len(indices)]].tolist()
    return controls


def null_matched(by_layer: ByLayer, sets: NeuronSets, emotion: str, candidates: torch.Tensor,
                 score: torch.Tensor, rng: np.random.Generator) -> tuple[dict[int, list[int]],
                                                                         dict[int, int]]:
    """Per layer, the ``candidates`` (L, W) with the highest ``score`` (L, W), as many as
    ``by_layer`` has there, then random fills; and how many were filled per layer."""
    controls: dict[int, list[int]] = {}
    filled: dict[int, int] = {}
    for layer, indices in sorted(by_layer.items()):
        pool = _pool(sets, emotion, layer, len(indices))
        eligible = pool[candidates[layer, pool].numpy()]
        order = np.argsort(-score[layer, eligible].numpy(), kind="stable")
        ranked = eligible[order][:len(indices)]
        fill = rng.choice(np.setdiff1d(pool, ranked), size=len(indices) - len(ranked),
                          replace=False)
        controls[layer] = [*ranked.tolist(), *fill.tolist()]
        filled[layer] = len(fill)
    return controls, filled


@dataclass(frozen=True)
class ShuffledControl:
    """One seed's shuffled-label control: per emotion and layer, the control neurons for that
    emotion's whole set, best null score first (random fills last)."""

    seed: int
    neurons: Mapping[str, Mapping[int, Sequence[int]]]
    filled: Mapping[str, Mapping[int, int]]

    def matched(self, by_layer: ByLayer, emotion: str) -> dict[int, list[int]]:
        """The control for part of the emotion's set (``by_layer``): per layer the first as
        many, i.e. the null's best."""
        return {layer: list(self.neurons[emotion][layer][:len(indices)])
                for layer, indices in sorted(by_layer.items())}

    @classmethod
    def load(cls, path: str | Path) -> ShuffledControl:
        """The control :meth:`save` wrote."""
        payload = read_json(path)
        return cls(int(payload["seed"]),
                   {e: {int(layer): list(indices) for layer, indices in by_layer.items()}
                    for e, by_layer in payload["emotions"].items()},
                   {e: {int(layer): int(n) for layer, n in counts.items()}
                    for e, counts in payload["filled_at_random"].items()})

    def save(self, path: str | Path) -> None:
        write_json(path, {"seed": self.seed,
                          "emotions": {e: {str(layer): list(indices)
                                           for layer, indices in by_layer.items()}
                                       for e, by_layer in self.neurons.items()},
                          "filled_at_random": {e: {str(layer): n for layer, n in counts.items()}
                                               for e, counts in self.filled.items()}})


def shuffled_controls(recording: Recording, config: IdentifyConfig, sets: NeuronSets,
                      seeds: Sequence[int]) -> dict[int, ShuffledControl]:
    """Per seed, the shuffled-label control of every emotion's set: the recording's (emotion,
    group) cells are relabelled at random (:func:`emoneuron.selection.stability.permuted_weights`:
    the identification dialogues' labels permuted group by group, from the same pass, with no new
    recording), ``config``'s rule scores the neurons without its share or top-n cap
    (:func:`emoneuron.selection.identify.membership`), and :func:`null_matched` matches each set
    layer by layer."""
    check_controls(config.statistic, ("random", "shuffled"))
    controls = {}
    for seed in seeds:
        null = recording.combined(permuted_weights(recording, torch.Generator().manual_seed(seed)))
        candidates, score = membership(null, config, capped=False)
        neurons, filled = {}, {}
        for e, emotion in enumerate(EMOTIONS):
            rng = np.random.default_rng([seed, e])
            neurons[emotion], filled[emotion] = null_matched(
                sets.layer_indices(emotion), sets, emotion, candidates[e], score[e], rng)
        controls[seed] = ShuffledControl(seed, neurons, filled)
    return controls
