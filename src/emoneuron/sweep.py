"""The condition grid (baseline, masked, random controls, layer range x proportion), its
executor and its resumable store, and the tables built from it.

Every finished condition is appended to ``conditions.jsonl`` in the run directory as one line
(fsynced) holding its per-dialogue predictions. A re-run skips finished conditions, so a killed
run resumes where it stopped; a torn last line from a kill is ignored and recomputed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.evaluate import Classifier
from emoneuron.identify import NeuronSets
from emoneuron.intervene import Ablation, applied
from emoneuron.io import atomic_open

LAYER_RANGES = ("bottom", "middle", "top", "all")
DEFAULT_PROPORTIONS = (0.2, 0.4, 0.6, 0.8, 1.0)


def in_range(layer: int, n_layers: int, layer_range: str) -> bool:
    """Thirds of the stack: layer ``l`` is in third ``3l // n_layers`` (0 bottom, 2 top)."""
    if layer_range == "all":
        return True
    return LAYER_RANGES.index(layer_range) == layer * 3 // n_layers


@dataclass(frozen=True)
class Condition:
    kind: str  # baseline | mask | control
    masked_emotion: str = ""
    layer_range: str = "all"
    proportion: float = 1.0
    seed: int | None = None
    eval_emotions: tuple[str, ...] = EMOTIONS

    @property
    def key(self) -> str:
        return (f"{self.kind}/{self.masked_emotion}/{self.layer_range}/{self.proportion:g}/"
                f"{self.seed}/{','.join(self.eval_emotions)}")


def grid(control_seeds: Sequence[int], proportions: Sequence[float],
         sweep_eval: str = "self") -> list[Condition]:
    """Baseline, each emotion masked (all layers, all neurons) and its matched random controls,
    then the sweep: each emotion x layer range x proportion."""
    conditions = [Condition("baseline")]
    for emotion in EMOTIONS:
        conditions.append(Condition("mask", emotion))
        conditions += [Condition("control", emotion, seed=seed) for seed in control_seeds]
    for emotion in EMOTIONS:
        evaluated = (emotion,) if sweep_eval == "self" else EMOTIONS
        for layer_range in LAYER_RANGES:
            for proportion in proportions:
                if (layer_range, proportion) != ("all", 1.0):
                    conditions.append(Condition("mask", emotion, layer_range, proportion,
                                                eval_emotions=evaluated))
    return conditions


def ablation_for(condition: Condition, sets: NeuronSets) -> Ablation:
    """The neurons a condition removes: the emotion's top-ranked share within the layer range;
    for a control, random neurons with the same count in every layer, disjoint from the set."""
    if condition.kind == "baseline":
        return Ablation.of({})
    ranked = [n for n in sets.emotions[condition.masked_emotion]
              if in_range(n.layer, sets.n_layers, condition.layer_range)]
    # Rounded first: 0.55 * 100 is 55.000000000000007 in floating point, not 55.
    chosen = ranked[:math.ceil(round(condition.proportion * len(ranked), 9))]
    by_layer: dict[int, list[int]] = {}
    for neuron in chosen:
        by_layer.setdefault(neuron.layer, []).append(neuron.index)
    if condition.kind == "mask":
        return Ablation.of(by_layer)
    rng = np.random.default_rng([condition.seed or 0, EMOTIONS.index(condition.masked_emotion)])
    own = sets.layer_indices(condition.masked_emotion)
    controls = {}
    for layer, indices in sorted(by_layer.items()):
        pool = np.setdiff1d(np.arange(sets.width), own.get(layer, []))
        if len(pool) < len(indices):
            raise UserError(f"layer {layer}: {condition.masked_emotion} owns too many of its "
                            f"{sets.width} neurons to draw a disjoint random control; "
                            "lower --share")
        controls[layer] = rng.choice(pool, size=len(indices), replace=False).tolist()
    return Ablation.of(controls)


class ConditionStore:
    """Append-only record of finished conditions.

    ``context`` is a hash of everything a stored prediction depends on besides its condition
    (evaluation data, neuron sets, model, prompt): a store written under another context is
    refused rather than silently mixed in.
    """

    def __init__(self, path: Path, context: str) -> None:
        self.path = path
        self.context = context
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._read()

    def _read(self) -> None:
        with self.path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if number == last:
                    continue  # torn final line of a killed run: that condition reruns
                raise UserError(f"{self.path}:{number}: corrupted condition record; "
                                "delete the file to recompute all conditions") from None
            if entry.get("context") != self.context:
                raise UserError(f"{self.path}: written for different evaluation data, neurons, "
                                "model or prompt; use a new --out directory or delete the file")
            self.done[entry["key"]] = entry
        self._rewrite_clean()

    def _rewrite_clean(self) -> None:
        with atomic_open(self.path) as handle:
            for entry in self.done.values():
                handle.write(json.dumps(entry) + "\n")

    def add(self, condition: Condition, n_masked: int, predicted: np.ndarray) -> None:
        entry = {"key": condition.key, "context": self.context, **asdict(condition),
                 "n_masked": n_masked, "predictions": predicted.tolist()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[condition.key] = entry


def execute(classifier: Classifier, sets: NeuronSets, evaluation: Sequence[Record],
            conditions: Iterable[Condition], store: ConditionStore,
            progress: bool = True) -> None:
    """Evaluate every condition not yet in ``store``, one after the other."""
    todo = [c for c in conditions if c.key not in store.done]
    for condition in tqdm(todo, desc="conditions", unit="cond", disable=not progress):
        subset = [r for r in evaluation if r.emotion in condition.eval_emotions]
        ablation = ablation_for(condition, sets)
        with applied(classifier.loaded, ablation):
            scores = classifier.predict(subset, unchanged_below=ablation.first_layer)
        store.add(condition, ablation.size, scores.argmax(axis=1))


def correctness(entry: dict[str, Any], evaluation: Sequence[Record]) -> pd.DataFrame:
    """Per-dialogue rows (eval_emotion, correct) of one stored condition, in evaluation order."""
    subset = [r for r in evaluation if r.emotion in entry["eval_emotions"]]
    truth = np.array([EMOTIONS.index(r.emotion) for r in subset])
    return pd.DataFrame({"eval_emotion": [r.emotion for r in subset],
                         "correct": (np.array(entry["predictions"]) == truth).astype(float)})
