"""Layer thirds, the condition grid, which neurons a condition removes, the resumable store."""

from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from emoneuron.causal.config import LAYER_RANGES, in_range
from emoneuron.causal.intervene import Ablation
from emoneuron.causal.sweep import (
    DEFAULT_PROPORTIONS,
    Condition,
    ConditionStore,
    Design,
    Sources,
    ablation_for,
    grid,
    layer_counts,
)
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.models.adapters import ACTIVATION_SITE, DEFAULT_SITE
from emoneuron.recording.statistics import ActivationStats
from emoneuron.selection.controls import ShuffledControl, null_matched
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets

# -- layer ranges ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n_layers", "thirds"), [
    (30, (range(0, 10), range(10, 20), range(20, 30))),
    (18, (range(0, 6), range(6, 12), range(12, 18))),
    (6, (range(0, 2), range(2, 4), range(4, 6))),
])
def test_in_range_splits_the_stack_into_thirds(n_layers: int,
                                               thirds: tuple[range, ...]) -> None:
    for name, layers in zip(("bottom", "middle", "top"), thirds, strict=True):
        assert [layer for layer in range(n_layers) if in_range(layer, n_layers, name)] == \
            list(layers)
    assert all(in_range(layer, n_layers, "all") for layer in range(n_layers))


def test_every_layer_is_in_exactly_one_third() -> None:
    for n_layers in (3, 4, 5, 7, 26, 32, 80):
        for layer in range(n_layers):
            hits = [name for name in ("bottom", "middle", "top")
                    if in_range(layer, n_layers, name)]
            assert len(hits) == 1, (n_layers, layer)
        assert in_range(0, n_layers, "bottom")
        assert in_range(n_layers - 1, n_layers, "top")


# -- grid --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sweep_eval", ["self", "all"])
@pytest.mark.parametrize("seeds", [(0, 1, 2), (5,)])
def test_grid_composition(seeds: tuple[int, ...], sweep_eval: str) -> None:
    proportions = DEFAULT_PROPORTIONS
    assert 1.0 in proportions
    conditions = grid(Design(seeds, ("random",), proportions=proportions, sweep_eval=sweep_eval,
                             dose_strengths=()))
    n_sweep = len(EMOTIONS) * (len(LAYER_RANGES) * len(proportions) - 1)
    n_proportion_controls = 6 * (len(proportions) - 1)
    assert len(conditions) == 1 + 6 + 6 * len(seeds) + n_proportion_controls + n_sweep
    keys = [c.key for c in conditions]
    assert len(set(keys)) == len(keys)

    assert [c for c in conditions if c.kind == "baseline"] == [Condition("baseline")]
    main_masks = [c for c in conditions if c.kind == "mask"
                  and (c.layer_range, c.proportion) == ("all", 1.0)]
    assert [c.masked_emotion for c in main_masks] == list(EMOTIONS)
    assert all(c.eval_emotions == EMOTIONS for c in main_masks)
    controls = [c for c in conditions if c.kind == "control" and c.proportion == 1.0]
    assert Counter((c.masked_emotion, c.seed) for c in controls) == {
        (e, s): 1 for e in EMOTIONS for s in seeds}
    assert all((c.layer_range, c.proportion, c.eval_emotions) == ("all", 1.0, EMOTIONS)
               for c in controls)

    sweep = [c for c in conditions if c.kind == "mask" and c not in main_masks]
    assert len(sweep) == n_sweep
    cells = Counter((c.masked_emotion, c.layer_range, c.proportion) for c in sweep)
    assert set(cells.values()) == {1}
    assert ("anger", "all", 1.0) not in cells
    assert ("anger", "all", 0.8) in cells
    assert ("anger", "bottom", 1.0) in cells
    for c in sweep:
        expected = (c.masked_emotion,) if sweep_eval == "self" else EMOTIONS
        assert c.eval_emotions == expected


def test_grid_without_sweep_or_controls() -> None:
    conditions = grid(Design((), controls=(), proportions=(), dose_strengths=()))
    assert [c.kind for c in conditions] == ["baseline"] + ["mask"] * 6


def test_grid_without_full_proportion_keeps_every_cell() -> None:
    conditions = grid(Design((0,), ("random",), proportions=(0.5,), dose_strengths=()))
    sweep = [c for c in conditions if c.kind == "mask" and c.proportion == 0.5]
    assert len(sweep) == len(EMOTIONS) * len(LAYER_RANGES)


# -- ablation_for ------------------------------------------------------------------------------

