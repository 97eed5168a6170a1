"""The neuron sets a selection writes (``neurons.json``): :class:`Neuron`, :class:`NeuronSets`, and
their reading, which names the file and the value it refuses. No torch: a report reads them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.io import read_json, write_json
from emoneuron.options import is_whole
from emoneuron.selection.config import IdentifyConfig

DEPTH_BINS = 10


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

    def top(self, sizes: Mapping[str, int]) -> NeuronSets:
        """Each emotion's set cut to its first ``sizes[emotion]`` neurons (emotions not named
        keep theirs): its top-ranked by the score its rule selected them by, since each list is
        ranked best first (:func:`emoneuron.selection.identify.identify`, and the sweep's
        proportions rely on that order too). The overlap counts are the cut sets' own.

        >>> anger = [Neuron(1, 5, 0.9), Neuron(0, 2, 0.4), Neuron(1, 3, 0.2)]
        >>> sets = NeuronSets("tiny", "mlp.activation", 2, 8, IdentifyConfig(),
        ...                   {e: anger if e == "anger" else [] for e in EMOTIONS})
        >>> sets.top({"anger": 2}).emotions["anger"]
        [Neuron(layer=1, index=5, score=0.9), Neuron(layer=0, index=2, score=0.4)]
        """
        emotions = {e: neurons[:sizes.get(e, len(neurons))]
                    for e, neurons in self.emotions.items()}
        cut = replace(self, emotions=emotions, overlap=[])
        cut.overlap = cut.selected_overlap()
        return cut

    def keyed(self, names: Sequence[str]) -> dict[str, dict[str, list[int]]]:
        """Each emotion's neuron indices, ascending, under the name of their layer
        (``names[layer]``: e.g. another tool's hook names for the sets' site, from
        :meth:`emoneuron.models.adapters.Adapter.hook_names`); layers without neurons are left
        out.

        >>> sets = NeuronSets("tiny", "mlp.down_proj.input", 2, 8, IdentifyConfig(),
        ...                   {"anger": [Neuron(1, 5, 0.9), Neuron(0, 2, 0.4), Neuron(1, 3, 0.2)]})
        >>> sets.keyed(["blocks.0.mlp.hook_post", "blocks.1.mlp.hook_post"])
        {'anger': {'blocks.0.mlp.hook_post': [2], 'blocks.1.mlp.hook_post': [3, 5]}}
        """
        if len(names) != self.n_layers:
            raise UserError(f"{len(names)} layer names for sets of a {self.n_layers}-layer "
                            "model; give one name per layer")
        return {emotion: {names[layer]: sorted(indices)
                          for layer, indices in sorted(self.layer_indices(emotion).items())}
                for emotion in self.emotions}

    def to_json(self) -> dict[str, Any]:
        config = asdict(self.config)
        statistic = config.pop("statistic")
        return {
            "model": self.model, "site": self.site, "statistic": statistic,
            "rule": self.config.rule, "parameters": config, "n_layers": self.n_layers,
            "width": self.width,
            "emotions": {e: [asdict(n) for n in ns] for e, ns in self.emotions.items()},
            "overlap": {"emotions": list(EMOTIONS), "counts": self.overlap,
                        "selected": self.selected_overlap()},
            "distribution": self.distribution(),
        }

    def selected_overlap(self) -> list[list[int]]:
        """Neurons in both emotions' sets, (E, E); the diagonal is each set's size."""
        sets = [{(n.layer, n.index) for n in self.emotions[e]} for e in EMOTIONS]
        return [[len(a & b) for b in sets] for a in sets]

    def distribution(self) -> dict[str, Any]:
        """Counts per layer and per relative depth (layer / n_layers, in tenths) per emotion."""
        per_layer = {e: [0] * self.n_layers for e in EMOTIONS}
        depth = {e: [0] * DEPTH_BINS for e in EMOTIONS}
        for emotion in EMOTIONS:
            for neuron in self.emotions[emotion]:
                per_layer[emotion][neuron.layer] += 1
                depth[emotion][neuron.layer * DEPTH_BINS // self.n_layers] += 1
        return {"per_layer": per_layer,
                "relative_depth": {"bins": [f"{b / DEPTH_BINS:.1f}-{(b + 1) / DEPTH_BINS:.1f}"
                                            for b in range(DEPTH_BINS)], "counts": depth}}

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> NeuronSets:
        """The sets of a neurons.json; a UserError names the file and the value where it is
        not one :meth:`save` could have written: a layer or index that is no whole number,
        a neuron listed twice for one emotion, or one outside the shape the file declares."""
        try:
            payload = read_json(path)
            config = _config(payload)
            emotions = parse_neurons(payload["emotions"], path)
            n_layers, width = _whole(payload["n_layers"]), _whole(payload["width"])
            sets = cls(model=str(payload["model"]), site=str(payload["site"]), n_layers=n_layers,
                       width=width, config=config, emotions={e: emotions[e] for e in EMOTIONS},
                       overlap=_overlap(payload.get("overlap")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise UserError(f"{path}: not a valid neurons.json ({error!r}); "
                            "write one with `emoneuron identify`") from None
        check_inside(emotions, path, n_layers, width)
        return sets


def _config(payload: dict[str, Any]) -> IdentifyConfig:
    """The identification settings a neurons.json declares; a value the config refuses is a
    ValueError here (the file's, not a command-line option's)."""
    try:
        return IdentifyConfig(**_current(payload))
    except UserError as error:
        raise ValueError(f"parameters: {error}") from None


def _overlap(overlap: Any) -> list[list[int]]:
    """The overlap counts of a neurons.json: E x E whole numbers, or none (absent or empty:
    a file from before they were kept, or written by hand)."""
    counts = overlap.get("counts", []) if isinstance(overlap, dict) else overlap
    if counts in (None, []):
        return []
    if not (isinstance(counts, list) and len(counts) == len(EMOTIONS)
            and all(isinstance(row, list) and len(row) == len(EMOTIONS)
                    and all(is_whole(n) and n >= 0 for n in row) for row in counts)):
        raise TypeError(f"overlap counts must be {len(EMOTIONS)} x {len(EMOTIONS)} whole "
                        f"numbers, got {json.dumps(counts)[:80]}")
    return counts


def _whole(value: Any) -> int:
    """``value`` if it is an integer (a float or bool is refused, never truncated)."""
    if not is_whole(value):
        raise TypeError(f"expected a whole number, got {json.dumps(value)}")
    return int(value)


def parse_neurons(listed: dict[str, Any], path: str | Path) -> dict[str, list[Neuron]]:
    """Each emotion's neurons of a neurons.json's ``emotions`` object. A layer or index that is
    no whole number is refused, not truncated; a neuron listed twice for one emotion is refused:
    it would count twice in the set while its random control counts it once."""
    emotions: dict[str, list[Neuron]] = {}
    for emotion, neurons in listed.items():
        seen: set[tuple[int, int]] = set()
        emotions[emotion] = []
        for neuron in neurons:
            for name in ("layer", "index"):
                if not is_whole(neuron[name]):
                    raise UserError(f"{path}: {emotion} neuron {name} "
                                    f"{json.dumps(neuron[name])} is not a whole number; give "
                                    "each layer and index as an integer, as `emoneuron "
                                    "identify` writes them")
            layer, index = neuron["layer"], neuron["index"]
            if (layer, index) in seen:
                raise UserError(f"{path}: {emotion} lists neuron layer {layer} index {index} "
                                "twice; list each neuron once per emotion")
            seen.add((layer, index))
            score = neuron["score"]
            if isinstance(score, bool) or not (isinstance(score, int | float)
                                               and math.isfinite(score)):
                raise UserError(f"{path}: {emotion} neuron layer {layer} index {index} has score "
                                f"{json.dumps(score)}, not a finite number; give the scores "
                                "`emoneuron identify` wrote")
            emotions[emotion].append(Neuron(layer, index, float(score)))
    return emotions


def check_inside(emotions: dict[str, list[Neuron]], path: str | Path, n_layers: int,
                 width: int) -> None:
    """Refuse a neuron outside a model of ``n_layers`` layers of ``width`` neurons."""
    for emotion, neurons in emotions.items():
        for neuron in neurons:
            if not (0 <= neuron.layer < n_layers and 0 <= neuron.index < width):
                raise UserError(f"{path}: {emotion} neuron layer {neuron.layer} index "
                                f"{neuron.index} is outside the model ({n_layers} layers x "
                                f"{width} neurons); use the neurons.json identified for this "
                                "model")


def _current(payload: dict[str, Any]) -> dict[str, Any]:
    """The IdentifyConfig fields of a neurons.json, also of one written before ``multi``
    became ``normalised`` or that names its statistic ``method``."""
    name = "statistic" if "statistic" in payload else "method"
    parameters = {"statistic": payload[name], **payload["parameters"]}
    if "multi_threshold" not in parameters:
        return parameters
    renamed = {**parameters, "normalised_threshold": parameters["multi_threshold"]}
    del renamed["multi_threshold"]
    if renamed["assignment"] == "multi":
        renamed["assignment"] = "normalised"
    return renamed
