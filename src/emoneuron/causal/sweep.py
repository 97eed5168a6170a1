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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.classifier import Classifier
from emoneuron.causal.config import DEFAULT_PROPORTIONS as DEFAULT_PROPORTIONS
from emoneuron.causal.config import LAYER_RANGES, in_range
from emoneuron.causal.config import Design as Design
from emoneuron.causal.intervene import Ablation, with_means
from emoneuron.causal.residual import Intervention, intervened
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.executors import Executor, LocalExecutor
from emoneuron.io import atomic_open, naming
from emoneuron.models.loading import ModelSpec
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.controls import (
    CONTROLS,
    ShuffledControl,
    frequency_matched,
    least_selective,
    random_matched,
)
from emoneuron.selection.identify import Neuron, NeuronSets


@dataclass(frozen=True)
class Condition:
    kind: str  # baseline | mask | control
    masked_emotion: str = ""
    layer_range: str = "all"
    proportion: float = 1.0
    seed: int | None = None
    eval_emotions: tuple[str, ...] = EMOTIONS
    control: str = ""  # kind control: one of controls.CONTROLS
    mode: str = "zero"
    strength: float = 0.0
    tokens: str = "all"
    # The selection method whose sets are masked (emoneuron.causal.methods); "" = the run's own
    # sets.
    method: str = ""
    # Besides every dialogue of eval_emotions, the first N of each other emotion (the cross
    # sample of emoneuron.causal.setlevel).
    cross_sample: int = 0
    # Another answer format than the run's ("" = the run's): the classifier evaluating the
    # condition asks in that format (emoneuron.causal.setlevel's format test).
    answer_format: str = ""

    @property
    def key(self) -> str:
        # Parts are appended only when set, so the keys of older stores stay valid.
        method = f"/{self.method}" if self.method else ""
        cross = f"/cross{self.cross_sample}" if self.cross_sample else ""
        answers = f"/format-{self.answer_format}" if self.answer_format else ""
        return (f"{self.kind}/{self.control}/{self.masked_emotion}/{self.layer_range}/"
                f"{self.proportion:g}/{self.seed}/{self.mode}/{self.strength:g}/{self.tokens}/"
                f"{','.join(self.eval_emotions)}{method}{cross}{answers}")


def evaluated(evaluation: Sequence[Record], eval_emotions: Sequence[str],
              cross_sample: int = 0) -> list[Record]:
    """The dialogues a condition is evaluated on, in evaluation order: every one of
    ``eval_emotions`` and the first ``cross_sample`` of each other emotion.

    >>> from emoneuron.data.synth import synthesize
    >>> [r.emotion for r in evaluated(synthesize(2, max_turns=2), ("fear",), 1)].count("fear")
    2
    """
    seen = dict.fromkeys(EMOTIONS, 0)
    chosen = []
    for record in evaluation:
        seen[record.emotion] += 1
        if record.emotion in eval_emotions or seen[record.emotion] <= cross_sample:
            chosen.append(record)
    return chosen


def _dose_mode(strength: float) -> str:
    return "zero" if strength == 0 else "scale" if strength < 1 else "amplify"


def grid(design: Design) -> list[Condition]:
    """Baseline; each emotion masked (all layers, all its neurons) with its controls (random
    ones evaluated on every emotion, the others on the masked emotion); the dose-response
    conditions (strength and proportion, each beside a random control, on the masked emotion);
    then the sweep: each emotion x layer range x proportion."""
    conditions = [Condition("baseline")]
    # Dose-response controls use one seed: the curves are many points, each its own test.
    first_seeds = design.control_seeds[:1]
    masks = {e: Condition("mask", e, mode=design.mode, strength=design.strength,
                          tokens=design.tokens) for e in EMOTIONS}
    for emotion, mask in masks.items():
        conditions.append(mask)
        for control in design.controls:
            evaluated = EMOTIONS if control == "random" else (emotion,)
            seeds: Sequence[int | None] = (
                design.control_seeds if control == "random" else (None,) if control == "least"
                else design.control_seeds[:design.other_control_seeds])
            conditions += [replace(mask, kind="control", control=control, seed=seed,
                                   eval_emotions=evaluated) for seed in seeds]
    for emotion, mask in masks.items():
        own = replace(mask, eval_emotions=(emotion,))
        for strength in design.dose_strengths:
            if strength == 1 or (_dose_mode(strength), strength) == (mask.mode, mask.strength):
                continue  # the baseline, or the main mask itself
            dose = replace(own, mode=_dose_mode(strength), strength=strength)
            conditions += [dose, *(replace(dose, kind="control", control="random", seed=seed)
                                   for seed in first_seeds)]
        conditions += [replace(own, kind="control", control="random", seed=seed,
                               proportion=proportion) for seed in first_seeds
                       for proportion in design.proportions if proportion != 1.0]
    for emotion, mask in masks.items():
        evaluated = (emotion,) if design.sweep_eval == "self" else EMOTIONS
        conditions += [replace(mask, layer_range=layer_range, proportion=proportion,
                               eval_emotions=evaluated)
                       for layer_range in LAYER_RANGES for proportion in design.proportions
                       if (layer_range, proportion) != ("all", 1.0)]
    return conditions


