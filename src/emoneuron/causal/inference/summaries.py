"""The rows that sum up the causal tables, importable without torch so that reports (which
only read the tables) can name them: ``methods.csv``'s mean row and the baseline table's
overall, balanced and corpus-weighted accuracies."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.inference.significance import wilson_interval

MEAN_ROW = "mean"  # methods.csv: a method's row over the six emotions (masked_emotion)
OVERALL = "overall"  # every evaluated record alike, so in the sampled (rebalanced) proportions
BALANCED = "balanced"  # the mean of the per-emotion accuracies
CORPUS_WEIGHTED = "corpus-weighted"  # per-emotion accuracies weighted by the real counts


def summary_rows(six: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows that sum up a baseline table's six emotion rows (columns n, correct, accuracy
    and, for a corpus, its real counts ``available``): overall (every evaluated record alike,
    with its Wilson interval), balanced (the mean over the emotions evaluated) and, where the
    real counts are known, corpus-weighted, each with the totals of the emotions evaluated."""
    evaluated = six[six["n"] > 0]
    n, correct = int(evaluated["n"].sum()), int(evaluated["correct"].sum())
    overall = wilson_interval(np.repeat([1.0, 0.0], [correct, n - correct]))
    totals: dict[str, Any] = {"n": n, "correct": correct}
    rows = [{"emotion": OVERALL, **totals, "accuracy": overall.estimate, "ci_low": overall.low,
             "ci_high": overall.high},
            {"emotion": BALANCED, **totals, "accuracy": float(evaluated["accuracy"].mean()),
             "ci_low": np.nan, "ci_high": np.nan}]
    if "available" in evaluated:
        available = evaluated["available"]
        weights = available / available.sum() if len(evaluated) else available
        rows.append({"emotion": CORPUS_WEIGHTED, **totals,
                     "accuracy": float((evaluated["accuracy"] * weights).sum()),
                     "ci_low": np.nan, "ci_high": np.nan})
        rows = [{**row, "available": int(available.sum())} for row in rows]
    return rows
