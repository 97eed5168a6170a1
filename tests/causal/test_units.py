"""The comparison of the two units (:mod:`emoneuron.causal.inference.units`): rows copied from the
run's tables, each against its own null, and the number of neurons that match a direction."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from emoneuron.causal.inference.units import unit_comparison
from emoneuron.data.schema import EMOTIONS

# Own drop of each emotion's whole set (its size 40) and of its direction, at every position.
SET_DROP = {"anger": 0.30, "disgust": 0.05, "fear": 0.20, "happiness": 0.10, "sadness": 0.0,
            "surprise": 0.25}
DIRECTION_DROP = {"anger": 0.15, "disgust": 0.10, "fear": 0.0, "happiness": 0.05,
                  "sadness": 0.2, "surprise": 0.25}


def _set_level(drops: dict[str, float], size_column: str, size: int,
               **columns: object) -> pd.DataFrame:
    rows = []
    for scope in ("all", "dialogue", "last"):
        for statistic in ("own", "probe"):
            for emotion, drop in drops.items():
                rows.append({**columns, "scope": scope, "statistic": statistic,
                             "masked_emotion": emotion, size_column: size, "set_drop": drop,
                             "random_mean_drop": 0.01, "excess": drop - 0.01,
                             "ci_low": drop - 0.1, "ci_high": drop + 0.1, "p_holm": 0.2,
                             "verdict": "not distinguishable from random sets",
                             "beyond": emotion == "anger"})
    return pd.DataFrame(rows)


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    own = _set_level(SET_DROP, "n_neurons", 40, run_method=True, method="lape")
    other = _set_level({e: 0.9 for e in EMOTIONS}, "n_neurons", 40, run_method=False,
                       method="auroc")
    random = _set_level(DIRECTION_DROP, "n_layers", 3, null="random",
                        method="direction vs random directions")
    shuffled = _set_level({e: 0.9 for e in EMOTIONS}, "n_layers", 3, null="shuffled",
                          method="direction vs shuffled-label directions")
    return pd.concat([own, other]), pd.concat([random, shuffled])


# Parts of the sets evaluated: a sweep's top 10 and 20 neurons (all layers), an effect sweep's
# top 30. A part in one third of the layers, or evaluated on another emotion, is no top-ranked
# part of the set on its own emotion: at 5 neurons it would be every emotion's answer.
SWEEP = pd.DataFrame([
    *({"masked_emotion": e, "layer_range": "all", "n_masked": n, "eval_emotion": e, "drop": d}
      for e, parts in {"anger": [(10, 0.10), (20, 0.16)], "surprise": [(10, 0.0), (20, 0.1)],
                       "happiness": [(10, 0.05), (20, 0.2)]}.items()
      for n, d in parts),
    *({"masked_emotion": e, "layer_range": r, "n_masked": 5, "eval_emotion": other,
       "drop": 0.9}
      for e in EMOTIONS for r, other in (("bottom", e), ("all", "anger" if e != "anger"
                                                          else "fear")))])
EFFECT_SWEEP = pd.DataFrame([{"masked_emotion": "surprise", "layer_range": "all",
                              "proportion": 0.75, "n_neurons": 30, "set_drop": 0.25}])


def test_each_unit_is_read_against_its_own_random_null() -> None:
    set_level, directions = _tables()
    units = unit_comparison(set_level, directions)
    removal = units[units.effect == "removal"]
    assert set(removal.unit) == {"neurons", "direction"}
    assert len(removal) == 2 * 3 * 2 * len(EMOTIONS)  # units x scopes x statistics x emotions
    assert (removal.observed < 0.9).all()  # neither another method's sets nor shuffled labels
    direction = removal[removal.unit == "direction"]
    assert (direction["size"] == 3).all() and set(direction.null) == {
        "random unit directions in the directions' subspace"}
    assert removal.beyond.tolist() == (removal.emotion == "anger").tolist()
    assert list(dict.fromkeys(units.emotion)) == list(EMOTIONS)
    assert not (units.effect == "steering").any()  # no judged steering given


def test_the_dimension_is_the_fewest_top_neurons_that_reach_the_direction() -> None:
    set_level, directions = _tables()
    units = unit_comparison(set_level, directions, sweep=SWEEP, effect_sweep=EFFECT_SWEEP)
    dimension = units[units.effect == "dimension"].set_index("emotion")
    assert len(dimension) == len(EMOTIONS)
    assert dimension.loc["anger", "size"] == 20  # 0.16 reaches 0.15; 0.10 does not
    assert dimension.loc["happiness", "size"] == 10  # a part reaches it exactly
    assert dimension.loc["surprise", "size"] == 30  # the effect sweep's part, not the set
    assert math.isnan(dimension.loc["disgust", "size"])  # the whole set drops 0.05 < 0.10
    assert "not reached" in dimension.loc["disgust", "note"]
    assert "40 neurons" in dimension.loc["disgust", "note"]
    assert math.isnan(dimension.loc["fear", "size"])  # the direction removes nothing
    assert dimension.loc["fear", "note"].startswith("not computed")
    assert dimension.loc["anger", "observed"] == pytest.approx(0.16)
    assert not (dimension["size"] == 5).any()


def test_steering_rows_keep_their_tables_verdicts() -> None:
    set_level, directions = _tables()
    steering = pd.DataFrame([
        {"unit": unit, "judge": judge, "emotion": e, "size": 3, "null": f"{unit} nulls",
         "share": 0.5, "null_mean_share": 0.2, "excess": 0.3, "ci_low": 0.1, "ci_high": 0.5,
         "p_holm": 0.01, "verdict": "steers toward the emotion beyond random",
         "toward": e == "fear"}
        for unit in ("neurons", "direction") for judge in ("probe", "lexicon")
        for e in EMOTIONS])
    units = unit_comparison(set_level, directions, steering)
    rows = units[units.effect == "steering"]
    assert len(rows) == 2 * 2 * len(EMOTIONS) and set(rows.statistic) == {"probe", "lexicon"}
    assert rows.beyond.tolist() == (rows.emotion == "fear").tolist()
    assert set(rows.null) == {"neurons nulls", "direction nulls"}
