"""Baseline accuracy of the classifier under each evaluation variant: zero- or k-shot, plain
or chat prompt, with or without contextual calibration, on one fixed held-out split.

Every variant scores the same evaluation dialogues, so their accuracies are directly comparable;
the few-shot examples come from a separate split of ``max(shots)`` dialogues per emotion.

:func:`choose_prompt` is what ``emoneuron run --prompt-choice best`` uses: of the prompt styles
(plain, and chat where the tokenizer has a template) with and without calibration, the one whose
*worst* emotion's accuracy is highest (ties: higher mean, then the order auto style first,
calibrated first), measured on up to ``per_emotion`` identification dialogues per emotion, never
on the evaluation split. A drop can only be seen on an emotion the model recognises to begin
with. Calibration subtracts the content-free dialogue's scores, so each style costs one pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.classifier import (
    Classifier,
    has_chat_template,
    order_shots,
    resolved_style,
)
from emoneuron.causal.config import VariantsConfig as VariantsConfig
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.split import split
from emoneuron.models.loading import LoadedModel


def prompt_variants(loaded: LoadedModel, records: Sequence[Record], config: VariantsConfig,
                    source: str = "data") -> pd.DataFrame:
    """One row per (answer format, shots, prompt, calibrated): accuracy per emotion and their
    mean."""
    splits = split(list(records), config.eval_fraction, config.seed, max(config.shots),
                   source=source)
    evaluation = splits.evaluate
    rows = []
    for prompt in config.prompts:
        if prompt == "chat" and not has_chat_template(loaded.tokenizer):
            print(f"{loaded.name}: no chat template, chat prompt skipped")
            continue
        for answers, shots in product(config.answer_formats, config.shots):
            classifier = Classifier(loaded, order_shots(splits.fewshot, config.seed, shots),
                                    config.batch_size, calibrate=False, style=prompt,
                                    answer_format=answers, seed=config.seed)
            for calibrated, per_emotion in calibration_variants(classifier, evaluation,
                                                                progress=True).items():
                rows.append({"model": loaded.name, "answer_format": answers,
                             "shots_per_emotion": shots, "prompt": prompt,
                             "calibrated": calibrated, "n": len(evaluation), **per_emotion,
                             "mean": float(np.mean(list(per_emotion.values())))})
    return pd.DataFrame(rows)


def calibration_variants(classifier: Classifier, records: Sequence[Record],
                         progress: bool = False) -> dict[bool, dict[str, float]]:
    """Accuracy per emotion without (False) and with (True) contextual calibration, from one
    pass over ``records`` and the content-free queries."""
    truth = np.array([EMOTIONS.index(r.emotion) for r in records])
    accuracies = {}
    for calibrated, table in classifier.predict_calibrated_and_not(records, progress).items():
        correct = table.argmax(axis=1) == truth
        accuracies[calibrated] = {e: float(correct[truth == k].mean())
                                  for k, e in enumerate(EMOTIONS)}
    return accuracies


PROMPT_CHOICE_PER_EMOTION = 20


@dataclass(frozen=True)
class PromptChoice:
    style: str
    calibrate: bool
    per_emotion: int  # identification dialogues per emotion scored (at most)
    variants: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"rule": "highest worst-emotion accuracy on the identification split",
                "style": self.style, "calibrate": self.calibrate,
                "per_emotion": self.per_emotion, "variants": self.variants}


def choose_prompt(loaded: LoadedModel, shots: Sequence[Record],
                  identification: Sequence[Record], batch_size: int = 16,
                  per_emotion: int = PROMPT_CHOICE_PER_EMOTION, answer_format: str = "label",
                  seed: int = 0) -> PromptChoice:
    """The prompt style and calibration that maximise the worst emotion's accuracy on the
    first ``per_emotion`` identification dialogues of each emotion (see the module doc)."""
    subset = [r for e in EMOTIONS for r in [r for r in identification
                                            if r.emotion == e][:per_emotion]]
    first = resolved_style(loaded, "auto")
    styles = [first, *(s for s in ("plain", "chat") if s != first
                       and (s == "plain" or has_chat_template(loaded.tokenizer)))]
    variants: list[dict[str, Any]] = []
    for style in styles:
        classifier = Classifier(loaded, list(shots), batch_size, calibrate=False, style=style,
                                answer_format=answer_format, seed=seed)
        fitted, _ = classifier.fit(subset)
        accuracies = calibration_variants(classifier, fitted)
        for calibrate in (True, False):
            per = accuracies[calibrate]
            worst = min(per, key=per.__getitem__)
            variants.append({"style": style, "calibrate": calibrate, "worst": per[worst],
                             "worst_emotion": worst, "mean": float(np.mean(list(per.values())))})
    best = max(variants, key=lambda v: (v["worst"], v["mean"]))
    return PromptChoice(best["style"], best["calibrate"], per_emotion, variants)
