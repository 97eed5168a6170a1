"""Select the neurons that fire selectively for one emotion, from recorded statistics alone.

Two statistics, both computed from :class:`~emoneuron.record.ActivationStats` without touching
the model again:

``lape`` (the reference study's, after Tang et al. 2024)
    P(active | e) per emotion, normalised across emotions into a distribution; its entropy is low
    when a neuron fires for few emotions. Neurons whose highest P(active | e) is below the
    ``activity_quantile`` of all probabilities are dropped first (rarely active for any emotion),
    then the globally lowest-entropy ``share`` of all neurons is kept. Score: 1 - H / log(6).
``smd``
    One-vs-rest standardised mean difference of the activation (Cohen's d with pooled variance);
    the globally highest ``share`` by the largest d over emotions is kept. Score: that d.

Assignment: ``argmax`` gives each kept neuron to its single strongest emotion (exclusive);
``multi`` gives it to every emotion whose normalised probability reaches ``multi_threshold``,
which is how a neuron can count for several emotions (the reference study's per-emotion counts
for Llama-3.1-8B sum to more than 1% of its neurons, which suggests this reading).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_json
from emoneuron.record import ActivationStats

METHODS = ("lape", "smd")
ASSIGNMENTS = ("argmax", "multi")


@dataclass(frozen=True)
class IdentifyConfig:
    method: str = "lape"
    share: float = 0.01
    assignment: str = "argmax"
    activity_quantile: float = 0.95
    multi_threshold: float = 0.25

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise UserError(f"unknown method {self.method!r}: use one of {', '.join(METHODS)}")
        if self.assignment not in ASSIGNMENTS:
            raise UserError(f"unknown assignment {self.assignment!r}: use {', '.join(ASSIGNMENTS)}")
        if not 0 < self.share <= 1:
            raise UserError(f"share {self.share} must be in (0, 1], e.g. 0.01 for 1%")
        if not 0 <= self.activity_quantile < 1:
            raise UserError(f"activity quantile {self.activity_quantile} must be in [0, 1), "
                            "e.g. 0.95")
        if not 0 < self.multi_threshold <= 1:
            raise UserError(f"multi threshold {self.multi_threshold} must be in (0, 1], "
                            "e.g. 0.25")


@dataclass(frozen=True)
class Neuron:
    layer: int
    index: int
    score: float


@dataclass
class NeuronSets:
    model: str
    site: str
    n_layers: int
    width: int
    config: IdentifyConfig
    emotions: dict[str, list[Neuron]]
    overlap: list[list[int]] = field(default_factory=list)

    def layer_indices(self, emotion: str) -> dict[int, list[int]]:
        by_layer: dict[int, list[int]] = {}
        for neuron in self.emotions[emotion]:
            by_layer.setdefault(neuron.layer, []).append(neuron.index)
        return by_layer

    def to_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        return {
            "model": self.model, "site": self.site, "method": config.pop("method"),
            "parameters": config, "n_layers": self.n_layers, "width": self.width,
            "emotions": {e: [asdict(n) for n in ns] for e, ns in self.emotions.items()},
            "overlap": {"emotions": list(EMOTIONS), "counts": self.overlap},
        }

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> NeuronSets:
        try:
            payload = read_json(path)
            config = IdentifyConfig(method=payload["method"], **payload["parameters"])
            emotions = {e: [Neuron(int(n["layer"]), int(n["index"]), float(n["score"]))
                            for n in payload["emotions"][e]] for e in EMOTIONS}
            return cls(model=payload["model"], site=payload["site"],
                       n_layers=int(payload["n_layers"]), width=int(payload["width"]),
                       config=config, emotions=emotions,
                       overlap=payload.get("overlap", {}).get("counts", []))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise UserError(f"{path}: not a valid neurons.json ({error!r}); "
                            "write one with `emoneuron identify`") from None


def entropy_selectivity(stats: ActivationStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised activation probabilities (E, L, W) and 1 - H/log(E) per neuron (L, W).

    A neuron that never fires has no distribution over emotions: selectivity 0, not 1."""
    probability = stats.probability()
    total = probability.sum(0, keepdim=True)
    normalised = probability / total.clamp(min=1e-12)
    entropy = -(normalised * normalised.clamp(min=1e-12).log()).sum(0)
    selectivity = 1 - entropy / math.log(len(EMOTIONS))
    return normalised, torch.where(total[0] > 0, selectivity, torch.zeros_like(selectivity))


def standardised_mean_difference(stats: ActivationStats) -> torch.Tensor:
    """One-vs-rest Cohen's d per emotion, shape (E, L, W)."""
    count = stats.tokens.view(-1, 1, 1).clamp(min=1)
    rest_count = (stats.tokens.sum() - stats.tokens).view(-1, 1, 1).clamp(min=1)
    mean = stats.sum / count
    rest_mean = (stats.sum.sum(0, keepdim=True) - stats.sum) / rest_count
    var = (stats.sum_sq / count - mean.square()).clamp(min=0)
    rest_var = ((stats.sum_sq.sum(0, keepdim=True) - stats.sum_sq) / rest_count
                - rest_mean.square()).clamp(min=0)
    pooled = ((count * var + rest_count * rest_var) / (count + rest_count)).sqrt()
    return (mean - rest_mean) / pooled.clamp(min=1e-8)


def identify(stats: ActivationStats, config: IdentifyConfig, model: str) -> NeuronSets:
    """Select and assign emotion neurons; each emotion's list is ranked by score, best first."""
    normalised, selectivity = entropy_selectivity(stats)
    if config.method == "lape":
        probability = stats.probability()
        flat = probability.flatten()
        floor = flat.kthvalue(max(1, int(config.activity_quantile * flat.numel()))).values
        eligible = probability.max(0).values >= floor
        score = torch.where(eligible, selectivity, torch.full_like(selectivity, -math.inf))
        per_emotion = normalised
    else:
        per_emotion = standardised_mean_difference(stats)
        score = per_emotion.max(0).values
    n_keep = max(1, round(config.share * score.numel()))
    kept = torch.topk(score.flatten(), n_keep).indices
    kept = kept[torch.isfinite(score.flatten()[kept])]
    layers = (kept // stats.width).tolist()
    indices = (kept % stats.width).tolist()
    kept_profiles = per_emotion[:, layers, indices]  # (E, K)
    passes = normalised[:, layers, indices] >= config.multi_threshold
    if config.assignment == "argmax":
        members = torch.nn.functional.one_hot(kept_profiles.argmax(0), len(EMOTIONS)).T.bool()
    else:
        members = passes
    emotions: dict[str, list[Neuron]] = {}
    for e, emotion in enumerate(EMOTIONS):
        chosen = [Neuron(layers[k], indices[k], float(score[layers[k], indices[k]]))
                  for k in members[e].nonzero().flatten().tolist()]
        emotions[emotion] = sorted(chosen, key=lambda n: (-n.score, n.layer, n.index))
    overlap = (passes.double() @ passes.double().T).long().tolist()
    return NeuronSets(model=model, site=stats.site, n_layers=stats.n_layers, width=stats.width,
                      config=config, emotions=emotions, overlap=overlap)