def is_sweep(condition: Condition) -> bool:
    return condition.kind == "mask" and (condition.layer_range, condition.proportion) != (
        "all", 1.0)


@dataclass(frozen=True)
class Sources:
    """What control sets and mean-mode values are drawn from: the identification statistics
    and, for the shuffled-label control, its layer-matched sets per seed."""

    stats: ActivationStats
    shuffled: Mapping[int, ShuffledControl] = field(default_factory=dict)


def _top(neurons: Sequence[Neuron], n_layers: int, layer_range: str,
         proportion: float) -> dict[int, list[int]]:
    ranked = [n for n in neurons if in_range(n.layer, n_layers, layer_range)]
    # Rounded first: 0.55 * 100 is 55.000000000000007 in floating point, not 55.
    chosen = ranked[:math.ceil(round(proportion * len(ranked), 9))]
    by_layer: dict[int, list[int]] = {}
    for neuron in chosen:
        by_layer.setdefault(neuron.layer, []).append(neuron.index)
    return by_layer


def ablation_for(condition: Condition, sets: NeuronSets, sources: Sources) -> Ablation:
    """The neurons a condition changes, and how: the emotion's top-ranked share within the
    layer range, or a control set matched to it layer by layer (see
    :mod:`emoneuron.selection.controls`)."""
    if condition.kind == "baseline":
        return Ablation.of({})
    emotion = condition.masked_emotion
    by_layer = _top(sets.emotions[emotion], sets.n_layers, condition.layer_range,
                    condition.proportion)
    if condition.kind == "control":
        rng = np.random.default_rng([condition.seed or 0, EMOTIONS.index(emotion)])
        if condition.control == "random":
            by_layer = random_matched(by_layer, sets, emotion, rng)
        elif condition.control == "frequency":
            by_layer = frequency_matched(by_layer, sets, emotion, sources.stats, rng)
        elif condition.control == "least":
            by_layer = least_selective(by_layer, sets, emotion, sources.stats)
        elif condition.control == "shuffled":
            by_layer = sources.shuffled[condition.seed or 0].matched(by_layer, emotion)
        else:
            raise UserError(f"unknown control set {condition.control!r}: use one of "
                            f"{', '.join(CONTROLS)}")
    ablation = Ablation.of(by_layer, "zero" if condition.mode == "mean" else condition.mode,
                           condition.strength, sets.site, condition.tokens)
    return with_means(ablation, sources.stats) if condition.mode == "mean" else ablation


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

    @staticmethod
    def entries(path: Path) -> dict[str, dict[str, Any]]:
        """The finished conditions stored in ``path`` by key, whatever their context; a torn
        final line (a killed run's) is left out, that condition reruns."""
        with path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        done = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                done[entry["key"]] = entry
            except json.JSONDecodeError:
                if number == last:
                    continue
                raise UserError(f"{path}:{number}: corrupted condition record; delete the "
                                "file and rerun the same command to recompute its conditions"
                                ) from None
            except (KeyError, TypeError):
                raise UserError(f"{path}:{number}: not a condition record; delete the file and "
                                "rerun the same command to recompute its conditions") from None
        return done

    def _read(self) -> None:
        self.done = self.entries(self.path)
        if any(entry.get("context") != self.context for entry in self.done.values()):
            raise UserError(f"{self.path}: written for different evaluation data, neurons, "
                            "model or prompt; delete it and rerun the same command to "
                            "recompute its conditions")
        self._rewrite_clean()

    def _rewrite_clean(self) -> None:
        with atomic_open(self.path) as handle:
            for entry in self.done.values():
                handle.write(json.dumps(entry) + "\n")

    def add(self, condition: Condition, intervention: Intervention,
            predicted: np.ndarray) -> None:
        """Store a finished condition: its predictions and the size of what it changed
        (neurons, or directions), in all (``n_masked``) and per layer (``layer_counts``)."""
        entry = {"key": condition.key, "context": self.context, **asdict(condition),
                 "n_masked": intervention.size,
                 "layer_counts": {str(layer): n
                                  for layer, n in intervention.layer_counts().items()},
                 "predictions": predicted.tolist()}
        with naming(self.path), self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[condition.key] = entry


