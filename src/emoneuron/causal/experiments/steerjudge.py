"""Steering judged outside the classifier: an emotion's neurons amplified, or its direction
added, while the model continues neutral dialogues, and the continuations judged by two judges
that are not the steered classifier (issue 27 item 4).

1. Units (:func:`steering_interventions`): per emotion, its neurons amplified ``strength``
   times at every position (:mod:`emoneuron.causal.experiments.steer`'s intervention), and its unit
   direction added, ``h + alpha d``
   (:class:`~emoneuron.causal.evaluation.residual.DirectionSteering`), at the residual layers
   :mod:`emoneuron.causal.experiments.dirtest` tests (chosen from the probe on identification data).
   ``alpha`` is fixed in advance (:func:`direction_alpha`): :data:`DIRECTION_SCALE` times the
   typical residual norm at those layers on the identification dialogues, the same for every emotion
   and every null.
2. Nulls of the same size: per emotion, ``draws`` random sets with its neurons' count in every
   layer (:func:`~emoneuron.selection.controls.random_matched`, seeds ``[seed, emotion, k]``)
   amplified alike; ``draws`` random unit directions in the directions' subspace
   (:func:`~emoneuron.causal.experiments.directions.random_directions` of seed ``k``) added alike,
   at the same layers and alpha. A random direction stands for no emotion, so the same ``draws``
   directions are every emotion's null.
3. Continuations (:func:`~emoneuron.causal.experiments.steer.continue_dialogues`): greedy, at most
   :data:`~emoneuron.causal.experiments.steer.NEW_TOKENS` new tokens, of the neutral dialogues of
   :data:`~emoneuron.causal.experiments.steer.NEUTRAL_DIALOGUES`, one batch per intervention, and
   once unsteered.
4. Judges, on the text alone: ``probe``, the label-free probe's emotion at :func:`judge_layer`
   in an unsteered forward pass of each continuation read as a one-turn dialogue; ``lexicon``,
   whether the continuation holds a word of the emotion
   (:func:`emoneuron.data.lexicon.emotion_word_counts`).
5. The test (:func:`judged_table`, ``steering_judges.csv``): per unit, judge and emotion, the
   share of continuations judged as the emotion (Wilson 95% interval) against the null draws'
   shares with the set-level test (:func:`emoneuron.causal.inference.setlevel.set_level_test`, the
   draws as the random sets: the unit is one more draw under the null); Holm across the six emotions
   of each unit and judge; with fewer than two draws no test, and no verdict.

>>> judge_layer((0.99, 0.5, 0.8, 0.8))
2
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.evaluation.probe import Probe, residual_features
from emoneuron.causal.evaluation.residual import Intervention
from emoneuron.causal.experiments.dirtest import DirectionUnits, probe_accuracy
from emoneuron.causal.experiments.steer import NEW_TOKENS, continue_dialogues, neutral_prompts
from emoneuron.causal.inference.setlevel import BELOW, BEYOND, Stratum, set_level_test, verdict
from emoneuron.causal.inference.significance import holm, wilson_interval
from emoneuron.data.lexicon import emotion_word_counts
from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.models.loading import LoadedModel
from emoneuron.selection.controls import random_matched
from emoneuron.selection.identify import NeuronSets

FORMAT = "1"
UNITS = {"neurons": "its neurons amplified", "direction": "its direction added"}
NULLS = {"neurons": "random layer-matched neuron sets amplified alike",
         "direction": "random unit directions in the directions' subspace added alike"}
JUDGES = {"probe": "the label-free probe's emotion at its judge layer, the continuation read "
                   "alone in an unsteered forward pass",
          "lexicon": "the continuation holds a lexicon word of the emotion"}
# The direction added, summed over the steered layers, in units of the residual stream's
# spread across dialogues (how far two texts' residual streams typically lie apart): the
# whole push is one spread, shared out equally between the layers. Not its norm: that is
# mostly an offset every text shares (SmolLM2-135M: norm 70-100, spread 15-20 at layers 3-12).
DIRECTION_SCALE = 1.0
ALPHA_RULE = (f"{DIRECTION_SCALE:g} x the spread of the identification dialogues' features "
              "(the residual stream averaged over each dialogue's words: the root mean square "
              "distance from their mean) at the steered layers, divided by their number; "
              "fixed in advance, the same for every emotion and null")
JUDGE_LAYER_RULE = ("the residual layer above the embeddings where the probe's cross-validated "
                    "accuracy on the identification split is highest (its training accuracy "
                    "without cross-validation), ties to the lower layer")
UNSTEERED = "unsteered"
SAMPLES = 2  # continuations per condition and emotion shown in the report
TOWARD = "steers toward the emotion beyond random"
AWAY = "steers away from the emotion beyond random"
NOT_BEYOND = "not distinguishable from random"
NO_CONTROL = "no verdict without controls"
COLUMNS = ("unit", "judge", "emotion", "size", "null", "n_continuations", "null_draws",
           "unsteered_share", "share", "share_ci_low", "share_ci_high", "null_mean_share",
           "null_sd", "excess", "ci_low", "ci_high", "p", "p_holm", "verdict", "toward",
           "lexicon_words_per_continuation")


def judge_layer(accuracy: Sequence[float]) -> int:
    """The residual layer (1 and above: the embeddings read each word alone, which the lexicon
    judge already does) with the highest ``accuracy``, ties to the lower layer."""
    return min(range(1, len(accuracy)), key=lambda layer: (-accuracy[layer], layer))


def direction_alpha(units: DirectionUnits) -> float:
    """:data:`ALPHA_RULE`'s alpha, from the identification features alone.

    >>> features = torch.zeros(4, 3, 2)
    >>> features[:, 1, 0] = torch.tensor([1.0, -1.0, 1.0, -1.0])  # one unit from the mean
    >>> units = DirectionUnits(None, features, torch.arange(4), (1, 2))  # type: ignore[arg-type]
    >>> direction_alpha(units)  # the spread, 1 at layer 1 and 0 at 2, over 2 layers
    0.3535533905932738
    """
    features = units.features[:, list(units.layers)].to(torch.float64)
    spread = float((features - features.mean(0)).norm(dim=-1).square().mean().sqrt())
    return DIRECTION_SCALE * spread / len(units.layers)


def key(unit: str, emotion: str = "", draw: int | None = None) -> str:
    """The name of one steered condition: ``unsteered``, ``neurons anger``,
    ``neurons anger null 2``, ``direction fear``, ``direction null 0`` (every emotion's)."""
    parts = [unit, emotion, "" if draw is None else f"null {draw}"]
    return " ".join(part for part in parts if part)


def steering_interventions(sets: NeuronSets, units: DirectionUnits | None, strength: float,
                           seed: int, draws: int, alpha: float) -> dict[str, Intervention]:
    """Every condition of the module docstring by its :func:`key`: unsteered, each emotion's
    neurons and their ``draws`` nulls (emotions without neurons left out) and, with ``units``
    (which name layers), each emotion's direction and the ``draws`` shared null directions."""
    conditions: dict[str, Intervention] = {key(UNSTEERED): Ablation.of({})}
    for e, emotion in enumerate(EMOTIONS):
        own = sets.layer_indices(emotion)
        if not own:
            continue
        conditions[key("neurons", emotion)] = Ablation.of(own, "amplify", strength, sets.site)
        for draw in range(draws):
            drawn = random_matched(own, sets, emotion, np.random.default_rng([seed, e, draw]))
            conditions[key("neurons", emotion, draw)] = Ablation.of(drawn, "amplify", strength,
                                                                     sets.site)
    if units is None:
        return conditions
    for emotion in EMOTIONS:
        conditions[key("direction", emotion)] = units.directions.steering(
            emotion, units.layers, alpha)
    for draw in range(draws):
        # Any emotion's row of a draw is a random unit direction at each layer: take the first.
        conditions[key("direction", draw=draw)] = units.null("random", draw).steering(
            EMOTIONS[0], units.layers, alpha)
    return conditions


def probe_judgements(loaded: LoadedModel, probe: Probe, layer: int, texts: Sequence[str],
                     batch_size: int = 16, progress: bool = False) -> np.ndarray:
    """(N,) int: the emotion index ``probe`` names at ``layer`` for each text read alone as
    a one-turn dialogue (an empty text as "...", which has a word to read), unsteered."""
    records = [Record(f"continuation-{k}", EMOTIONS[0], (Turn("A", text or "..."),), "steering")
               for k, text in enumerate(texts)]
    features = residual_features(loaded, records, batch_size=batch_size, progress=progress)
    judged: np.ndarray = probe.predict(features)[:, layer]
    return judged


def lexicon_judgements(texts: Sequence[str]) -> np.ndarray:
    """(N, emotions) int: each text's lexicon words of each emotion."""
    return np.array([[emotion_word_counts(text)[e] for e in EMOTIONS] for text in texts],
                    dtype=np.int64).reshape(len(texts), len(EMOTIONS))


@dataclass(frozen=True)
class Judged:
    """One unit, judge and emotion: per continuation, whether it was judged as the emotion
    with the unit steering (``steered``, (n,)), with each null draw (``null``, (K, n)) and
    unsteered (``unsteered``, (n,)); ``size`` is the unit's (neurons, or layers steered)."""

    steered: np.ndarray
    null: np.ndarray
    unsteered: np.ndarray
    size: int
    words: float = math.nan  # the emotion's lexicon words per steered continuation


def steering_verdict(excess: float, p_holm: float) -> str:
    """A steering result in words, from its Holm-adjusted p-value (NaN: no test).

    >>> steering_verdict(0.4, 0.01)
    'steers toward the emotion beyond random'
    >>> steering_verdict(0.4, 0.2), steering_verdict(0.4, math.nan)
    ('not distinguishable from random', 'no verdict without controls')
    """
    if math.isnan(p_holm):
        return NO_CONTROL
    return {BEYOND: TOWARD, BELOW: AWAY}.get(verdict(excess, p_holm), NOT_BEYOND)


def judged_table(results: Mapping[tuple[str, str, str], Judged]) -> pd.DataFrame:
    """``steering_judges.csv``: a row per (unit, judge, emotion) of ``results``, the share
    judged as the emotion with its Wilson interval, and against two or more null draws the
    set-level test, Holm-adjusted across the six emotions of each unit and judge."""
    rows = []
    for (unit, judge, emotion), judged in results.items():
        share = wilson_interval(judged.steered)
        row: dict[str, Any] = {
            "unit": unit, "judge": judge, "emotion": emotion, "size": judged.size,
            "null": NULLS[unit],
            "n_continuations": len(judged.steered), "null_draws": len(judged.null),
            "unsteered_share": float(np.mean(judged.unsteered)), "share": share.estimate,
            "share_ci_low": share.low, "share_ci_high": share.high,
            "null_mean_share": float(np.mean(judged.null)) if len(judged.null) else math.nan,
            "null_sd": math.nan, "excess": math.nan, "ci_low": math.nan, "ci_high": math.nan,
            "p": math.nan, "lexicon_words_per_continuation": judged.words}
        if len(judged.null) >= 2:
            test = set_level_test([Stratum(1.0, judged.steered.astype(np.float64),
                                           judged.null.astype(np.float64))])
            row |= {"null_sd": test.null_sd, "excess": test.excess.estimate,
                    "ci_low": test.excess.low, "ci_high": test.excess.high, "p": test.p_value}
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS
                                        if c not in ("p_holm", "verdict", "toward")])
    table["p_holm"] = math.nan
    for _, family in table[table.p.notna()].groupby(["unit", "judge"], sort=False):
        table.loc[family.index, "p_holm"] = holm(family.p.tolist())
    table["verdict"] = [steering_verdict(excess, p_holm)
                        for excess, p_holm in zip(table.excess, table.p_holm, strict=True)]
    table["toward"] = table.verdict == TOWARD
    return table[list(COLUMNS)]


