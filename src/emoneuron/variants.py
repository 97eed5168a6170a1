"""Baseline accuracy of the classifier under each evaluation variant: zero- or k-shot, plain
or chat prompt, with or without contextual calibration, on one fixed held-out split.

Every variant scores the same evaluation dialogues, so their accuracies are directly comparable;
the few-shot examples come from a separate split of ``max(shots)`` dialogues per emotion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.split import split
from emoneuron.errors import UserError
from emoneuron.evaluate import CONTENT_FREE, Classifier, order_shots
from emoneuron.models.loading import LoadedModel


@dataclass
class VariantsConfig:
    shots: tuple[int, ...] = (0, 1)  # examples per emotion
    prompts: tuple[str, ...] = ("plain", "chat")
    eval_fraction: float = 0.5
    seed: int = 0
    batch_size: int = 16


def prompt_variants(loaded: LoadedModel, records: Sequence[Record], config: VariantsConfig,
                    source: str = "data") -> pd.DataFrame:
    """One row per (shots, prompt, calibrated): accuracy per emotion and their mean."""
    if not config.shots or min(config.shots) < 0:
        raise UserError(f"shots {config.shots}: give one or more counts of examples per emotion "
                        "(0 for zero-shot)")
    splits = split(list(records), config.eval_fraction, config.seed, max(config.shots),
                   source=source)
    evaluation = splits.evaluate
    truth = np.array([EMOTIONS.index(r.emotion) for r in evaluation])
    rows = []
    for prompt in config.prompts:
        if prompt == "chat" and not getattr(loaded.tokenizer, "chat_template", None):
            print(f"{loaded.name}: no chat template, chat prompt skipped")
            continue
        for shots in config.shots:
            classifier = Classifier(loaded, order_shots(splits.fewshot, config.seed, shots),
                                    config.batch_size, calibrate=False, style=prompt)
            scores = classifier.predict([*evaluation, CONTENT_FREE], progress=True)
            for calibrated, table in ((False, scores[:-1]), (True, scores[:-1] - scores[-1])):
                correct = table.argmax(axis=1) == truth
                per_emotion = {e: float(correct[truth == k].mean())
                               for k, e in enumerate(EMOTIONS)}
                rows.append({"model": loaded.name, "shots_per_emotion": shots, "prompt": prompt,
                             "calibrated": calibrated, "n": len(evaluation), **per_emotion,
                             "mean": float(np.mean(list(per_emotion.values())))})
    return pd.DataFrame(rows)