N_LAYERS, WIDTH = 6, 20  # thirds of 6 layers: {0, 1}, {2, 3}, {4, 5}
THIRDS = {"bottom": {0, 1}, "middle": {2, 3}, "top": {4, 5}, "all": set(range(N_LAYERS))}
# Anger, ranked best first. Layer 0 holds 8 of its 20 neurons, so a control that did not
# exclude the emotion's own neurons would hit one of them almost always.
ANGER = [(0, 0), (2, 5), (0, 1), (4, 9), (0, 2), (1, 3), (0, 3), (5, 11), (0, 4), (3, 7),
         (0, 5), (0, 6), (2, 8), (0, 7), (4, 2)]
OTHERS = {"disgust": [(0, 10), (1, 3)], "fear": [(2, 5)], "happiness": [],
          "sadness": [(5, 0), (5, 1), (4, 4)], "surprise": [(3, 3)]}


SOURCES = Sources(ActivationStats.zeros(N_LAYERS, WIDTH, DEFAULT_SITE, "dialogue"))


def _neurons(positions: list[tuple[int, int]]) -> list[Neuron]:
    return [Neuron(layer, index, 1.0 - 0.01 * rank)
            for rank, (layer, index) in enumerate(positions)]


@pytest.fixture
def sets() -> NeuronSets:
    emotions = {"anger": _neurons(ANGER), **{e: _neurons(p) for e, p in OTHERS.items()}}
    return NeuronSets(model="toy", site="mlp.down_proj.input", n_layers=N_LAYERS, width=WIDTH,
                      config=IdentifyConfig(), emotions=emotions)


def _pairs(ablation: Ablation) -> list[tuple[int, int]]:
    return [(layer, index) for layer, indices in ablation.neurons for index in indices]


def _per_layer(ablation: Ablation) -> dict[int, int]:
    return {layer: len(indices) for layer, indices in ablation.neurons}


def test_baseline_removes_nothing(sets: NeuronSets) -> None:
    ablation = ablation_for(Condition("baseline"), sets, SOURCES)
    assert ablation.size == 0
    assert ablation.neurons == ()


def test_full_mask_removes_the_whole_set(sets: NeuronSets) -> None:
    ablation = ablation_for(Condition("mask", "anger"), sets, SOURCES)
    assert sorted(_pairs(ablation)) == sorted(ANGER)
    assert ablation.size == len(ANGER)
    assert ablation.mode == "zero"


@pytest.mark.parametrize("layer_range", LAYER_RANGES)
@pytest.mark.parametrize("proportion", [0.1, *DEFAULT_PROPORTIONS])
def test_proportion_takes_the_top_ranked_within_the_range(sets: NeuronSets, layer_range: str,
                                                          proportion: float) -> None:
    in_third = [pos for pos in ANGER if pos[0] in THIRDS[layer_range]]
    count = math.ceil(Fraction(str(proportion)) * len(in_third))
    ablation = ablation_for(Condition("mask", "anger", layer_range, proportion), sets, SOURCES)
    assert sorted(_pairs(ablation)) == sorted(in_third[:count])


def test_pinned_proportion_examples(sets: NeuronSets) -> None:
    # ceil(1.8) of 9, ceil(1.2) of 3, ceil(0.6) of 3
    bottom = ablation_for(Condition("mask", "anger", "bottom", 0.2), sets, SOURCES)
    assert sorted(_pairs(bottom)) == [(0, 0), (0, 1)]
    middle = ablation_for(Condition("mask", "anger", "middle", 0.4), sets, SOURCES)
    assert sorted(_pairs(middle)) == [(2, 5), (3, 7)]
    top = ablation_for(Condition("mask", "anger", "top", 0.2), sets, SOURCES)
    assert _pairs(top) == [(4, 9)]


def test_every_grid_condition_removes_the_expected_count(sets: NeuronSets) -> None:
    for condition in grid(Design((0, 1), ("random",), dose_strengths=())):
        if condition.kind == "baseline":
            continue
        ranked = [n for n in sets.emotions[condition.masked_emotion]
                  if n.layer in THIRDS[condition.layer_range]]
        expected = math.ceil(Fraction(str(condition.proportion)) * len(ranked))
        assert ablation_for(condition, sets, SOURCES).size == expected, condition.key