@dataclass(frozen=True)
class EvaluationSetup:
    """How a worker builds what :func:`execute` evaluates with: the model, the classifier's
    settings (its prompt style already resolved) and the evaluation dialogues. Picklable."""

    model: ModelSpec
    shots: tuple[Record, ...]
    batch_size: int
    calibrate: bool
    style: str
    evaluation: tuple[Record, ...]
    answer_format: str = "label"
    seed: int = 0

    @classmethod
    def of(cls, classifier: Classifier, model: ModelSpec,
           evaluation: Sequence[Record]) -> EvaluationSetup:
        return cls(model, tuple(classifier.shots), classifier.batch_size, classifier.calibrate,
                   classifier.style, tuple(evaluation), classifier.answer_format,
                   classifier.seed)

    def __call__(self) -> tuple[Classifier, Sequence[Record]]:
        classifier = Classifier(self.model.load(), list(self.shots), self.batch_size,
                                self.calibrate, self.style, self.answer_format, self.seed)
        return classifier, self.evaluation


def _evaluate(state: tuple[Classifier, Sequence[Record]],
              item: tuple[tuple[tuple[str, ...], int], Intervention]) -> np.ndarray:
    """One condition's predictions: ``item`` is ((the emotions it is evaluated on, its cross
    sample), its intervention: neurons or directions)."""
    classifier, evaluation = state
    (eval_emotions, cross_sample), ablation = item
    subset = evaluated(evaluation, eval_emotions, cross_sample)
    with intervened(classifier.loaded, ablation) as scope:
        scores = classifier.predict(subset, unchanged_below=ablation.first_layer, scope=scope)
    if not np.isfinite(scores).all():
        # argmax of NaN scores is a valid-looking label: every table would be meaningless.
        if not ablation.size:
            raise UserError("the unchanged model's scores are not finite (NaN or infinite); "
                            "check the model's weights")
        what = (f"mode {ablation.mode}, strength {ablation.strength:g} on {ablation.size} "
                f"neurons at {ablation.site}" if isinstance(ablation, Ablation)
                else f"{ablation.kind} at {ablation.size} residual layers")
        raise UserError(f"the model's scores are not finite (NaN or infinite) with {what}, "
                        f"evaluated on {', '.join(eval_emotions)}; use a smaller --strength "
                        "in a new --out directory")
    predicted: np.ndarray = scores.argmax(axis=1)
    return predicted


def execute(classifier: Classifier, sets: NeuronSets, sources: Sources,
            evaluation: Sequence[Record], conditions: Iterable[Condition], store: ConditionStore,
            progress: bool = True, executor: Executor | None = None,
            setup: EvaluationSetup | None = None) -> None:
    """Evaluate every condition not yet in ``store``: here with ``classifier``, or on the
    workers of ``executor``, which build their own from ``setup``. Each finished condition is
    stored as it is delivered, in grid order, so a run resumes from any executor's store."""
    execute_interventions(classifier, lambda c: ablation_for(c, sets, sources), evaluation,
                          conditions, store, progress, executor, setup)


def execute_interventions(classifier: Classifier,
                          intervention_for: Callable[[Condition], Intervention],
                          evaluation: Sequence[Record], conditions: Iterable[Condition],
                          store: ConditionStore, progress: bool = True,
                          executor: Executor | None = None,
                          setup: EvaluationSetup | None = None) -> None:
    """:func:`execute` with each condition's intervention from ``intervention_for``: neurons,
    or directions of the residual stream (:mod:`emoneuron.causal.dirtest`)."""
    # Once each: cells may share a condition (a direction is one cell's unit under each null).
    todo = list({c.key: c for c in conditions if c.key not in store.done}.values())
    # Interventions are small specs, built here: workers need neither the sets nor the
    # statistics the controls are drawn from.
    items = [((c.eval_emotions, c.cross_sample), intervention_for(c)) for c in todo]

    def deliver(index: int, predicted: np.ndarray) -> None:
        store.add(todo[index], items[index][1], predicted)

    try:
        (executor or LocalExecutor()).map(_evaluate, items, deliver, setup,
                                          state=(classifier, evaluation), progress=progress,
                                          desc="conditions")
    finally:
        # What the conditions reused (lower layers' inputs, the last scope's positions) is
        # for these dialogues only: the classifier's next predictions need none of it.
        classifier.forget_reused()


def layer_counts(entry: Mapping[str, Any]) -> dict[int, int] | None:
    """Neurons per layer of a stored condition's set; None for entries stored before
    ``conditions.jsonl`` recorded them."""
    counts = entry.get("layer_counts")
    return None if counts is None else {int(layer): int(n) for layer, n in counts.items()}


def correctness(entry: dict[str, Any], evaluation: Sequence[Record]) -> pd.DataFrame:
    """Per-dialogue rows (record, eval_emotion, correct) of one stored condition, in evaluation
    order."""
    subset = evaluated(evaluation, entry["eval_emotions"], entry.get("cross_sample", 0))
    truth = np.array([EMOTIONS.index(r.emotion) for r in subset])
    return pd.DataFrame({"record": [r.id for r in subset],
                         "eval_emotion": [r.emotion for r in subset],
                         "correct": (np.array(entry["predictions"]) == truth).astype(float)})
