"""effects.csv and ablation.csv built from a store of hand-made predictions: intervals that do
not depend on the control row, control sizes, the test against one seed, power and chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emoneuron.causal.conditions.grid import Condition, grid
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.causal.inference.significance import mcnemar_exact
from emoneuron.causal.inference.tables import ablation_tables
from emoneuron.data.schema import EMOTIONS, Record, Turn

PER_EMOTION = 15
EVALUATION = [Record(f"{emotion}-{k}", emotion, (Turn("A", "..."),), "test")
              for k in range(PER_EMOTION) for emotion in EMOTIONS]
SET = Ablation.of({0: [0, 1], 1: [2]})
MATCHED = Ablation.of({0: [5, 6], 1: [7]})
UNMATCHED = Ablation.of({0: [5, 6, 7]})  # as many neurons, all in one layer


def _predictions(condition: Condition) -> np.ndarray:
    """Right on every dialogue except: sadness right on 3 of 15 (near chance) everywhere;
    masking anger loses 6 anger dialogues; random control seed s loses anger dialogue s."""
    subset = [r for r in EVALUATION if r.emotion in condition.eval_emotions]
    predicted = []
    for record in subset:
        truth, k = EMOTIONS.index(record.emotion), int(record.id.split("-")[1])
        wrong = ((record.emotion == "sadness" and k >= 3)
                 or (record.emotion == "anger" and condition.masked_emotion == "anger"
                     and (k < 6 if condition.kind == "mask"
                          else condition.control == "random" and k == condition.seed)))
        predicted.append((truth + 1) % len(EMOTIONS) if wrong else truth)
    return np.array(predicted)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    conditions = grid(Design(control_seeds=(0, 1, 2), controls=("random", "least"),
                             proportions=(), dose_strengths=()))
    store = ConditionStore(Path(tmp_path_factory.mktemp("tables")) / "conditions.jsonl", "t")
    for condition in conditions:
        ablation = (SET if condition.kind == "mask" else UNMATCHED if condition.control == "least"
                    else MATCHED if condition.kind == "control" else Ablation.of({}))
        store.add(condition, ablation, _predictions(condition))
    return ablation_tables(store, EVALUATION, conditions)


def _self(effects: pd.DataFrame, emotion: str) -> pd.DataFrame:
    rows = effects[(effects.masked_emotion == emotion) & (effects.eval_emotion == emotion)]
    return rows.set_index("control_set")


def test_mask_drop_interval_is_the_same_in_every_control_row(
        tables: dict[str, pd.DataFrame]) -> None:
    effects = tables["effects"]
    for (masked, evaluated), rows in effects.groupby(["masked_emotion", "eval_emotion"]):
        columns = ["mask_drop", "mask_drop_ci_low", "mask_drop_ci_high"]
        assert (rows[columns].nunique() == 1).all(), (masked, evaluated)


def test_control_size_and_layer_matching(tables: dict[str, pd.DataFrame]) -> None:
    anger = _self(tables["effects"], "anger")
    assert (anger.n_masked == 3).all() and (anger.n_control == 3.0).all()
    assert bool(anger.loc["random", "control_layer_matched"])
    assert not bool(anger.loc["least", "control_layer_matched"])


def test_intervals_keep_a_width_when_nothing_changes(tables: dict[str, pd.DataFrame]) -> None:
    ablation = tables["ablation"]
    fear = ablation[(ablation.condition == "mask") & (ablation.masked_emotion == "fear")
                    & (ablation.eval_emotion == "fear")].iloc[0]
    # 15/15 right before and after: Wilson [0.80, 1], Tango [-0.20, 0.20].
    assert fear.accuracy == 1.0 and fear.ci_low == pytest.approx(0.796, abs=1e-3)
    assert fear.drop_ci_low == pytest.approx(-0.204, abs=1e-3)
    assert fear.drop_ci_high == pytest.approx(0.204, abs=1e-3)


def test_one_seed_control_is_tested_with_mcnemar(tables: dict[str, pd.DataFrame]) -> None:
    anger = _self(tables["effects"], "anger")
    masked = np.r_[np.zeros(6), np.ones(9)]
    assert anger.loc["least", "p_exact_control"] == pytest.approx(
        mcnemar_exact(masked, np.ones(15)))
    # Three random seeds each lose one of the six dialogues the set loses.
    assert anger.loc["random", "excess_drop"] == pytest.approx(6 / 15 - 1 / 15)
    assert anger.loc["random", "excess_ci_low"] > 0


def test_power_and_near_chance(tables: dict[str, pd.DataFrame]) -> None:
    effects, ablation = tables["effects"], tables["ablation"]
    sadness, anger = _self(effects, "sadness").iloc[0], _self(effects, "anger").iloc[0]
    assert bool(sadness.near_chance)
    assert sadness.power_note == "cannot show a drop (baseline near chance)"
    assert not bool(anger.near_chance)
    # 15 right answers: losing each with probability q, P(at least 8 lost) = 0.8 at q ~ 0.6.
    assert 0.5 < anger.min_detectable_drop < 0.7
    assert anger.power_note.startswith("no drop larger than")
    cross = effects[effects.masked_emotion != effects.eval_emotion]
    assert cross.min_detectable_drop.isna().all()
    assert set(ablation[ablation.eval_emotion == "sadness"].near_chance) == {True}
    assert set(ablation[ablation.eval_emotion != "sadness"].near_chance) == {False}
