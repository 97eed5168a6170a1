"""The neuron set as the unit of inference: each emotion's set judged against many random sets.

One set fills its slot for every evaluation dialogue, and random sets differ from one another
(two random sets of the same size and layers can leave an emotion 20 points apart), so a test
that treats only the dialogues as random (McNemar's, the slot permutation test) rejects far too
often. Here the set is the unit:

1. :func:`set_level_conditions`: each emotion's set, and ``Design.null_sets`` = K random sets
   matched to it layer by layer and by activation frequency
   (:func:`emoneuron.selection.controls.frequency_matched`), each removed at every token scope
   of ``Design.scopes`` and evaluated on the same dialogues: all of the emotion's own and the
   first ``Design.cross_per_emotion`` of each other emotion.
2. Per set, three statistics (:data:`STATISTICS`): ``own``, the accuracy drop on its emotion;
   ``cross``, the mean drop on the other emotions' sample; ``specific``, own minus cross.
3. :func:`set_level_test`: under the null the emotion's set is one more draw from the random
   sets' distribution. Its statistic minus the random sets' mean gets the variance
   ``sd^2 (1 + 1/K) + v / n``: ``sd`` is the random sets' spread (a prediction interval for one
   more set, floored at one dialogue's smallest change, so that random sets that all change
   nothing do not make a one-dialogue change significant); ``v / n`` is the variance over
   dialogues of the per-dialogue difference between the set and the random sets' mean, which
   the estimate also carries when it is read as the set's effect on new dialogues. The
   studentised difference is referred to Student's t with K - 1 degrees of freedom.
4. Two looks before the end (:func:`sequential_tests`, :func:`pending_conditions`): the set and
   its first ``Design.futility_look`` random sets are evaluated first; where no statistic of
   the set has p <= :data:`FUTILE_P` against them, the rest are not drawn. Then, at
   ``Design.second_look`` random sets, a set stops where each statistic is decided: futile
   (p > :data:`SECOND_FUTILE_P`) or already a finding with the share :data:`LOOK_SHARE` of
   alpha (p / LOOK_SHARE at or below Holm's first level). A set's reported p-value is
   min(p_second / LOOK_SHARE, p_end / (1 - LOOK_SHARE)) (Bonferroni over the two looks that
   can reject; the first look only stops for futility, which never adds a rejection), so the
   level holds whatever the looks decide. The simulation in the tests measures what the looks
   save (about 70% of the random sets where a set does nothing, half where it clearly acts)
   and the power they cost.
5. :func:`set_level_table` (``setlevel.csv``): Holm across the six emotions of each method,
   scope and statistic; the verdicts (:func:`verdict`, :func:`reading_verdict`) come from the
   adjusted p-values only.
6. Where an effect lives (:func:`effect_sweep_cells`, :func:`effect_sweep_table`,
   ``sweep_setlevel.csv``): for each emotion whose run's own set is beyond random sets
   (:func:`effect_emotions`), each layer range x proportion part of its set against random
   parts matched to that part, with the same look; Holm across every part of the sweep.

``tests/causal/test_setlevel.py`` simulates per-set effects (SD tau 0, 0.5 and 1 on the logit
scale) with dialogue noise through :func:`set_level_test` and checks its type-I error and
coverage; the same simulation shows the dialogue-level slot test and excess interval failing.

>>> own = Stratum(1.0, np.r_[np.ones(6), np.zeros(9)], np.zeros((8, 15)))
>>> result = set_level_test([own])
>>> round(result.excess.estimate, 2), result.p_value < 0.05
(0.4, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore, correctness
from emoneuron.causal.config import LAYER_RANGES, Design
from emoneuron.causal.inference.significance import Interval, holm
from emoneuron.data.schema import EMOTIONS, Record

STATISTICS = ("own", "cross", "specific")  # of the classifier; "probe" in causal.readout
NULL_CONTROL = "frequency"  # random sets matched layer by layer and by activation frequency
ALPHA = 0.05
POWER = 0.8
FUTILE_P = 0.3  # above it at the first look, a set is not tested against more random sets
SECOND_FUTILE_P = 0.1  # the same at the second look
LOOK_SHARE = 0.2  # of each test's alpha spent at the second look (Bonferroni with the end)
SETS_NULL = "random sets"  # what a neuron set is tested against, as verdicts name it
BEYOND = f"beyond {SETS_NULL}"
BELOW = f"below {SETS_NULL}"
UNDISTINGUISHED = f"not distinguishable from {SETS_NULL}"
# What a set does, from its own-emotion test at the dialogue-only and answer-only scopes.
READS = "acts while reading the dialogue"
ANSWERS = "acts at the answer"
BOTH = "acts while reading and at the answer"
NEITHER = "neither"


@dataclass(frozen=True)
class Stratum:
    """Dialogues that enter a statistic with one ``weight``: per dialogue, the value (an
    accuracy drop: baseline minus masked correctness) with the set removed (``observed``, (n,))
    and with each of K random sets removed (``null``, (K, n)); ``step`` is the smallest change
    of one dialogue's value, which sets the statistic's resolution. Masked values lie in
    [0, 1] (correctness, or a share of layers), so a stratum's excess lies in
    [-weight, weight]."""

    weight: float
    observed: np.ndarray
    null: np.ndarray
    step: float = 1.0  # the smallest change of one dialogue's value (1 for a 0/1 outcome)


@dataclass(frozen=True)
class SetLevel:
    """The set's statistic against K random sets: ``excess`` is the set's statistic minus
    the random sets' mean with its interval, ``p_value`` two-sided; ``rank_p`` the exact
    one-sided rank p-value (1 + random sets at least as large) / (K + 1), for reference;
    ``min_detectable`` the excess a test at the Holm family's first level finds with 80%
    power."""

    observed: float
    null_mean: float
    null_sd: float
    k: int
    n: int
    excess: Interval
    p_value: float
    rank_p: float
    min_detectable: float


def set_level_test(strata: Sequence[Stratum], level: float = 0.95,
                   family: int = len(EMOTIONS)) -> SetLevel:
    """The statistic sum over ``strata`` of weight x mean value, for the set and each of
    K >= 2 random sets, tested as the module docstring describes."""
    null = sum(s.weight * np.asarray(s.null, dtype=np.float64).mean(axis=1) for s in strata)
    k = len(null)
    if k < 2:
        raise ValueError("a set-level test needs at least two random sets")
    observed = sum(s.weight * float(np.mean(s.observed)) for s in strata)
    resolution = math.sqrt(sum((s.weight * s.step / len(s.observed)) ** 2 for s in strata))
    dialogue_variance = sum(
        s.weight ** 2 * float(np.var(s.observed - np.mean(s.null, axis=0), ddof=1))
        / len(s.observed) for s in strata if len(s.observed) > 1)
    mean, sd = float(np.mean(null)), float(np.std(null, ddof=1))
    scale = math.sqrt(max(sd, resolution) ** 2 * (1 + 1 / k) + dialogue_variance)
    difference = observed - mean
    t = stats.t(k - 1)
    half = float(t.ppf(1 - (1 - level) / 2)) * scale
    detectable = (float(t.ppf(1 - ALPHA / family / 2)) + float(t.ppf(POWER))) * scale
    # Clipped to the possible range: the true excess lies inside it, so coverage can only
    # rise, and an interval past +-100 points claims nothing more.
    bound = sum(abs(s.weight) for s in strata)
    return SetLevel(observed, mean, sd, k, sum(len(s.observed) for s in strata),
                    Interval(difference, max(difference - half, -bound),
                             min(difference + half, bound)),
                    float(min(1.0, 2 * t.sf(abs(difference) / scale))),
                    (1 + int(np.sum(null >= observed))) / (k + 1), detectable)


def with_random_sets(mask: Condition, design: Design) -> list[Condition]:
    """``mask`` (one set removed) and its ``Design.null_sets`` random sets, alike otherwise."""
    return [mask, *(replace(mask, kind="control", control=NULL_CONTROL, seed=seed)
                    for seed in range(design.null_sets))]


def set_level_cells(design: Design, tag: str) -> list[list[Condition]]:
    """Per scope and emotion, the emotion's set and its K random sets, on the emotion's
    dialogues and the cross sample (``tag``: the compared method, "" for the run's own
    sets)."""
    return [with_random_sets(
                Condition("mask", emotion, mode=design.mode, strength=design.strength,
                          tokens=scope, method=tag, eval_emotions=(emotion,),
                          cross_sample=design.cross_per_emotion), design)
            for scope in design.scopes for emotion in EMOTIONS]


def set_level_conditions(design: Design, tag: str) -> list[Condition]:
    """Every condition :func:`set_level_cells` can draw, in order."""
    return [condition for cell in set_level_cells(design, tag) for condition in cell]


@dataclass(frozen=True)
class Look:
    """After ``random_sets`` random sets, a set stops where every statistic has p above
    ``futile_p`` or at most ``share`` x Holm's first level; ``share`` is the part of alpha the
    look spends (0: it stops only for futility)."""

    random_sets: int
    futile_p: float
    share: float


def looks(design: Design) -> list[Look]:
    """The looks of ``design``, the end (all K random sets, the rest of alpha) last.

    >>> [look.random_sets for look in looks(Design(null_sets=20))]
    [4, 10, 20]
    """
    k = design.null_sets
    early = [Look(design.futility_look, FUTILE_P, 0.0)] if 2 <= design.futility_look < k else []
    if max(2, design.futility_look + 1) <= design.second_look < k:
        early.append(Look(design.second_look, SECOND_FUTILE_P, LOOK_SHARE))
    return [*early, Look(k, 1.0, 1.0 - sum(look.share for look in early))]


Tests = Callable[[Sequence[Condition]], Sequence[SetLevel]]


def _sequential(cell: Sequence[Condition], design: Design, tests_of: Tests, family: int,
                ready: Callable[[Sequence[Condition]], bool]
                ) -> tuple[list[Condition], list[SetLevel]]:
    """The looks of ``cell`` walked in order: the conditions of the first look not ``ready``
    (and no tests), or the tests where the set stops, their p-values combined over the looks
    that spend alpha."""
    spent: list[float] = []
    for look in looks(design):
        conditions = list(cell[:1 + look.random_sets])
        if not ready(conditions):
            return conditions, []
        tests = list(tests_of(conditions))
        if look.share:
            spent = [min(p, t.p_value / look.share)
                     for p, t in zip(spent or [math.inf] * len(tests), tests, strict=True)]
        decided = all(t.p_value > look.futile_p or t.p_value <= look.share * ALPHA / family
                      for t in tests)
        if decided or look.random_sets == design.null_sets:
            return [], [replace(t, p_value=min(1.0, p)) for t, p in
                        zip(tests, spent or [t.p_value for t in tests], strict=True)]
    raise AssertionError("the last look draws every random set")


def sequential_tests(cell: Sequence[Condition], design: Design, tests_of: Tests,
                     family: int = len(EMOTIONS)) -> list[SetLevel]:
    """The set-level tests (one per statistic) of ``cell``'s set against the random sets its
    looks draw, in a Holm family of ``family`` sets; ``tests_of`` tests the first condition
    against the others.

    >>> design = Design(null_sets=20)
    >>> cell = set_level_cells(design, "")[0]
    >>> def against(drops):  # the set's drops against random sets that change nothing
    ...     return lambda c: [set_level_test([Stratum(1.0, drops, np.zeros((len(c) - 1, 15)))])]
    >>> [sequential_tests(cell, design, against(drops))[0].k
    ...  for drops in (np.zeros(15), np.ones(15))]
    [4, 10]
    """
    return _sequential(cell, design, tests_of, family, lambda _: True)[1]


def pending_conditions(store: ConditionStore, evaluation: Sequence[Record], design: Design,
                       cells: Sequence[Sequence[Condition]],
                       family: int = len(EMOTIONS)) -> list[Condition]:
    """The conditions ``store`` still needs for the next look of each of ``cells``: a run
    evaluates them and asks again until none is left."""
    tests_of = stored_tests(store, evaluation)

    def ready(conditions: Sequence[Condition]) -> bool:
        return all(c.key in store.done for c in conditions)

    return [condition for cell in cells
            for condition in _sequential(cell, design, tests_of, family, ready)[0]
            if condition.key not in store.done]


def _statistics(mask: Condition) -> tuple[str, ...]:
    """Cross and specific need a cross sample."""
    return STATISTICS if mask.cross_sample else STATISTICS[:1]


def stored_tests(store: ConditionStore, evaluation: Sequence[Record]) -> Tests:
    """The tests of a set (the first condition) against its random sets (the others), one per
    statistic (own, and cross and specific where the conditions hold a cross sample), from
    ``store``'s predictions, against the unchanged model's in the same answer format: what
    :func:`sequential_tests` takes as ``tests_of`` for a cell of stored conditions."""
    baselines: dict[str, pd.DataFrame] = {}

    def tests(conditions: Sequence[Condition]) -> list[SetLevel]:
        mask, *nulls = conditions
        if mask.answer_format not in baselines:
            baselines[mask.answer_format] = correctness(
                store.done[format_baseline(mask.answer_format).key], evaluation)
        baseline = baselines[mask.answer_format]
        set_values = _values(store, mask, evaluation, baseline)
        null_values = [_values(store, c, evaluation, baseline) for c in nulls]
        return [set_level_test(_strata(set_values, null_values, mask.masked_emotion, statistic))
                for statistic in _statistics(mask)]
    return tests


def _values(store: ConditionStore, condition: Condition, evaluation: Sequence[Record],
            baseline: pd.DataFrame) -> pd.DataFrame:
    """Per evaluated dialogue: its emotion and its drop (baseline minus masked correctness)."""
    frame = correctness(store.done[condition.key], evaluation)
    base = baseline.set_index("record").correct
    return frame.assign(drop=base.loc[frame.record].to_numpy() - frame.correct.to_numpy())


def _strata(set_values: pd.DataFrame, null_values: Sequence[pd.DataFrame], emotion: str,
            statistic: str) -> list[Stratum]:
    def stratum(weight: float, own: bool) -> Stratum:
        pick = (set_values.eval_emotion == emotion) == own
        return Stratum(weight, set_values["drop"][pick].to_numpy(),
                       np.array([v["drop"][pick].to_numpy() for v in null_values]))

    return {"own": [stratum(1.0, True)], "cross": [stratum(1.0, False)],
            "specific": [stratum(1.0, True), stratum(-1.0, False)]}[statistic]


def set_level_table(store: ConditionStore, evaluation: Sequence[Record], design: Design,
                    methods: Sequence[tuple[str, str]],
                    extra: Sequence[Mapping[str, Any]] = ()) -> pd.DataFrame:
    """``setlevel.csv``: one row per method (name, tag), scope, statistic and emotion, with
    Holm across the six emotions of each (method, scope, statistic), then the ``extra`` rows
    (the probe's, :mod:`emoneuron.causal.evaluation.readout`). Cross and specific rows need a cross
    sample (``Design.cross_per_emotion`` > 0)."""
    tests_of = stored_tests(store, evaluation)
    rows: list[dict[str, Any]] = []
    for name, tag in methods:
        results: dict[tuple[str, str], dict[str, tuple[SetLevel, int]]] = {}
        for cell in set_level_cells(design, tag):
            mask = cell[0]
            tests = sequential_tests(cell, design, tests_of)
            for statistic, test in zip(_statistics(mask), tests, strict=True):
                results.setdefault((mask.tokens, statistic), {})[mask.masked_emotion] = (
                    test, store.done[mask.key]["n_masked"])
        for (scope, statistic), family in results.items():
            rows += family_rows(name, tag, scope, statistic, family)
    return with_reading(pd.DataFrame([*rows, *extra]))


def format_baseline(answer_format: str) -> Condition:
    """The unchanged model asked in ``answer_format`` ("": the run's format)."""
    return Condition("baseline", answer_format=answer_format)


def format_cells(design: Design, tag: str, answer_format: str) -> list[list[Condition]]:
    """Each emotion's set (of the method ``tag``) and its K random sets removed at every
    position, the model asked in ``answer_format``, on the emotion's dialogues."""
    return [with_random_sets(
                Condition("mask", emotion, mode=design.mode, strength=design.strength,
                          method=tag, eval_emotions=(emotion,), answer_format=answer_format),
                design)
            for emotion in EMOTIONS]


def format_table(store: ConditionStore, evaluation: Sequence[Record], design: Design,
                 methods: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """``formats_setlevel.csv``: each method's sets in each of ``Design.other_formats``, own
    drop against random sets, Holm across the six emotions of each (method, format); compare
    with the run's format's rows of ``setlevel.csv`` (scope all, statistic own)."""
    tests_of = stored_tests(store, evaluation)
    rows = []
    for answer_format in design.other_formats:
        for name, tag in methods:
            results = {cell[0].masked_emotion: (sequential_tests(cell, design, tests_of)[0],
                                                store.done[cell[0].key]["n_masked"])
                       for cell in format_cells(design, tag, answer_format)}
            rows += [{**row, "answer_format": answer_format}
                     for row in family_rows(name, tag, "all", "own", results)]
    return pd.DataFrame(rows)


def effect_emotions(table: pd.DataFrame) -> list[str]:
    """The emotions whose run's own set drops its emotion beyond random sets with the set
    removed at every position (``setlevel.csv``'s rows): those the effect sweep localises."""
    found = table[(table.run_method.astype(str) == "True") & (table.scope == "all")
                  & (table.statistic == "own") & (table.beyond.astype(str) == "True")]
    return [e for e in EMOTIONS if e in set(found.masked_emotion)]


def effect_sweep_cells(design: Design, emotions: Sequence[str],
                nonempty: Callable[[Condition], bool]) -> list[list[Condition]]:
    """For each of ``emotions``, each layer range x ``Design.proportions`` share of its set
    (the whole set excepted: :func:`set_level_cells` tests it) that ``nonempty`` keeps, with its
    K random sets matched to that part layer by layer and by activation frequency, on the
    emotion's dialogues."""
    return [cell for emotion in emotions for layer_range in LAYER_RANGES
            for proportion in design.proportions if (layer_range, proportion) != ("all", 1.0)
            for cell in [with_random_sets(
                Condition("mask", emotion, layer_range, proportion, mode=design.mode,
                          strength=design.strength, eval_emotions=(emotion,)), design)]
            if nonempty(cell[0])]


def effect_sweep_table(store: ConditionStore, evaluation: Sequence[Record], design: Design,
                method: str, cells: Sequence[Sequence[Condition]]) -> pd.DataFrame:
    """``sweep_setlevel.csv``: each sweep cell's own-emotion drop against its random sets,
    Holm across every cell of the sweep (one family: where in the model the effect lives)."""
    tests_of = stored_tests(store, evaluation)
    rows = [{**_row(method, cell[0].tokens, "own", cell[0].masked_emotion,
                    sequential_tests(cell, design, tests_of, len(cells))[0],
                    store.done[cell[0].key]["n_masked"]),
             "layer_range": cell[0].layer_range, "proportion": cell[0].proportion}
            for cell in cells]
    for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
        row["verdict"] = verdict(row["excess"], adjusted)
        row["beyond"] = is_beyond(row["excess"], adjusted)
    return pd.DataFrame(rows, columns=EFFECT_SWEEP_COLUMNS)


def family_rows(method: str, tag: str, scope: str, statistic: str,
                results: Mapping[str, tuple[SetLevel, int]], null: str = SETS_NULL
                ) -> list[dict[str, Any]]:
    """The ``setlevel.csv`` rows of one Holm family: a method's sets at one scope and
    statistic, ``results`` by emotion as (test, set size); the verdicts name ``null``."""
    family = [{"run_method": tag == "", **_row(method, scope, statistic, emotion, result, size)}
              for emotion, (result, size) in results.items()]
    for row, adjusted in zip(family, holm([r["p"] for r in family]), strict=True):
        row["p_holm"] = adjusted
        row["verdict"] = verdict(row["excess"], adjusted, null)
        row["beyond"] = is_beyond(row["excess"], adjusted)
    return family


def with_reading(results: pd.DataFrame) -> pd.DataFrame:
    """``reading`` on each own-statistic row: what the set does (:func:`reading_verdict`),
    where both restricted scopes were tested ("" elsewhere)."""
    own = results[results.statistic == "own"].set_index(["method", "scope", "masked_emotion"])
    reading = []
    for row in results.itertuples():
        keys = [(row.method, scope, row.masked_emotion) for scope in ("dialogue", "last")]
        tested = row.statistic == "own" and all(key in own.index for key in keys)
        reading.append(reading_verdict(*(bool(own.loc[key, "beyond"]) for key in keys))
                       if tested else "")
    return results.assign(reading=reading)


EFFECT_SWEEP_COLUMNS = ("method", "masked_emotion", "layer_range", "proportion", "n_neurons",
                 "n_dialogues", "k_random_sets", "set_drop", "random_mean_drop", "random_sd",
                 "excess", "ci_low", "ci_high", "p", "p_holm", "rank_p",
                 "min_detectable_excess", "verdict", "beyond")


def _row(method: str, scope: str, statistic: str, emotion: str, result: SetLevel,
         n_masked: int) -> dict[str, Any]:
    return {"method": method, "scope": scope, "statistic": statistic,
            "masked_emotion": emotion, "n_neurons": n_masked, "n_dialogues": result.n,
            "k_random_sets": result.k, "set_drop": result.observed,
            "random_mean_drop": result.null_mean, "random_sd": result.null_sd,
            "excess": result.excess.estimate, "ci_low": result.excess.low,
            "ci_high": result.excess.high, "p": result.p_value, "rank_p": result.rank_p,
            "min_detectable_excess": result.min_detectable}


def is_beyond(excess: float, p_holm: float) -> bool:
    """Whether a set-level result is a larger drop than its null's at the Holm level."""
    return p_holm <= ALPHA and excess > 0


def verdict(excess: float, p_holm: float, null: str = SETS_NULL) -> str:
    """A set-level result in words, from its Holm-adjusted p-value, naming the ``null``.

    >>> verdict(0.3, 0.01), verdict(0.3, 0.2)
    ('beyond random sets', 'not distinguishable from random sets')
    >>> verdict(-0.3, 0.01, "random directions")
    'below random directions'
    """
    if p_holm > ALPHA:
        return f"not distinguishable from {null}"
    return f"beyond {null}" if excess > 0 else f"below {null}"


def reading_verdict(reads: bool, answers: bool) -> str:
    """What a set does, from whether its own-emotion drop is beyond its null with the set
    removed on the dialogue's tokens only (``reads``) and at the scored position only
    (``answers``).

    >>> reading_verdict(True, False)
    'acts while reading the dialogue'
    """
    return BOTH if reads and answers else READS if reads else ANSWERS if answers else NEITHER
