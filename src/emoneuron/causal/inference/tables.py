"""The result tables a person opens (``ablation.csv``, ``effects.csv``, ``sweep.csv``), built from
the per-dialogue predictions in the condition store, with the intervals and tests of
:mod:`emoneuron.causal.inference.significance`: Wilson intervals for accuracies, Tango's paired
interval for a drop (or an excess drop over one control seed), the adjusted interval over several
seeds, the slot permutation test against the control seeds, and each self effect's minimum
detectable drop."""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any, get_args

import numpy as np
import pandas as pd

from emoneuron.causal.conditions.grid import Condition, evaluated, is_sweep
from emoneuron.causal.conditions.store import ConditionStore, correctness, stored_layer_counts
from emoneuron.causal.inference.significance import (
    N_BOOTSTRAP,
    Interval,
    adjusted_mean_interval,
    holm,
    mcnemar_exact,
    min_detectable_drop,
    near_chance,
    power_note,
    slot_permutation_test,
    tango_interval,
    wilson_interval,
)
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.selection.config import Control


def _correct(store: ConditionStore, condition: Condition,
             evaluation: Sequence[Record]) -> pd.DataFrame:
    return correctness(store.done[condition.key], evaluation)


def _seed_for(*parts: object) -> int:
    # Stable across processes (unlike hash()), so tables are byte-identical on re-runs.
    return zlib.crc32(repr(parts).encode())


def _main(conditions: Sequence[Condition], kind: str, masked: str,
          control: str = "") -> list[Condition]:
    """The all-layers, all-neurons conditions of one kind (not the dose or sweep ones)."""
    return [c for c in conditions if c.kind == kind and c.masked_emotion == masked
            and c.control == control and (c.layer_range, c.proportion) == ("all", 1.0)
            and not is_dose(c, conditions)]


def is_dose(condition: Condition, conditions: Sequence[Condition]) -> bool:
    """A dose-response condition: another strength than the main masks'."""
    main = next((c for c in conditions if c.kind == "mask"), None)
    return main is not None and condition.kind != "baseline" and (
        condition.mode, condition.strength) != (main.mode, main.strength)


def ablation_tables(store: ConditionStore, evaluation: Sequence[Record],
                    conditions: Sequence[Condition]) -> dict[str, pd.DataFrame]:
    """``ablation`` (one row per condition x eval emotion), ``effects`` (masked vs each
    control per masked x eval emotion, with paired intervals and tests), ``specificity`` and
    ``confusion`` tables."""
    baseline = _correct(store, Condition("baseline"), evaluation)
    near = _near_chance(baseline)
    rows: list[dict[str, Any]] = []
    effects: list[dict[str, Any]] = []

    def add_rows(condition: Condition, frame: pd.DataFrame) -> None:
        for eval_emotion in condition.eval_emotions:
            own = frame.correct[frame.eval_emotion == eval_emotion].to_numpy()
            base = baseline.correct[baseline.eval_emotion == eval_emotion].to_numpy()
            accuracy = wilson_interval(own)
            drop = tango_interval(base, own)
            rows.append({"condition": condition.kind,
                         "masked_emotion": condition.masked_emotion,
                         "seed": "" if condition.seed is None else condition.seed,
                         "eval_emotion": eval_emotion, "n": len(own),
                         "accuracy": accuracy.estimate, "ci_low": accuracy.low,
                         "ci_high": accuracy.high, "control_set": condition.control,
                         "drop": drop.estimate,
                         "drop_ci_low": drop.low, "drop_ci_high": drop.high,
                         "near_chance": near[eval_emotion]})

    add_rows(Condition("baseline"), baseline)
    controls = sorted({c.control for c in conditions if c.kind == "control"},
                      key=get_args(Control).index)  # the controls' registry order
    for masked in EMOTIONS:
        (mask_condition,) = _main(conditions, "mask", masked)
        mask = _correct(store, mask_condition, evaluation)
        add_rows(mask_condition, mask)
        for control in controls:
            runs = _main(conditions, "control", masked, control)
            frames = [_correct(store, c, evaluation) for c in runs]
            for condition, frame in zip(runs, frames, strict=True):
                add_rows(condition, frame)
            sizes = _sizes(store.done[mask_condition.key], [store.done[c.key] for c in runs])
            for eval_emotion in runs[0].eval_emotions:
                effects.append({**_effect(baseline, mask, frames, masked, control,
                                          eval_emotion), **sizes})
    effect_table = _with_holm(pd.DataFrame(effects))
    return {"ablation": pd.DataFrame(rows), "effects": effect_table,
            "specificity": _specificity(baseline, store, evaluation, conditions),
            "confusion": _confusion(store, evaluation, conditions)}


