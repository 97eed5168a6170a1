"""One comparison of the two units (issue 27 item 5): per emotion, its neuron set beside its
direction, each against its own random null, read from the run's tables (``units.csv``).

- ``removal``: removing the run's own set (``setlevel.csv``, against random sets matched layer
  by layer and by activation frequency) and projecting out the emotion's direction
  (``directions_setlevel.csv``, against random directions), at every scope and statistic
  both tables hold: the set-level excess, its interval, Holm p and verdict as written there.
- ``steering``: each unit's steering judged by the probe and the lexicon against its nulls
  (``steering_judges.csv``), where the run judged steering.
- ``dimension``: how many neurons match one direction's effect (:data:`DIMENSION_RULE`), from
  conditions the run already evaluated; not computed where the direction lowers nothing.

Nothing is recomputed: each row copies its table's test, so its verdict carries that table's
Holm correction (six emotions per unit, scope and statistic, or per unit and judge); ``beyond``
says the unit acts beyond its null in the tested direction (a larger drop, or steering toward
the emotion).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from emoneuron.data.schema import EMOTIONS

NEURON_NULL = "random sets matched layer by layer and by activation frequency"
DIRECTION_NULL = "random unit directions in the directions' subspace"
DIMENSION_RULE = ("the fewest of the emotion's top-ranked neurons (all layers) whose removal at "
                  "every position, among the parts the run evaluated (sweep.csv, "
                  "sweep_setlevel.csv, and the whole set in setlevel.csv), lowers its "
                  "emotion's accuracy at least as much as projecting out its direction does "
                  "(directions_setlevel.csv, every position)")
COLUMNS = ("emotion", "unit", "effect", "scope", "statistic", "null", "size", "observed",
           "null_mean", "excess", "ci_low", "ci_high", "p_holm", "verdict", "beyond", "note")


def _removal(table: pd.DataFrame, unit: str, null: str, size: str) -> list[dict[str, Any]]:
    return [{"emotion": row.masked_emotion, "unit": unit, "effect": "removal",
             "scope": row.scope, "statistic": row.statistic, "null": null,
             "size": getattr(row, size), "observed": row.set_drop,
             "null_mean": row.random_mean_drop, "excess": row.excess, "ci_low": row.ci_low,
             "ci_high": row.ci_high, "p_holm": row.p_holm, "verdict": row.verdict,
             "beyond": str(row.beyond) == "True", "note": ""}
            for row in table.itertuples()]


def _steering(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{"emotion": row.emotion, "unit": row.unit, "effect": "steering", "scope": "all",
             "statistic": row.judge, "null": row.null, "size": row.size,
             "observed": row.share, "null_mean": row.null_mean_share, "excess": row.excess,
             "ci_low": row.ci_low, "ci_high": row.ci_high, "p_holm": row.p_holm,
             "verdict": row.verdict, "beyond": str(row.toward) == "True",
             "note": "share of continuations judged as the emotion"}
            for row in table.itertuples()]


def _parts(own: pd.DataFrame, sweep: pd.DataFrame | None,
           effect_sweep: pd.DataFrame | None) -> pd.DataFrame:
    """Every evaluated top-ranked part of each emotion's set (all layers, removed at every
    position) as (emotion, neurons, drop of the emotion's accuracy)."""
    frames = [own[["masked_emotion", "n_neurons", "set_drop"]]]
    if sweep is not None and not sweep.empty:
        parts = sweep[(sweep.layer_range == "all") & (sweep.masked_emotion == sweep.eval_emotion)]
        frames.append(parts.rename(columns={"n_masked": "n_neurons", "drop": "set_drop"})
                      [["masked_emotion", "n_neurons", "set_drop"]])
    if effect_sweep is not None and not effect_sweep.empty:
        frames.append(effect_sweep[effect_sweep.layer_range == "all"]
                      [["masked_emotion", "n_neurons", "set_drop"]])
    return pd.concat(frames, ignore_index=True)


def _dimension(emotion: str, direction: pd.Series, parts: pd.DataFrame) -> dict[str, Any]:
    """The :data:`DIMENSION_RULE` row of one emotion."""
    target = float(direction.set_drop)
    own = parts[parts.masked_emotion == emotion]
    reached = own[own.set_drop >= target]
    row: dict[str, Any] = {"emotion": emotion, "unit": "neurons", "effect": "dimension",
                           "scope": "all", "statistic": "own", "null": "", "size": math.nan,
                           "observed": math.nan, "null_mean": math.nan, "excess": math.nan,
                           "ci_low": math.nan, "ci_high": math.nan, "p_holm": math.nan,
                           "verdict": "", "beyond": False}
    if target <= 0:
        return row | {"note": f"not computed: projecting out the direction lowers its "
                              f"emotion's accuracy by {target:.3f}, nothing to match"}
    if reached.empty:
        largest = own.loc[own.n_neurons.idxmax()] if not own.empty else None
        said = ("no part of the set was evaluated" if largest is None else
                f"the largest part evaluated, {int(largest.n_neurons)} neurons, lowers it by "
                f"{float(largest.set_drop):.3f}")
        return row | {"note": f"not reached: the direction lowers its emotion's accuracy by "
                              f"{target:.3f}; {said}"}
    fewest = reached.loc[reached.n_neurons.idxmin()]
    return row | {"size": int(fewest.n_neurons), "observed": float(fewest.set_drop),
                  "note": f"{int(fewest.n_neurons)} top-ranked neurons lower its emotion's "
                          f"accuracy by {float(fewest.set_drop):.3f}, the direction by "
                          f"{target:.3f}"}


def unit_comparison(set_level: pd.DataFrame | None, directions: pd.DataFrame | None,
                    steering: pd.DataFrame | None = None, sweep: pd.DataFrame | None = None,
                    effect_sweep: pd.DataFrame | None = None) -> pd.DataFrame:
    """``units.csv`` from the run's tables (None: not in this run): the rows of the module
    docstring, emotion by emotion."""
    rows: list[dict[str, Any]] = []
    own = (set_level[set_level.run_method.astype(str) == "True"]
           if set_level is not None else pd.DataFrame())
    random = (directions[directions.null == "random"]
              if directions is not None else pd.DataFrame())
    if not own.empty:
        rows += _removal(own, "neurons", NEURON_NULL, "n_neurons")
    if not random.empty:
        rows += _removal(random, "direction", DIRECTION_NULL, "n_layers")
    if steering is not None:
        rows += _steering(steering)
    if not own.empty and not random.empty:
        whole = own[(own.scope == "all") & (own.statistic == "own")]
        parts = _parts(whole, sweep, effect_sweep)
        removed = random[(random.scope == "all") & (random.statistic == "own")]
        rows += [_dimension(row.masked_emotion, row, parts) for _, row in removed.iterrows()]
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    order = {emotion: k for k, emotion in enumerate(EMOTIONS)}
    return table.sort_values("emotion", key=lambda e: e.map(order), kind="stable",
                             ignore_index=True)
