"""Baseline accuracy of the classifier under each evaluation variant: zero- or k-shot, plain
or chat prompt, with or without contextual calibration, on one fixed held-out split.

Every variant scores the same evaluation dialogues, so their accuracies are directly comparable;
the few-shot examples come from a separate split of ``max(shots)`` dialogues per emotion.

:func:`choose_prompt` is what ``emoneuron run --prompt-choice best`` uses: of the prompt styles
(plain, and chat where the tokenizer's chat template works) with and without calibration, the
one whose *worst* emotion's accuracy is highest (ties: higher mean, then the order auto style
first, calibrated first), measured on up to ``per_emotion`` identification dialogues per
emotion, never on the evaluation split. A drop can only be seen on an emotion the model
recognises to begin with. Calibration subtracts the content-free dialogue's scores, so each
style costs one pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.config import VariantsConfig as VariantsConfig
from emoneuron.causal.evaluation.classifier import (
    Classifier,
    PromptModel,
    chat_works,
    has_chat_template,
    order_shots,
    prompt_parts,
    resolved_style,
)
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.split import split
from emoneuron.models.loading import LoadedModel, load, load_tokenizer


@dataclass(frozen=True)
class Variant:
    """One prompt ``emoneuron evaluate`` compares (calibrated and not)."""

    style: str
    answer_format: str
    shots_per_emotion: int
    shots: list[Record]


def _variants(model: PromptModel, records: Sequence[Record], config: VariantsConfig,
              source: str) -> tuple[list[Record], list[Variant]]:
    """The evaluation split and every variant of ``config``: a chat prompt where the tokenizer
    can build one (:func:`chat_works`)."""
    splits = split(list(records), config.eval_fraction, config.seed, max(config.shots),
                   source=source)
    styles = [p for p in config.prompts if p != "chat" or chat_works(model.tokenizer)]
    return splits.evaluate, [
        Variant(style, answers, shots, order_shots(splits.fewshot, config.seed, shots))
        for style in styles for answers, shots in product(config.answer_formats, config.shots)]


def evaluate_prompts(model: str, device: str, records: Sequence[Record],
                     config: VariantsConfig, source: str = "data") -> pd.DataFrame:
    """:func:`prompt_variants` of the model called ``model``, each variant's prompt built from
    its tokenizer (and refused where it cannot work) before the weights load."""
    tokenizer = load_tokenizer(model)
    for variant in _variants(tokenizer, records, config, source)[1]:
        prompt_parts(tokenizer, variant.shots, variant.style, variant.answer_format,
                     config.seed, option="--answer-formats")
    return prompt_variants(load(model, device=device, tokenizer=tokenizer), records, config,
                           source)


def prompt_variants(loaded: LoadedModel, records: Sequence[Record], config: VariantsConfig,
                    source: str = "data") -> pd.DataFrame:
    """One row per (answer format, shots, prompt, calibrated): accuracy per emotion and their
    mean."""
    evaluation, variants = _variants(loaded, records, config, source)
    if "chat" in config.prompts and not chat_works(loaded.tokenizer):
        reason = ("its chat template does not extend a conversation by appending"
                  if has_chat_template(loaded.tokenizer) else "no chat template")
        print(f"{loaded.name}: {reason}, chat prompt skipped")
    rows = []
    for variant in variants:
        classifier = Classifier(loaded, variant.shots, config.batch_size, calibrate=False,
                                style=variant.style, answer_format=variant.answer_format,
                                seed=config.seed)
        for calibrated, per_emotion in calibration_variants(classifier, evaluation,
                                                            progress=True).items():
            rows.append({"model": loaded.name, "answer_format": variant.answer_format,
                         "shots_per_emotion": variant.shots_per_emotion,
                         "prompt": variant.style, "calibrated": calibrated,
                         "n": len(evaluation), **per_emotion,
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
    variants: list[dict[str, Any]] = []
    for style in best_styles(loaded):
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


def best_styles(model: PromptModel) -> list[str]:
    """The prompt styles :func:`choose_prompt` compares: the one ``auto`` stands for first,
    then plain, and chat where the tokenizer can build a chat prompt (:func:`chat_works`)."""
    styles = dict.fromkeys((resolved_style(model, "auto"), "plain", "chat"))
    return [style for style in styles if style == "plain" or chat_works(model.tokenizer)]


def check_prompts(model: PromptModel, shots: Sequence[Record], prompt_choice: str,
                  style: str, formats: Mapping[str, str], seed: int = 0) -> None:
    """Build every prompt a run asks in from the tokenizer alone (:func:`prompt_parts`), so
    one that cannot work is refused before the weights load: the ``style`` given with
    ``prompt_choice`` fixed, else each of :func:`best_styles`; with each answer format of
    ``formats`` (format name -> the option that asks for it)."""
    styles = [style] if prompt_choice == "fixed" else best_styles(model)
    for each_style in styles:
        for name, option in formats.items():
            prompt_parts(model, shots, each_style, name, seed, option)