def _small_null(sets: NeuronSets) -> ShuffledControl:
    """A shuffled-label null that ranks only three neurons at all: far fewer than any set."""
    candidates = torch.zeros(N_LAYERS, WIDTH, dtype=torch.bool)
    candidates[0, [12, 15]] = True
    candidates[5, 19] = True
    score = torch.rand(N_LAYERS, WIDTH, generator=torch.Generator().manual_seed(0))
    neurons, filled = {}, {}
    for e, emotion in enumerate(EMOTIONS):
        neurons[emotion], filled[emotion] = null_matched(
            sets.layer_indices(emotion), sets, emotion, candidates, score,
            np.random.default_rng([0, e]))
    return ShuffledControl(0, neurons, filled)


@pytest.mark.parametrize(("layer_range", "proportion"), [("all", 1.0), ("bottom", 0.6),
                                                         ("all", 0.4)])
def test_shuffled_control_has_the_sets_per_layer_counts_when_the_null_is_smaller(
        sets: NeuronSets, layer_range: str, proportion: float) -> None:
    sources = replace(SOURCES, shuffled={0: _small_null(sets)})
    for emotion in EMOTIONS:
        mask = ablation_for(Condition("mask", emotion, layer_range, proportion), sets, sources)
        control = ablation_for(Condition("control", emotion, layer_range, proportion, seed=0,
                                         control="shuffled"), sets, sources)
        assert _per_layer(control) == _per_layer(mask), emotion
        assert not set(_pairs(control)) & {(n.layer, n.index) for n in sets.emotions[emotion]}
    anger = ablation_for(Condition("control", "anger", seed=0, control="shuffled"), sets,
                         sources)
    assert {12, 15} <= set(dict(anger.neurons)[0])  # the null's own choices come first


def test_interventions_act_at_the_sets_site(sets: NeuronSets) -> None:
    at_activation = replace(sets, site=ACTIVATION_SITE)
    for condition in (Condition("mask", "anger"),
                      Condition("control", "anger", seed=0, control="random")):
        assert ablation_for(condition, at_activation, SOURCES).site == ACTIVATION_SITE


@pytest.mark.parametrize(("layer_range", "proportion"), [("all", 1.0), ("bottom", 0.6),
                                                         ("top", 1.0), ("all", 0.4)])
def test_control_matches_per_layer_counts_and_avoids_own_neurons(
        sets: NeuronSets, layer_range: str, proportion: float) -> None:
    mask = ablation_for(Condition("mask", "anger", layer_range, proportion), sets, SOURCES)
    own = set(ANGER)
    for seed in range(20):
        control = ablation_for(
            Condition("control", "anger", layer_range, proportion, seed=seed, control="random"),
            sets, SOURCES)
        assert _per_layer(control) == _per_layer(mask)
        pairs = _pairs(control)
        assert len(pairs) == len(set(pairs))
        assert not set(pairs) & own, seed
        assert all(0 <= index < WIDTH for _, index in pairs)


def test_control_is_deterministic_per_seed_and_differs_between_seeds(sets: NeuronSets) -> None:
    def control(seed: int) -> Ablation:
        condition = Condition("control", "anger", control="random", seed=seed)
        return ablation_for(condition, sets, SOURCES)

    assert control(3) == control(3)
    assert len({tuple(_pairs(control(seed))) for seed in range(5)}) == 5


def _hundred_neuron_sets() -> NeuronSets:
    anger = [Neuron(0, index, 1.0 - 0.001 * index) for index in range(100)]
    emotions = {e: anger if e == "anger" else [] for e in EMOTIONS}
    return NeuronSets(model="toy", site="s", n_layers=1, width=200, config=IdentifyConfig(),
                      emotions=emotions)


def test_proportion_count_is_not_inflated_by_float_error() -> None:
    condition = Condition("mask", "anger", "all", 0.55)
    ablation = ablation_for(condition, _hundred_neuron_sets(), SOURCES)
    assert ablation.size == 55


# -- ConditionStore ----------------------------------------------------------------------------

CONDITIONS = [Condition("baseline"), Condition("mask", "anger"),
              Condition("control", "anger", control="random", seed=1),
              Condition("mask", "fear", "top", 0.4, eval_emotions=("fear",))]


def _fill(path: Path, conditions: list[Condition], eval_hash: str = "h1") -> ConditionStore:
    store = ConditionStore(path, eval_hash)
    for number, condition in enumerate(conditions):
        ablation = Ablation.of({0: range(4 * number), 3: range(6 * number)})
        store.add(condition, ablation, predicted=np.array([number, 0, 5, number]))
    return store


