"""The result tables a person opens (``ablation.csv``, ``effects.csv``, ``sweep.csv``), built from
the per-dialogue predictions in the condition store, with paired bootstrap intervals."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.stats import mean_interval
from emoneuron.sweep import Condition, ConditionStore, correctness


def _correct(store: ConditionStore, condition: Condition,
             evaluation: Sequence[Record]) -> pd.DataFrame:
    return correctness(store.done[condition.key], evaluation)


def _seed_for(*parts: object) -> int:
    # Stable across processes (unlike hash()), so tables are byte-identical on re-runs.
    return zlib.crc32(repr(parts).encode())


def ablation_tables(store: ConditionStore, evaluation: Sequence[Record],
                    control_seeds: Sequence[int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``ablation.csv`` (one row per condition x eval emotion) and ``effects.csv`` (masked vs
    control per masked x eval emotion, with the paired excess drop)."""
    baseline = _correct(store, Condition("baseline"), evaluation)
    rows: list[dict[str, Any]] = []
    effects: list[dict[str, Any]] = []

    def add_row(kind: str, masked: str, seed: int | None, frame: pd.DataFrame) -> None:
        for eval_emotion in EMOTIONS:
            own = frame.correct[frame.eval_emotion == eval_emotion].to_numpy()
            base = baseline.correct[baseline.eval_emotion == eval_emotion].to_numpy()
            accuracy = mean_interval(own, seed=_seed_for(kind, masked, seed, eval_emotion))
            drop = mean_interval(base - own, seed=_seed_for("drop", kind, masked, seed,
                                                            eval_emotion))
            rows.append({"condition": kind, "masked_emotion": masked,
                         "seed": "" if seed is None else seed, "eval_emotion": eval_emotion,
                         "n": len(own), "accuracy": accuracy.estimate,
                         "ci_low": accuracy.low, "ci_high": accuracy.high,
                         "drop": drop.estimate, "drop_ci_low": drop.low,
                         "drop_ci_high": drop.high})

    add_row("baseline", "", None, baseline)
    for masked in EMOTIONS:
        mask = _correct(store, Condition("mask", masked), evaluation)
        add_row("mask", masked, None, mask)
        controls = []
        for seed in control_seeds:
            control = _correct(store, Condition("control", masked, seed=seed), evaluation)
            add_row("control", masked, seed, control)
            controls.append(control.correct.to_numpy())
        control_mean = np.mean(controls, axis=0)
        for eval_emotion in EMOTIONS:
            select = (baseline.eval_emotion == eval_emotion).to_numpy()
            base = baseline.correct.to_numpy()[select]
            masked_correct = mask.correct.to_numpy()[select]
            excess = mean_interval(control_mean[select] - masked_correct,
                                   seed=_seed_for("excess", masked, eval_emotion))
            effects.append({
                "masked_emotion": masked, "eval_emotion": eval_emotion, "n": int(select.sum()),
                "baseline": base.mean(), "masked": masked_correct.mean(),
                "control": control_mean[select].mean(),
                "mask_drop": base.mean() - masked_correct.mean(),
                "control_drop": base.mean() - control_mean[select].mean(),
                "excess_drop": excess.estimate, "excess_ci_low": excess.low,
                "excess_ci_high": excess.high, "p_value": excess.p_value})
    return pd.DataFrame(rows), pd.DataFrame(effects)


def sweep_table(store: ConditionStore, evaluation: Sequence[Record],
                conditions: Sequence[Condition]) -> pd.DataFrame:
    """``sweep.csv``: accuracy per masked emotion x layer range x proportion x eval emotion."""
    baseline = _correct(store, Condition("baseline"), evaluation)
    base_accuracy = baseline.groupby("eval_emotion").correct.mean()
    sweep_eval = {c.masked_emotion: c.eval_emotions for c in conditions
                  if c.kind == "mask" and (c.layer_range, c.proportion) != ("all", 1.0)}
    rows = []
    for condition in conditions:
        if condition.kind != "mask":
            continue
        entry = store.done[condition.key]
        frame = correctness(entry, evaluation)
        for eval_emotion in sweep_eval.get(condition.masked_emotion, EMOTIONS):
            correct = frame.correct[frame.eval_emotion == eval_emotion]
            rows.append({"masked_emotion": condition.masked_emotion,
                         "layer_range": condition.layer_range,
                         "proportion": condition.proportion, "n_masked": entry["n_masked"],
                         "eval_emotion": eval_emotion, "n": len(correct),
                         "accuracy": correct.mean(),
                         "drop": base_accuracy[eval_emotion] - correct.mean()})
    return pd.DataFrame(rows)