def _judged(continuations: Mapping[str, Sequence[str]], unit: str, emotion: str,
            null: Sequence[str], size: int, probe_index: Mapping[str, int],
            words: Mapping[str, np.ndarray]) -> dict[tuple[str, str, str], Judged]:
    """Both judges' :class:`Judged` of one unit and emotion, its null draws named ``null``."""
    e = EMOTIONS.index(emotion)
    steered = continuations[key(unit, emotion)]

    def probe(texts: Sequence[str]) -> np.ndarray:
        return np.array([probe_index[text] == e for text in texts])

    def lexicon(texts: Sequence[str]) -> np.ndarray:
        return np.array([words[text][e] > 0 for text in texts])

    unsteered = continuations[key(UNSTEERED)]
    count = float(np.mean([words[text][e] for text in steered]))
    return {(unit, name, emotion): Judged(
                judge(steered), np.array([judge(continuations[n]) for n in null],
                                         dtype=bool).reshape(len(null), len(steered)),
                judge(unsteered), size, count if name == "lexicon" else math.nan)
            for name, judge in (("probe", probe), ("lexicon", lexicon))}


def judge_continuations(loaded: LoadedModel, probe: Probe, layer: int,
                        continuations: Mapping[str, Sequence[str]], sets: NeuronSets,
                        n_layers: int, draws: int, batch_size: int = 16,
                        progress: bool = False) -> pd.DataFrame:
    """:func:`judged_table` of every unit in ``continuations`` (by :func:`key`); each distinct
    text is read by the probe once. ``n_layers`` is the directions' size (layers steered)."""
    texts = list(dict.fromkeys(t for batch in continuations.values() for t in batch))
    named = probe_judgements(loaded, probe, layer, texts, batch_size, progress)
    probe_index = dict(zip(texts, named.tolist(), strict=True))
    words = dict(zip(texts, lexicon_judgements(texts), strict=True))
    results: dict[tuple[str, str, str], Judged] = {}
    for emotion in EMOTIONS:
        if key("neurons", emotion) in continuations:
            size = sum(map(len, sets.layer_indices(emotion).values()))
            results |= _judged(continuations, "neurons", emotion,
                               [key("neurons", emotion, d) for d in range(draws)], size,
                               probe_index, words)
    for emotion in EMOTIONS:
        if key("direction", emotion) in continuations:
            results |= _judged(continuations, "direction", emotion,
                               [key("direction", draw=d) for d in range(draws)], n_layers,
                               probe_index, words)
    return judged_table(results)


