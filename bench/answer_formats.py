"""Baseline accuracy and cost of each answer format on the embedded SmolLM2-135M.

    .venv/bin/python bench/answer_formats.py [--per-emotion 10] [--out answer_formats.csv]

Evaluation: ``synthesize(per_emotion, seed=7, max_turns=2)``; the few-shot examples (one per
emotion, plain prompt) are each emotion's next synthetic dialogue of the same seed, so none is
evaluated. Each format's classifier scores every dialogue once, calibrated and raw from the same
pass (the content-free queries included), after one warm-up call; the time per dialogue is that
pass's wall time over the dialogues.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from emoneuron.causal.config import AnswerFormatName
from emoneuron.causal.evaluation.classifier import Classifier, order_shots
from emoneuron.data.schema import EMOTIONS
from emoneuron.data.synth import synthesize
from emoneuron.models.loading import load

FORMATS: tuple[AnswerFormatName, ...] = ("label", "letters", "yesno")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-emotion", type=int, default=10)
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    pool = synthesize(args.per_emotion + 1, seed=7, max_turns=2)
    evaluation = synthesize(args.per_emotion, seed=7, max_turns=2)
    evaluated = {r.id for r in evaluation}
    shots = order_shots([r for r in pool if r.id not in evaluated], seed=7)
    loaded = load("smollm2-135m")
    truth = np.array([EMOTIONS.index(r.emotion) for r in evaluation])
    rows = []
    for answers in FORMATS:
        classifier = Classifier(loaded, shots, 16, style="plain", answer_format=answers, seed=7)
        classifier.predict(evaluation[:2])  # warm-up
        start = time.perf_counter()
        scores = classifier.predict_calibrated_and_not(evaluation)
        seconds = time.perf_counter() - start
        for calibrated, table in scores.items():
            correct = table.argmax(axis=1) == truth
            rows.append({"answer_format": answers, "calibrated": calibrated,
                         "n": len(evaluation), "accuracy": float(correct.mean()),
                         **{e: float(correct[truth == k].mean()) for k, e in enumerate(EMOTIONS)},
                         "seconds_per_dialogue": seconds / len(evaluation)})
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.3f}"))
    if args.out:
        table.to_csv(args.out, index=False, float_format="%.4f")


if __name__ == "__main__":
    main()
