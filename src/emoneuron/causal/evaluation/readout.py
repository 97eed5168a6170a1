"""Does removing a set remove the emotion information itself, or only the answer? The
label-free probe (:mod:`emoneuron.causal.evaluation.probe`) after each set, against random sets.

1. :func:`fit_probe`: residual-stream features of the identification dialogues read alone
   (no prompt, no label word), a probe per layer fitted on them, its accuracy on the held-out
   dialogues recorded.
2. :func:`readout_rows`: for each method's set of each emotion and its ``Design.null_sets``
   random sets (the same frequency-matched sets as :mod:`emoneuron.causal.inference.setlevel`, with
   the same looks), the
   probe's correctness on that emotion's held-out dialogues while the set is removed, averaged
   per dialogue over the residual layers after the set's first layer (the only ones it can
   change; the random sets share that layer). The statistic ``probe`` is the drop of that share
   against the unablated model, judged by :func:`emoneuron.causal.inference.setlevel.set_level_test`
   with Holm across the six emotions; the rows join ``setlevel.csv``.

Each evaluated set is stored in its own resumable
:class:`emoneuron.causal.conditions.store.ConditionStore` (``probe_conditions.jsonl``), one
per-dialogue share per condition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.execution import Sources, ablation_for
from emoneuron.causal.evaluation.probe import (
    FOLDS,
    L2_CANDIDATES,
    Probe,
    emotion_labels,
    layers_after,
    probe_outcomes,
    residual_features,
)
from emoneuron.causal.evaluation.residual import Intervention
from emoneuron.causal.inference.setlevel import (
    SetLevel,
    Stratum,
    family_rows,
    sequential_tests,
    set_level_test,
    with_random_sets,
)
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.models.loading import LoadedModel
from emoneuron.selection.identify import NeuronSets

STATISTIC = "probe"
SCOPE = "all"  # the set is removed at every position of the dialogue read alone
FALLBACK_L2 = 0.1  # the middle of the cross-validated candidates


def fit_probe(loaded: LoadedModel, identify: Sequence[Record], evaluation: Sequence[Record],
              batch_size: int = 16, progress: bool = False) -> Probe:
    """The probe fitted on ``identify`` with its held-out accuracy on ``evaluation``; with
    fewer than ``FOLDS`` identification dialogues of some emotion, no cross-validation is
    possible and the fixed penalty ``FALLBACK_L2`` is used (``probe.json`` names it)."""
    def features(records: Sequence[Record]) -> torch.Tensor:
        return residual_features(loaded, records, batch_size=batch_size, progress=progress)

    return probe_from(features(identify), emotion_labels(identify), features(evaluation),
                      emotion_labels(evaluation))


def probe_from(train: torch.Tensor, labels: torch.Tensor, held_out: torch.Tensor,
               held_out_labels: torch.Tensor) -> Probe:
    """:func:`fit_probe` from features already computed (the run computes them once for the
    probe and the emotion directions)."""
    smallest = int(torch.bincount(labels, minlength=len(EMOTIONS)).min())
    probe = Probe.fit(train, labels, L2_CANDIDATES if smallest >= FOLDS else FALLBACK_L2)
    return probe.with_held_out(held_out, held_out_labels)


def readout_rows(loaded: LoadedModel, probe: Probe, evaluation: Sequence[Record],
                 tested: Sequence[tuple[str, str, NeuronSets, Sources]], design: Design,
                 store: ConditionStore, batch_size: int = 16,
                 progress: bool = False) -> list[dict[str, Any]]:
    """``setlevel.csv`` rows of the statistic ``probe`` for each tested method (name, tag,
    sets, sources); an emotion with an empty set has no row."""
    by_emotion = {e: [r for r in evaluation if r.emotion == e] for e in EMOTIONS}
    unablated = {e: probe_outcomes(loaded, probe, records, batch_size=batch_size)
                 for e, records in by_emotion.items()}
    rows = []
    for name, tag, sets, sources in tested:
        results: dict[str, tuple[SetLevel, int]] = {}
        for emotion in EMOTIONS:
            cell = with_random_sets(
                Condition("mask", emotion, mode=design.mode, strength=design.strength,
                          method=tag, eval_emotions=(emotion,)), design)
            size = ablation_for(cell[0], sets, sources).size
            if not size:
                continue
            tests_of = probe_tests(
                loaded, probe, by_emotion[emotion], unablated[emotion],
                lambda c: ablation_for(c, sets, sources),  # noqa: B023 (used at once)
                store, batch_size, progress, f"probe {name} {emotion}")
            results[emotion] = (sequential_tests(cell, design, tests_of)[0], size)
        rows += family_rows(name, tag, SCOPE, STATISTIC, results)
    return rows


def probe_tests(loaded: LoadedModel, probe: Probe, records: Sequence[Record],
                unablated: np.ndarray, intervention_for: Callable[[Condition], Intervention],
                store: ConditionStore, batch_size: int, progress: bool,
                label: str) -> Callable[[Sequence[Condition]], list[SetLevel]]:
    """The probe test of a unit (the first condition: a set, or a direction) against its
    random units (the others), each condition's intervention from ``intervention_for``,
    evaluating and storing the conditions not yet in ``store`` (under a progress bar named
    ``label``); ``unablated``: the probe's correctness on ``records`` without any."""
    def tests(conditions: Sequence[Condition]) -> list[SetLevel]:
        ablations = [intervention_for(c) for c in conditions]
        # The unit and its random units share their first layer (they are layer-matched).
        layers = list(layers_after(ablations[0], probe.n_layers - 1))
        todo = [(c, a) for c, a in zip(conditions, ablations, strict=True)
                if c.key not in store.done]
        for condition, ablation in tqdm(todo, desc=label, leave=False,
                                        disable=not progress):
            correct = probe_outcomes(loaded, probe, records, ablation, batch_size)
            store.add(condition, ablation, correct[:, layers].mean(axis=1))
        shares = [np.array(store.done[c.key]["predictions"]) for c in conditions]
        base = unablated[:, layers].mean(axis=1)
        # One dialogue's share moves in steps of one layer.
        return [set_level_test([Stratum(1.0, base - shares[0],
                                        base[None] - np.array(shares[1:]), 1 / len(layers))])]
    return tests
