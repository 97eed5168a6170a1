"""What a finished run found, read from its run directory: the tables the report and the
comparison of runs are drawn from, and the numbers derived from them (each emotion's self
effect and verdict, selected neurons per layer, the sweep's self rows).

>>> results = load_results(RunDir("runs/smollm2"))  # doctest: +SKIP
>>> [effect.verdict for effect in self_effects(results)]  # doctest: +SKIP
['beyond random sets', 'not distinguishable from random sets', ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from emoneuron.data.schema import EMOTIONS
from emoneuron.layout import (
    ABLATION,
    BASELINE_EXTRA,
    EFFECTS,
    SET_LEVEL,
    STABILITY,
    SWEEP,
    UNITS,
)
from emoneuron.rundir import RunDir

UNTESTED = "no set-level test in this run"
Triple = tuple[float, float, float]  # value, 95% CI low, 95% CI high


@dataclass(frozen=True)
class RunResults:
    """The tables every view of a run needs, each read (and verified) once."""

    manifest: dict[str, Any]
    neurons: dict[str, Any]  # neurons.json, every neuron inside the run's model
    ablation: pd.DataFrame
    effects: pd.DataFrame  # against the random layer-matched control
    every_control: pd.DataFrame  # against each control set
    sweep: pd.DataFrame | None
    stability: dict[str, Any] | None  # stability.json (bootstrap of each emotion's set)
    baseline_extra: pd.DataFrame | None  # the unchanged model on --baseline-data
    set_level: pd.DataFrame | None  # each method's sets against many random sets: the verdicts
    units: pd.DataFrame | None = None  # units.csv: each emotion's set beside its direction


def load_results(run_dir: RunDir) -> RunResults:
    """The run's manifest, neurons, ablation, effects and, where the run wrote them, its sweep,
    stability, extra baseline, set-level test and comparison of the units."""
    manifest = run_dir.manifest()
    effects = run_dir.table(EFFECTS)
    if "control_set" not in effects:
        raise run_dir.refused(EFFECTS, "unreadable (no control_set column)")
    return RunResults(manifest=manifest, neurons=run_dir.neurons_json(),
                      ablation=run_dir.table(ABLATION),
                      effects=effects[effects.control_set == "random"], every_control=effects,
                      sweep=run_dir.read_csv(SWEEP, optional=True),
                      stability=run_dir.read_json(STABILITY, optional=True),
                      baseline_extra=run_dir.read_csv(BASELINE_EXTRA, optional=True),
                      set_level=run_dir.read_csv(SET_LEVEL, optional=True),
                      units=run_dir.read_csv(UNITS, optional=True))


@dataclass(frozen=True)
class SelfEffect:
    """Removing one emotion's neurons, evaluated on that same emotion: accuracies against the
    random control seeds, and the set-level test's excess over many random sets with its
    Holm-adjusted p-value and verdict (NaN and :data:`UNTESTED` for a run without one)."""

    emotion: str
    n: int
    baseline: Triple
    masked: Triple
    control: Triple  # mean over seeds, lowest and highest CI bound over the seeds
    n_seeds: int
    excess: Triple
    p_value: float
    verdict: str
    beyond: bool  # the set's own drop is beyond random sets (Holm)


def _triple(row: Any, value: str, low: str, high: str) -> Triple:
    return float(row[value]), float(row[low]), float(row[high])


def baseline_accuracy(ablation: pd.DataFrame) -> dict[str, float]:
    """Baseline accuracy per evaluated emotion."""
    rows = ablation[ablation["condition"] == "baseline"]
    return {str(e): float(a) for e, a in zip(rows["eval_emotion"], rows["accuracy"], strict=True)}


def self_effects(run: RunResults) -> list[SelfEffect]:
    """Each emotion's own neurons removed, evaluated on itself, against random neurons; the
    verdict from the set-level test of the run's own sets at every position."""
    out = []
    ab = run.ablation
    tested = _own_set_level(run.set_level)
    for emotion in EMOTIONS:
        on_eval = ab[ab["eval_emotion"] == emotion]
        own = on_eval[on_eval["masked_emotion"] == emotion]
        masked_rows = own[own["condition"] == "mask"]
        if masked_rows.empty:
            continue
        base = on_eval[on_eval["condition"] == "baseline"].iloc[0]
        ctrl = own[(own["condition"] == "control") & (own["control_set"] == "random")]
        nan = float("nan")
        row = tested.loc[emotion] if emotion in tested.index else None
        out.append(SelfEffect(
            emotion=emotion, n=int(base["n"]),
            baseline=_triple(base, "accuracy", "ci_low", "ci_high"),
            masked=_triple(masked_rows.iloc[0], "accuracy", "ci_low", "ci_high"),
            control=(float(ctrl["accuracy"].mean()), float(ctrl["ci_low"].min()),
                     float(ctrl["ci_high"].max())),
            n_seeds=len(ctrl),
            excess=(nan, nan, nan) if row is None else _triple(row, "excess", "ci_low",
                                                                "ci_high"),
            p_value=nan if row is None else float(row["p_holm"]),
            verdict=UNTESTED if row is None else str(row["verdict"]),
            beyond=row is not None and str(row["beyond"]) == "True"))
    return out


def _own_set_level(set_level: pd.DataFrame | None) -> pd.DataFrame:
    """The set-level rows of the run's own sets, own-emotion statistic, removed at every
    position, by emotion (empty without a set-level table)."""
    if set_level is None:
        return pd.DataFrame()
    rows = set_level[(set_level.run_method.astype(str) == "True") & (set_level.scope == "all")
                     & (set_level.statistic == "own")]
    return rows.set_index("masked_emotion")


def layer_counts(neurons: dict[str, Any]) -> npt.NDArray[np.int_]:
    """Selected neurons per (emotion, layer), emotions in :data:`EMOTIONS` order."""
    n_layers = int(neurons["n_layers"])
    counts = np.zeros((len(EMOTIONS), n_layers), dtype=int)
    for row, emotion in enumerate(EMOTIONS):
        for neuron in neurons["emotions"].get(emotion, []):
            layer = int(neuron["layer"])
            if not 0 <= layer < n_layers:
                raise ValueError(f"neurons.json: {emotion} neuron in layer {layer}, "
                                 f"outside 0..{n_layers - 1}")
            counts[row, layer] += 1
    return counts


def sweep_self(run: RunResults) -> pd.DataFrame | None:
    """Sweep rows evaluated on the masked emotion itself, with their drop vs baseline."""
    if run.sweep is None:
        return None
    own = run.sweep[run.sweep["masked_emotion"] == run.sweep["eval_emotion"]].copy()
    own["drop"] = own["masked_emotion"].map(baseline_accuracy(run.ablation)) - own["accuracy"]
    return None if own.empty else own