def _near_chance(baseline: pd.DataFrame) -> dict[str, bool]:
    """Per emotion: is its baseline accuracy too close to chance for a drop to show?"""
    return {emotion: near_chance(baseline.correct[baseline.eval_emotion == emotion].to_numpy())
            for emotion in EMOTIONS}


def _sizes(mask: dict[str, Any], controls: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The set's size, its controls' mean size, and whether every control seed has as many
    neurons as the set in every layer (NaN for entries stored without per-layer counts)."""
    own = stored_layer_counts(mask)
    theirs = [stored_layer_counts(c) for c in controls]
    matched = (math.nan if own is None or None in theirs
               else all(counts == own for counts in theirs))
    return {"n_masked": mask["n_masked"],
            "n_control": float(np.mean([c["n_masked"] for c in controls])),
            "control_layer_matched": matched}


def _excess_interval(control_mean: np.ndarray, masked: np.ndarray, seeds: int) -> Interval:
    # One seed: paired 0/1 outcomes, Tango's interval; several: the mean over seeds is no
    # longer 0/1, the adjusted interval takes any value in [-1, 1].
    if seeds == 1:
        return tango_interval(control_mean, masked)
    return adjusted_mean_interval(control_mean - masked)


def _effect(baseline: pd.DataFrame, mask: pd.DataFrame, controls: Sequence[pd.DataFrame],
            masked: str, control: str, eval_emotion: str) -> dict[str, Any]:
    select = (baseline.eval_emotion == eval_emotion).to_numpy()
    base = baseline.correct.to_numpy()[select]
    masked_correct = mask.correct.to_numpy()[mask.eval_emotion == eval_emotion]
    control_correct = np.array([c.correct.to_numpy()[c.eval_emotion == eval_emotion]
                                for c in controls])
    control_mean = control_correct.mean(axis=0)
    drop = tango_interval(base, masked_correct)
    excess = _excess_interval(control_mean, masked_correct, len(controls))
    return {
        "masked_emotion": masked, "eval_emotion": eval_emotion, "control_set": control,
        "n": int(select.sum()), "n_control_seeds": len(controls), "baseline": base.mean(),
        "masked": masked_correct.mean(), "control": control_mean.mean(),
        "mask_drop": drop.estimate, "mask_drop_ci_low": drop.low,
        "mask_drop_ci_high": drop.high,
        "control_drop": base.mean() - control_mean.mean(),
        "excess_drop": excess.estimate, "excess_ci_low": excess.low,
        "excess_ci_high": excess.high,
        "p_mcnemar_baseline": mcnemar_exact(base, masked_correct),
        "p_exact_control": slot_permutation_test(masked_correct, control_correct),
        # Masking *raised* accuracy beyond the paired interval of its drop.
        "improves": bool(drop.high < 0),
        **(_power(base) if masked == eval_emotion else {})}


def _power(base: np.ndarray) -> dict[str, Any]:
    """What a self effect could have shown: see
    :func:`emoneuron.causal.inference.significance.min_detectable_drop`."""
    smallest = min_detectable_drop(len(base), float(base.mean()))
    flagged = near_chance(base)
    return {"min_detectable_drop": smallest, "near_chance": flagged,
            "power_note": power_note(smallest, float(base.mean()), flagged)}


def _with_holm(effects: pd.DataFrame) -> pd.DataFrame:
    """Holm-corrected p-values for the six self effects of each control set (the tests a
    reader compares); cross-emotion rows stay uncorrected and are left empty."""
    effects = effects.copy()
    for column in ("p_mcnemar_baseline", "p_exact_control"):
        effects[column + "_holm"] = np.nan
        for _, rows in effects[effects.masked_emotion == effects.eval_emotion].groupby(
                "control_set"):
            effects.loc[rows.index, column + "_holm"] = holm(rows[column].tolist())
    return effects


def _specificity(baseline: pd.DataFrame, store: ConditionStore, evaluation: Sequence[Record],
                 conditions: Sequence[Condition]) -> pd.DataFrame:
    """Per masked emotion: its own drop minus the mean drop on the other emotions, with a
    bootstrap interval that resamples dialogues within each evaluation emotion. A bootstrap
    because the index combines six independent groups' paired drops, for which no closed-form
    score interval exists; it is a secondary summary, not a test."""
    rows = []
    truth = baseline.eval_emotion.to_numpy()
    for masked in EMOTIONS:
        (mask_condition,) = _main(conditions, "mask", masked)
        drops = baseline.correct.to_numpy() - _correct(store, mask_condition,
                                                       evaluation).correct.to_numpy()
        groups = [drops[truth == e] for e in EMOTIONS]
        rng = np.random.default_rng(_seed_for("specificity", masked))
        resampled = np.array([[g[rng.integers(0, len(g), len(g))].mean() for g in groups]
                              for _ in range(N_BOOTSTRAP)])
        own = EMOTIONS.index(masked)

        def index(means: np.ndarray, own: int = own) -> np.ndarray:
            return np.asarray(means[..., own] - np.delete(means, own, axis=-1).mean(axis=-1))

        point = np.array([g.mean() for g in groups])
        low, high = np.quantile(index(resampled), [0.025, 0.975])
        rows.append({"masked_emotion": masked, "own_drop": point[own],
                     "mean_cross_drop": np.delete(point, own).mean(),
                     "specificity": float(index(point)), "ci_low": low, "ci_high": high})
    return pd.DataFrame(rows)


def _confusion(store: ConditionStore, evaluation: Sequence[Record],
               conditions: Sequence[Condition]) -> pd.DataFrame:
    """True x predicted counts before (baseline) and after masking each emotion."""
    chosen = [Condition("baseline"), *(c for e in EMOTIONS for c in _main(conditions, "mask", e))]
    rows = []
    for condition in chosen:
        entry = store.done[condition.key]
        subset = [r.emotion for r in evaluated(evaluation, entry["eval_emotions"],
                                               entry.get("cross_sample", 0))]
        counts = pd.crosstab(pd.Categorical(subset, EMOTIONS),
                             pd.Categorical([EMOTIONS[p] for p in entry["predictions"]],
                                            EMOTIONS), dropna=False)
        for true in EMOTIONS:
            for predicted in EMOTIONS:
                rows.append({"condition": condition.kind,
                             "masked_emotion": condition.masked_emotion,
                             "true_emotion": true, "predicted_emotion": predicted,
                             "count": int(counts.loc[true, predicted])})
    return pd.DataFrame(rows)


def dose_table(store: ConditionStore, evaluation: Sequence[Record],
               conditions: Sequence[Condition]) -> pd.DataFrame:
    """``dose.csv``: own-emotion accuracy of each emotion's set and of its random control
    against the strength applied (1 = untouched) and against the share of its neurons removed
    (0 = none), for the curves of the dose-response figure."""
    baseline = _correct(store, Condition("baseline"), evaluation)
    main = next(c for c in conditions if c.kind == "mask")
    first_seed = next((c.seed for c in conditions if c.control == "random"), None)
    rows = []
    for condition in conditions:
        if condition.kind == "baseline" or condition.layer_range != "all":
            continue
        if condition.control not in ("", "random"):
            continue
        if condition.kind == "control" and condition.seed != first_seed:
            continue
        frame = correctness(store.done[condition.key], evaluation)
        own = frame.correct[frame.eval_emotion == condition.masked_emotion].to_numpy()
        variables = []
        if condition.proportion == 1.0 and condition.mode in ("zero", "scale", "amplify"):
            variables.append(("strength", 0.0 if condition.mode == "zero"
                              else condition.strength))
        if (condition.mode, condition.strength) == (main.mode, main.strength):
            variables.append(("proportion", condition.proportion))
        for variable, value in variables:
            interval = wilson_interval(own)
            rows.append({"masked_emotion": condition.masked_emotion, "variable": variable,
                         "value": value, "condition": condition.kind, "n": len(own),
                         "accuracy": interval.estimate, "ci_low": interval.low,
                         "ci_high": interval.high})
    for emotion in EMOTIONS:
        own = baseline.correct[baseline.eval_emotion == emotion].to_numpy()
        interval = wilson_interval(own)
        for variable, value in (("strength", 1.0), ("proportion", 0.0)):
            for kind in ("mask", "control"):
                rows.append({"masked_emotion": emotion, "variable": variable, "value": value,
                             "condition": kind, "n": len(own), "accuracy": interval.estimate,
                             "ci_low": interval.low, "ci_high": interval.high})
    table = pd.DataFrame(rows).drop_duplicates(["masked_emotion", "variable", "value",
                                                "condition"])
    return table.sort_values(["masked_emotion", "variable", "condition", "value"],
                             ignore_index=True)


def sweep_table(store: ConditionStore, evaluation: Sequence[Record],
                conditions: Sequence[Condition]) -> pd.DataFrame:
    """``sweep.csv``: accuracy per masked emotion x layer range x proportion x eval emotion."""
    baseline = _correct(store, Condition("baseline"), evaluation)
    base_accuracy = baseline.groupby("eval_emotion").correct.mean()
    near = _near_chance(baseline)
    sweep_eval = {c.masked_emotion: c.eval_emotions for c in conditions if is_sweep(c)}
    rows = []
    for condition in conditions:
        if condition.kind != "mask" or is_dose(condition, conditions):
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
                         "drop": base_accuracy[eval_emotion] - correct.mean(),
                         "near_chance": near[eval_emotion]})
    return pd.DataFrame(rows)