def samples(continuations: Mapping[str, Sequence[str]],
            count: int = SAMPLES) -> dict[str, dict[str, list[str]]]:
    """Per emotion, the first ``count`` continuations unsteered, steered by each unit and by
    its first null draw, by what steered them (the report's samples)."""
    shown = {emotion: {"unsteered": key(UNSTEERED), "its neurons": key("neurons", emotion),
                       "random neurons": key("neurons", emotion, 0),
                       "its direction": key("direction", emotion),
                       "a random direction": key("direction", draw=0)}
             for emotion in EMOTIONS}
    return {emotion: {label: list(continuations[name][:count])
                      for label, name in names.items() if name in continuations}
            for emotion, names in shown.items()}


def generated_by_steer(steering: Mapping[str, Any]) -> dict[str, list[str]]:
    """The continuations :func:`emoneuron.causal.experiments.steer.steer` generated
    (``steering.json``) under the interventions this module names alike, by :func:`key`: unsteered,
    and each emotion's neurons amplified (at its strength: pass them on with the same strength)."""
    emotions = steering["emotions"]
    return {key(UNSTEERED): list(emotions[EMOTIONS[0]]["none"]["continuations"]),
            **{key("neurons", emotion): list(result["emotion"]["continuations"])
               for emotion, result in emotions.items()}}


