"""Control neuron sets: what an emotion's neurons are compared with when they are removed.

Each control has the same number of neurons *in every layer* as the set it controls for, so a
difference cannot come from how many neurons, or which depth, was touched:

- ``random``: uniformly drawn from the layer's other neurons (the emotion's own excluded);
- ``frequency``: also matched on activation frequency: each neuron is replaced by one of the
  ``FREQUENCY_NEIGHBOURS`` unused neurons of its layer whose frequency (share of recorded tokens
  with activation > 0, all emotions pooled) is closest to its own;
- ``least``: the layer's least selective neurons (lowest entropy selectivity) among those that
  fire at least as often as the layer's median neuron: active neurons that carry no emotion;
- ``shuffled``: the set the same selection rule finds when the identification labels are
  permuted (see :func:`shuffled_sets`): the rule's own null.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from emoneuron.errors import UserError
from emoneuron.identify import IdentifyConfig, NeuronSets, identify
from emoneuron.record import ActivationStats, Recording
from emoneuron.scores import entropy_selectivity
from emoneuron.stability import permuted_weights

CONTROLS = ("random", "frequency", "least", "shuffled")
FREQUENCY_NEIGHBOURS = 10

ByLayer = Mapping[int, Sequence[int]]


def check_controls(names: Sequence[str]) -> None:
    unknown = [name for name in names if name not in CONTROLS]
    if unknown or (names and "random" not in names):
        raise UserError(f"controls {', '.join(names)}: use some of {', '.join(CONTROLS)}, "
                        "always including random (the reference control)")


def _pool(sets: NeuronSets, emotion: str, layer: int, needed: int) -> np.ndarray:
    own = sets.layer_indices(emotion).get(layer, [])
    pool = np.setdiff1d(np.arange(sets.width), own)
    if len(pool) < needed:
        raise UserError(f"layer {layer}: {emotion} owns too many of its {sets.width} neurons "
                        "to draw a disjoint control; lower --share")
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


def shuffled_sets(recording: Recording, config: IdentifyConfig, model: str,
                  seeds: Sequence[int]) -> dict[int, NeuronSets]:
    """Per seed, the sets ``config`` selects when the recording's (emotion, group) cells are
    relabelled at random (:func:`emoneuron.stability.permuted_weights`): the identification
    dialogues' labels permuted group by group, from the same pass, with no new recording."""
    if config.method == "auroc":
        raise UserError("the shuffled-label control needs per-group statistics, which AUROC's "
                        "histograms do not keep; use another --method or leave shuffled out of "
                        "--controls")
    return {seed: identify(recording.combined(permuted_weights(
                recording, torch.Generator().manual_seed(seed))), config, model)
            for seed in seeds}
