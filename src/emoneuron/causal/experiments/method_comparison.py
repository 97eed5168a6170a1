"""Selection methods compared by what their neurons cause, on one held-out split.

For each method (a :class:`~emoneuron.selection.identify.NeuronSets`: one neuron set per emotion)
and each emotion ``e``, three conditions enter: the baseline ``B``, ``e``'s set zeroed (``M_e``,
evaluated on all six emotions) and random layer-matched controls of ``e``'s set (``C_e``, the mean
over the control seeds, evaluated on ``e``). The **specific excess drop** is

    SED_e = (own drop) - (control's own drop) - (mean drop on the five other emotions)
          = mean_{d in e}(C_e - M_e) - 1/5 sum_{f != e} mean_{d in f}(B - M_e),

large only when removing the set hurts its own emotion more than random neurons do and more than
it hurts the others. Its 95% interval is a normal interval over per-dialogue paired differences,
stratified by evaluation emotion: SED is a sum of per-emotion means of per-dialogue terms, the
strata hold different dialogues, so its variance is the sum of each stratum's sample variance
over its size (:func:`emoneuron.causal.inference.significance.stratified_interval`). The mean over
the six emotions is again such a sum, with every dialogue's terms pooled, so its interval accounts
for the masks sharing dialogues.

``methods.csv`` holds one row per method and emotion and one (``masked_emotion`` = ``mean``)
per method, methods ranked by the mean; ``near_chance`` marks an emotion whose baseline cannot
show a drop (:func:`emoneuron.causal.inference.significance.near_chance`). ``emoneuron run
--compare-methods`` fills it for the registered methods
(:data:`emoneuron.selection.identify.SELECTION_METHODS`) from the run's own recordings; ``emoneuron
ablate`` (:func:`emoneuron.app.ablate.ablate`) adds any neurons.json in a finished run's
context.

Each method's sets are removed at the site they were found at; in mode ``mean`` the values
come from the recording at that site (:attr:`Compared.sources`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore, correctness
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import Classifier
from emoneuron.causal.evaluation.execution import EvaluationSetup, Sources, execute
from emoneuron.causal.inference.significance import Interval, near_chance, stratified_interval
from emoneuron.causal.inference.summaries import MEAN_ROW
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.executors import Executor
from emoneuron.selection.identify import NeuronSets, SelectionMethod, selection_method

RUN_METHOD = "run"  # the run's own sets, when no compared method equals them


def selection_methods(names: Sequence[str]) -> list[SelectionMethod]:
    """The registered methods called ``names`` (a UserError names an unknown one)."""
    return [selection_method(name) for name in names]


@dataclass(frozen=True)
class Compared:
    """One method's sets, the ``Condition.method`` tag of their conditions ("" when they
    are the run's own sets, whose conditions the main grid already holds) and what their
    controls and mean-mode values are drawn from (statistics at the sets' site)."""

    name: str
    label: str
    sets: NeuronSets
    tag: str
    sources: Sources


def method_conditions(design: Design, tag: str, seeds: Sequence[int]) -> list[Condition]:
    """What the comparison needs beyond the baseline: each emotion's mask on all six emotions
    and its random controls (``seeds``) on the masked emotion."""
    conditions = []
    for emotion in EMOTIONS:
        mask = Condition("mask", emotion, mode=design.mode, strength=design.strength,
                         tokens=design.tokens, method=tag)
        conditions += [mask, *(replace(mask, kind="control", control="random", seed=seed,
                                       eval_emotions=(emotion,)) for seed in seeds)]
    return conditions


def _main_of(conditions: Sequence[Condition], tag: str, emotion: str,
             seeds: Sequence[int]) -> tuple[Condition, list[Condition]]:
    """The all-neurons mask of ``emotion`` and its random controls of ``seeds``."""
    masks = [c for c in conditions if c.kind == "mask" and c.method == tag
             and c.masked_emotion == emotion and (c.layer_range, c.proportion) == ("all", 1.0)
             and c.eval_emotions == EMOTIONS]
    mask = masks[0]
    controls = [c for c in conditions if c.kind == "control" and c.control == "random"
                and c.method == tag and c.masked_emotion == emotion and c.seed in seeds
                and (c.layer_range, c.proportion, c.mode, c.strength) == (
                    "all", 1.0, mask.mode, mask.strength)]
    return mask, controls


def _by_emotion(store: ConditionStore, condition: Condition,
                evaluation: Sequence[Record]) -> dict[str, np.ndarray]:
    frame = correctness(store.done[condition.key], evaluation)
    return {e: frame.correct[frame.eval_emotion == e].to_numpy()
            for e in condition.eval_emotions}


def comparison_rows(store: ConditionStore, evaluation: Sequence[Record],
                    conditions: Sequence[Condition], compared: Compared,
                    seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One method's rows of ``methods.csv``: each emotion's, then their mean."""
    baseline = _by_emotion(store, Condition("baseline"), evaluation)
    terms: dict[str, list[np.ndarray]] = {}  # per masked emotion: per-dialogue terms per stratum
    rows = []
    for emotion in EMOTIONS:
        mask, controls = _main_of(conditions, compared.tag, emotion, seeds)
        masked = _by_emotion(store, mask, evaluation)
        control = np.mean([_by_emotion(store, c, evaluation)[emotion] for c in controls], axis=0)
        others = [e for e in EMOTIONS if e != emotion]
        terms[emotion] = [control - masked[emotion] if e == emotion
                          else -(baseline[e] - masked[e]) / len(others) for e in EMOTIONS]
        rows.append(_row(compared, emotion, stratified_interval(terms[emotion]),
                         near_chance(baseline[emotion]),
                         own=float(np.mean(baseline[emotion] - masked[emotion])),
                         control=float(np.mean(baseline[emotion] - control)),
                         cross=float(np.mean([np.mean(baseline[e] - masked[e]) for e in others])),
                         size=len(compared.sets.emotions[emotion]), n_seeds=len(controls)))
    pooled = [np.mean([terms[m][s] for m in EMOTIONS], axis=0) for s in range(len(EMOTIONS))]
    mean = _row(compared, MEAN_ROW, stratified_interval(pooled), False,
                **{key: float(np.mean([row[column] for row in rows])) for key, column in (
                    ("own", "own_drop"), ("control", "control_drop"),
                    ("cross", "cross_drop"), ("size", "n_neurons"))},
                n_seeds=len(seeds))
    return [mean, *rows]


def _row(compared: Compared, emotion: str, excess: Interval, is_near_chance: bool, own: float,
         control: float, cross: float, size: float, n_seeds: int) -> dict[str, Any]:
    config = compared.sets.config
    return {"method": compared.name, "label": compared.label, "site": compared.sets.site,
            "statistic": config.statistic, "rule": config.rule, "run_method": compared.tag == "",
            "masked_emotion": emotion, "n_neurons": size, "own_drop": own,
            "control_drop": control, "cross_drop": cross, "specific_excess_drop": excess.estimate,
            "ci_low": excess.low, "ci_high": excess.high, "n_control_seeds": n_seeds,
            "near_chance": is_near_chance}


def ranked_methods_table(earlier: pd.DataFrame | None,
                         rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``methods.csv`` with ``rows`` in place of their methods' ``earlier`` rows (the table as
    it was, or None), every method ranked by its mean specific excess drop (1 = largest)."""
    table = pd.DataFrame(list(rows))
    if earlier is not None:
        earlier = earlier.drop(columns="rank")
        table = pd.concat([earlier[~earlier.method.isin(table.method)], table],
                          ignore_index=True)
    means = table[table.masked_emotion == MEAN_ROW].set_index("method").specific_excess_drop
    rank = means.astype(float).rank(ascending=False, method="first").astype(int)
    table.insert(0, "rank", table.method.map(rank))
    order = {e: k for k, e in enumerate([MEAN_ROW, *EMOTIONS])}
    return table.sort_values(["rank", "masked_emotion"], key=lambda column: (
        column.map(order) if column.name == "masked_emotion" else column), ignore_index=True)


def compare_in_run(classifier: Classifier, evaluation: Sequence[Record],
                   store: ConditionStore, compared: Sequence[Compared],
                   main_conditions: Sequence[Condition], design: Design, seeds: Sequence[int],
                   progress: bool = True, executor: Executor | None = None,
                   setup: EvaluationSetup | None = None) -> list[dict[str, Any]]:
    """Evaluate what the comparison still needs of each method (the run's own sets reuse the
    main grid's conditions) and return the methods' rows of ``methods.csv``."""
    rows = []
    for method in compared:
        conditions = (list(main_conditions) if method.tag == ""
                      else method_conditions(design, method.tag, seeds))
        execute(classifier, method.sets, method.sources, evaluation, conditions, store,
                progress, executor, setup)
        rows += comparison_rows(store, evaluation, conditions, method, seeds)
    return rows