def judged_steering(loaded: LoadedModel, probe: Probe, sets: NeuronSets,
                    units: DirectionUnits | None, strength: float, seed: int, draws: int,
                    batch_size: int = 16, progress: bool = False,
                    generated: Mapping[str, Sequence[str]] | None = None,
                    ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The table (``steering_judges.csv``) and the description with every continuation
    (``steering_judges.json``) of the module docstring's steps; a condition in ``generated``
    (by :func:`key`, from the same model, prompts and strength) is not generated again."""
    generated = generated or {}
    steered = units if units is not None and units.layers else None
    alpha = direction_alpha(steered) if steered is not None else 0.0
    layer = judge_layer(probe_accuracy(probe))
    conditions = steering_interventions(sets, steered, strength, seed, draws, alpha)
    prompts = neutral_prompts()
    todo = {name: intervention for name, intervention in conditions.items()
            if name not in generated}
    continuations = {name: list(generated[name]) for name in conditions if name in generated}
    continuations |= {name: continue_dialogues(loaded, prompts, intervention)
                      for name, intervention in tqdm(todo.items(), desc="judged steering",
                                                     unit="condition", disable=not progress)}
    layers = list(steered.layers) if steered is not None else []
    table = judge_continuations(loaded, probe, layer, continuations, sets, len(layers), draws,
                                batch_size, progress)
    description = {
        "format": FORMAT, "units": UNITS, "nulls": NULLS, "judges": JUDGES,
        "strength": strength, "seed": seed, "null_draws": draws,
        "direction_layers": layers, "alpha": alpha if layers else None,
        "alpha_rule": ALPHA_RULE,
        "judge_layer": layer, "judge_layer_rule": JUDGE_LAYER_RULE,
        "probe_accuracy_at_judge_layer": probe_accuracy(probe)[layer],
        "new_tokens": NEW_TOKENS, "dialogues": [render_dialogue(p).text for p in prompts],
        "samples": samples(continuations), "continuations": continuations}
    return table, description
