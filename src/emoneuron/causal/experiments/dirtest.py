"""Emotion directions judged as the neuron sets are: each emotion's direction projected out of
the residual stream, against K random directions and against directions from shuffled labels,
with the set-level test (:mod:`emoneuron.causal.inference.setlevel`).

1. Layers (:func:`chosen_layers`): the :data:`TESTED_LAYERS` residual layers where the
   label-free probe's cross-validated accuracy on the identification split is highest (its
   training accuracy where it could not cross-validate), leaving out layer 0 (the embeddings,
   which no edit reaches) and the top layer (read after the final norm, edited before it).
   Identification data only, so the choice is fixed before the evaluation split is read.
2. Units (:class:`DirectionUnits`): the emotion's direction at those layers (condition kind
   ``mask``); as nulls, per seed ``s`` < ``Design.null_sets``, the random directions of
   :func:`~emoneuron.causal.experiments.directions.random_directions` (control ``random``: uniform
   in the directions' subspace, each with the norm of the difference it stands for) and the
   directions of seeded shuffled identification labels (control ``shuffled``). Each is
   projected out (:class:`~emoneuron.causal.evaluation.residual.DirectionAblation`) at the same
   layers.
3. The classifier (:func:`direction_cells`): per null (``Design.direction_nulls``), scope
   (``Design.direction_scopes``) and emotion, the direction and its K nulls on the emotion's
   dialogues and the cross sample, evaluated look by look into the run's ``conditions.jsonl``
   under the method tag :data:`TAG`; the statistics own, cross and specific, as for sets.
4. The probe (:func:`probe_rows`): per null and emotion, the label-free probe's share of
   correct layers from the first edited layer up, with the direction removed at every position
   of the dialogue read alone.
5. :func:`direction_table`: ``directions_setlevel.csv``, the columns of ``setlevel.csv``
   but ``n_neurons`` (``method`` names the null: :data:`METHODS`) plus ``unit``
   (``direction``), ``null``, ``n_layers`` and ``layers`` (the residual layers it is removed
   at); Holm across the six emotions of each null, scope and statistic.

>>> chosen_layers((0.9, 0.5, 0.8, 0.7, 0.6, 0.99), 2)
[2, 3]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.probe import Probe, probe_outcomes
from emoneuron.causal.evaluation.readout import SCOPE, STATISTIC, probe_tests
from emoneuron.causal.evaluation.residual import DirectionAblation
from emoneuron.causal.experiments.directions import (
    EmotionDirections,
    random_directions,
    shuffled_label_directions,
)
from emoneuron.causal.inference.setlevel import (
    STATISTICS,
    SetLevel,
    family_rows,
    sequential_tests,
    stored_tests,
    with_reading,
)
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel

TAG = "direction"  # the conditions' method tag; no selection method has this name
UNIT = "direction"
MODE = "project"  # the h - (h . d) d of DirectionAblation, named in the condition's key
TESTED_LAYERS = 3
NULLS = {"random": "random unit directions in the same subspace, matched in norm",
         "shuffled": "directions from shuffled identification labels"}
# The method column of each null's rows, so that each (method, scope, statistic) is one family.
NULL_NAMES = {"random": "random directions", "shuffled": "shuffled-label directions"}
METHODS = {null: f"direction vs {name}" for null, name in NULL_NAMES.items()}
LAYER_CHOICE = (f"the {TESTED_LAYERS} residual layers (not the embeddings, not the top one, "
                "read after the final norm) where the probe's cross-validated accuracy on the "
                "identification split is highest (its training accuracy without "
                "cross-validation); chosen before the evaluation split is read")


def chosen_layers(accuracy: Sequence[float], count: int = TESTED_LAYERS) -> list[int]:
    """The ``count`` residual layers with the highest ``accuracy`` (one per residual layer),
    the embeddings (0) and the top layer left out; ties go to the lower layer. None for a
    model of one layer, which has no residual layer between its embeddings and its top."""
    inner = list(range(1, len(accuracy) - 1))
    best = sorted(inner, key=lambda layer: (-accuracy[layer], layer))[:count]
    return sorted(best)


def probe_accuracy(probe: Probe) -> tuple[float, ...]:
    """What :func:`chosen_layers` ranks: identification data only."""
    return probe.cross_validated_accuracy or probe.train_accuracy


@dataclass(frozen=True, eq=False)
class DirectionUnits:
    """The emotion directions, the identification features and labels they came from (for
    the shuffled-label null) and the residual layers they are removed at."""

    directions: EmotionDirections
    features: torch.Tensor  # (N, R, H) of the identification dialogues
    labels: torch.Tensor  # (N,) their emotion indices
    layers: tuple[int, ...]
    _nulls: dict[tuple[str, int], EmotionDirections] = field(default_factory=dict)

    def null(self, control: str, seed: int) -> EmotionDirections:
        """The null directions of ``control`` (random or shuffled) and ``seed``, drawn once."""
        if (control, seed) not in self._nulls:
            if control not in NULLS:
                raise UserError(f"unknown null {control!r} of directions: use one of "
                                f"{', '.join(NULLS)}")
            self._nulls[control, seed] = (
                random_directions(self.directions, seed) if control == "random"
                else shuffled_label_directions(self.features, self.labels, seed))
        return self._nulls[control, seed]

    def intervention(self, condition: Condition) -> DirectionAblation:
        """The direction (kind mask) or null direction (kind control) of the condition's
        emotion projected out at :attr:`layers` on the condition's tokens."""
        source = (self.directions if condition.kind == "mask"
                  else self.null(condition.control, condition.seed or 0))
        return source.ablation(condition.masked_emotion, self.layers, condition.tokens)


