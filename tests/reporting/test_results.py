"""What a finished run found (emoneuron.reporting.results), read from a fake run directory whose
numbers are known: each emotion's self effect and verdict, neurons per layer, the sweep's self
rows."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import BASELINE, MASKED, N_EVAL, SEEDS, make_run

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.reporting.results import (
    UNTESTED,
    baseline_accuracy,
    layer_counts,
    load_results,
    self_effects,
    sweep_self,
)
from emoneuron.rundir import RunDir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    make_run(tmp_path)
    return tmp_path


def test_the_tables_are_read_and_the_optional_ones_may_be_missing(run_dir: Path) -> None:
    results = load_results(RunDir(run_dir))
    assert set(results.effects.control_set) == {"random"}
    assert len(results.every_control) == len(EMOTIONS) ** 2
    assert results.sweep is not None and results.set_level is not None
    assert results.stability is None and results.baseline_extra is None
    (run_dir / "sweep.csv").unlink()
    (run_dir / "setlevel.csv").unlink()
    results = load_results(RunDir(run_dir))
    assert results.sweep is None and results.set_level is None


def test_effects_without_control_sets_are_refused(run_dir: Path) -> None:
    effects = pd.read_csv(run_dir / "effects.csv").drop(columns="control_set")
    effects.to_csv(run_dir / "effects.csv", index=False)
    refused = re.escape("effects.csv: unreadable (no control_set column)")
    with pytest.raises(UserError, match=refused):
        load_results(RunDir(run_dir))


def test_self_effects_hold_the_run_numbers_and_the_set_level_verdict(run_dir: Path) -> None:
    effects = {effect.emotion: effect for effect in self_effects(load_results(RunDir(run_dir)))}
    assert list(effects) == list(EMOTIONS)
    anger = effects["anger"]
    assert (anger.n, anger.baseline[0], anger.masked[0]) == (N_EVAL, BASELINE["anger"],
                                                              MASKED["anger"])
    # The fixture's three control seeds score 0.02, 0.01 and 0 below the baseline.
    assert anger.n_seeds == len(SEEDS)
    assert anger.control[0] == pytest.approx(BASELINE["anger"] - 0.01)
    assert anger.excess[0] == pytest.approx(BASELINE["anger"] - MASKED["anger"] - 0.02)
    assert (anger.p_value, anger.verdict, anger.beyond) == (0.001, "beyond random sets", True)
    disgust = effects["disgust"]
    assert (disgust.verdict, disgust.beyond) == ("not distinguishable from random sets", False)


def test_without_a_set_level_table_no_emotion_has_a_verdict(run_dir: Path) -> None:
    (run_dir / "setlevel.csv").unlink()
    effects = self_effects(load_results(RunDir(run_dir)))
    assert {effect.verdict for effect in effects} == {UNTESTED}
    assert not any(effect.beyond for effect in effects)
    assert all(math.isnan(effect.p_value) and math.isnan(effect.excess[0]) for effect in effects)


def test_baselines_are_the_unchanged_models_accuracy(run_dir: Path) -> None:
    assert baseline_accuracy(load_results(RunDir(run_dir)).ablation) == pytest.approx(BASELINE)


def test_layer_counts_count_each_emotions_neurons_per_layer() -> None:
    neurons = {"n_layers": 3, "emotions": {"anger": [{"layer": 0}, {"layer": 2}, {"layer": 2}],
                                           "fear": [{"layer": 1}]}}
    counts = layer_counts(neurons)
    assert counts.shape == (len(EMOTIONS), 3)
    assert counts[EMOTIONS.index("anger")].tolist() == [1, 0, 2]
    assert counts[EMOTIONS.index("fear")].tolist() == [0, 1, 0]
    assert counts.sum() == 4
    neurons["emotions"]["fear"] = [{"layer": 3}]
    with pytest.raises(ValueError, match=re.escape("fear neuron in layer 3, outside 0..2")):
        layer_counts(neurons)


def test_sweep_self_keeps_the_masked_emotion_with_its_drop(run_dir: Path, tmp_path: Path
                                                           ) -> None:
    results = load_results(RunDir(run_dir))
    own = sweep_self(results)
    assert own is not None and results.sweep is not None
    assert (own.masked_emotion == own.eval_emotion).all()
    assert len(own) == len(results.sweep) - 1  # the fixture's one cross-emotion row is left out
    assert np.allclose(own["drop"], own.masked_emotion.map(BASELINE) - own.accuracy)
    make_run(tmp_path / "no-sweep", sweep=False)
    assert sweep_self(load_results(RunDir(tmp_path / "no-sweep"))) is None
