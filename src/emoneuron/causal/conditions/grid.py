"""The condition grid: the baseline, each emotion's set masked, its controls, the dose-response
conditions and the sweep (layer range x proportion), and the dialogues each condition is
evaluated on. Importable without torch: reports and tests name conditions without a model."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from emoneuron.causal.config import LAYER_RANGES, Design
from emoneuron.data.schema import EMOTIONS, Record


@dataclass(frozen=True)
class Condition:
    kind: str  # baseline | mask | control
    masked_emotion: str = ""
    layer_range: str = "all"
    proportion: float = 1.0
    seed: int | None = None
    eval_emotions: tuple[str, ...] = EMOTIONS
    control: str = ""  # kind control: one of selection.config.Control
    mode: str = "zero"
    strength: float = 0.0
    tokens: str = "all"
    # The selection method whose sets are masked (emoneuron.causal.experiments.method_comparison);
    # "" = the run's own sets.
    method: str = ""
    # Besides every dialogue of eval_emotions, the first N of each other emotion (the cross
    # sample of emoneuron.causal.inference.setlevel).
    cross_sample: int = 0
    # Another answer format than the run's ("" = the run's): the classifier evaluating the
    # condition asks in that format (emoneuron.causal.inference.setlevel's format test).
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