def _cell(emotion: str, design: Design, null: str, scope: str,
          cross_sample: int) -> list[Condition]:
    """The direction of ``emotion`` and its ``Design.null_sets`` nulls of kind ``null``."""
    mask = Condition("mask", emotion, mode=MODE, tokens=scope, method=TAG,
                     eval_emotions=(emotion,), cross_sample=cross_sample)
    return [mask, *(Condition("control", emotion, seed=seed, control=null, mode=MODE,
                              tokens=scope, method=TAG, eval_emotions=(emotion,),
                              cross_sample=cross_sample)
                    for seed in range(design.null_sets))]


def direction_cells(design: Design, null: str) -> list[list[Condition]]:
    """Per scope and emotion, the direction and its nulls for the classifier, on the
    emotion's dialogues and the cross sample."""
    return [_cell(emotion, design, null, scope, design.cross_per_emotion)
            for scope in design.direction_scopes for emotion in EMOTIONS]


def direction_table(store: ConditionStore, evaluation: Sequence[Record], design: Design,
                    units: DirectionUnits,
                    probe_results: dict[str, dict[str, SetLevel]]) -> pd.DataFrame:
    """``directions_setlevel.csv``: the classifier's statistics from ``store`` (every cell of
    :func:`direction_cells` evaluated) and the probe's ``probe_results`` (null -> emotion ->
    test, from :func:`probe_rows`), with the read-versus-answer verdicts."""
    tests_of = stored_tests(store, evaluation)
    rows = []
    for null in design.direction_nulls:
        families: dict[tuple[str, str], dict[str, tuple[SetLevel, int]]] = {}
        for cell in direction_cells(design, null):
            mask = cell[0]
            statistics = STATISTICS if mask.cross_sample else STATISTICS[:1]
            for statistic, test in zip(statistics, sequential_tests(cell, design, tests_of),
                                       strict=True):
                families.setdefault((mask.tokens, statistic), {})[mask.masked_emotion] = (
                    test, len(units.layers))
        families[SCOPE, STATISTIC] = {emotion: (test, len(units.layers))
                                      for emotion, test in probe_results.get(null, {}).items()}
        for (scope, statistic), family in families.items():
            rows += [_as_direction(row, null, units.layers)
                     for row in family_rows(METHODS[null], TAG, scope, statistic, family,
                                            NULL_NAMES[null])]
    return with_reading(pd.DataFrame(rows))


def _as_direction(row: dict[str, Any], null: str, layers: Sequence[int]) -> dict[str, Any]:
    """A set-level row of a direction: its size is the number of layers it is removed at."""
    row = dict(row)
    n_layers = row.pop("n_neurons")
    return {"unit": UNIT, "null": null, **row, "n_layers": n_layers,
            "layers": " ".join(map(str, layers))}


def probe_rows(loaded: LoadedModel, probe: Probe, evaluation: Sequence[Record],
               design: Design, units: DirectionUnits, store: ConditionStore,
               batch_size: int = 16, progress: bool = False
               ) -> dict[str, dict[str, SetLevel]]:
    """Per null and emotion, the probe test of the emotion's direction against its nulls
    (removed at every position of the dialogue read alone), look by look, stored in
    ``store``."""
    results: dict[str, dict[str, SetLevel]] = {}
    by_emotion = {e: [r for r in evaluation if r.emotion == e] for e in EMOTIONS}
    for emotion, records in by_emotion.items():
        if not records:
            continue
        unablated = probe_outcomes(loaded, probe, records, batch_size=batch_size)
        for null in design.direction_nulls:
            tests_of: Callable[[Sequence[Condition]], list[SetLevel]] = probe_tests(
                loaded, probe, records, np.asarray(unablated), units.intervention, store,
                batch_size, progress, f"probe direction {emotion} vs {null}")
            cell = _cell(emotion, design, null, SCOPE, 0)
            results.setdefault(null, {})[emotion] = sequential_tests(cell, design,
                                                                     tests_of)[0]
    return results
