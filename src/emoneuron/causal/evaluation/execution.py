"""The conditions' executor: the neurons each condition changes (:func:`ablation_for`, the
emotion's top-ranked share or a control set matched to it) and the evaluation of every
condition not yet in the store, here or on an executor's workers."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from emoneuron.causal.conditions.grid import Condition, evaluated
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import in_range
from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.evaluation.intervene import Ablation, with_means
from emoneuron.causal.evaluation.residual import Intervention, intervened
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.executors import Executor, LocalExecutor
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
    or directions of the residual stream (:mod:`emoneuron.causal.experiments.dirtest`)."""
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