def test_new_store_is_empty(tmp_path: Path) -> None:
    store = ConditionStore(tmp_path / "conditions.jsonl", "h1")
    assert store.done == {}
    assert not (tmp_path / "conditions.jsonl").exists()


def test_add_then_reopen_keeps_every_entry(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    first = _fill(path, CONDITIONS)
    assert set(first.done) == {c.key for c in CONDITIONS}
    reopened = ConditionStore(path, "h1")
    assert list(reopened.done) == [c.key for c in CONDITIONS]
    for number, condition in enumerate(CONDITIONS):
        entry = reopened.done[condition.key]
        assert entry["predictions"] == [number, 0, 5, number]
        assert entry["n_masked"] == 10 * number
        assert layer_counts(entry) == ({0: 4 * number, 3: 6 * number} if number else {})
        assert entry["kind"] == condition.kind
        assert entry["masked_emotion"] == condition.masked_emotion
        assert entry["layer_range"] == condition.layer_range
        assert entry["proportion"] == condition.proportion
        assert entry["seed"] == condition.seed
        assert tuple(entry["eval_emotions"]) == condition.eval_emotions


def test_one_fsynced_line_per_condition(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS)
    lines = path.read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [c.key for c in CONDITIONS]


def test_torn_final_line_is_ignored_and_removed(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:2])
    with path.open("a") as handle:
        handle.write('{"key": "control/anger/all/1/1/anger,dis')  # killed mid-write
    reopened = ConditionStore(path, "h1")
    assert list(reopened.done) == [c.key for c in CONDITIONS[:2]]
    lines = path.read_text().splitlines()
    assert len(lines) == 2
    assert [json.loads(line)["key"] for line in lines] == [c.key for c in CONDITIONS[:2]]
    # Appending after the clean-up does not glue the new entry onto the torn fragment.
    reopened.add(CONDITIONS[2], Ablation.of({1: [3]}), np.array([1, 2]))
    assert list(ConditionStore(path, "h1").done) == [c.key for c in CONDITIONS[:3]]


def test_torn_final_line_with_newline_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:3])
    with path.open("a") as handle:
        handle.write('{"key": \n')
    assert list(ConditionStore(path, "h1").done) == [c.key for c in CONDITIONS[:3]]


def test_corrupted_middle_line_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:3])
    lines = path.read_text().splitlines()
    lines[1] = lines[1][: len(lines[1]) // 2]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError) as caught:
        ConditionStore(path, "h1")
    assert f"{path}:2:" in str(caught.value)


def test_corrupted_line_before_a_torn_last_line_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:2])
    lines = path.read_text().splitlines()
    # Line 2 is corrupt and is not the last line: the torn line 3 follows it.
    path.write_text(lines[0] + "\nGARBAGE\n" + '{"key": "mask/fe')
    with pytest.raises(UserError):
        ConditionStore(path, "h1")


def test_different_eval_hash_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:2], eval_hash="h1")
    before = path.read_text()
    with pytest.raises(UserError, match="different evaluation data"):
        ConditionStore(path, "h2")
    assert path.read_text() == before  # refused, not rewritten


def test_grid_with_every_control_and_dose() -> None:
    design = Design((0, 1, 2), controls=("random", "frequency", "least", "shuffled"),
                    other_control_seeds=1, proportions=(0.5, 1.0), dose_strengths=(0.0, 0.5, 2.0))
    conditions = grid(design)
    keys = [c.key for c in conditions]
    assert len(set(keys)) == len(keys)
    per_control = Counter(c.control for c in conditions
                          if c.kind == "control" and (c.proportion, c.strength) == (1.0, 0.0))
    assert per_control == {"random": 6 * 3, "frequency": 6, "least": 6, "shuffled": 6}
    dose = [c for c in conditions if c.strength in (0.5, 2.0)]
    assert Counter((c.kind, c.mode) for c in dose) == {
        ("mask", "scale"): 6, ("control", "scale"): 6, ("mask", "amplify"): 6,
        ("control", "amplify"): 6}
    assert all(c.eval_emotions == (c.masked_emotion,) for c in dose)
    proportion_controls = [c for c in conditions if c.kind == "control" and c.proportion == 0.5]
    assert len(proportion_controls) == 6 and {c.seed for c in proportion_controls} == {0}


def test_entries_stored_without_layer_counts_still_load(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:2])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in lines:
        del entry["layer_counts"]
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    reopened = ConditionStore(path, "h1")
    assert [layer_counts(entry) for entry in reopened.done.values()] == [None, None]
    assert reopened.done[CONDITIONS[1].key]["n_masked"] == 10
