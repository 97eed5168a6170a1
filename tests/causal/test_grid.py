"""Layer thirds and the condition grid."""

from __future__ import annotations

from collections import Counter

import pytest

from emoneuron.causal.conditions.grid import Condition, grid
from emoneuron.causal.config import DEFAULT_PROPORTIONS, LAYER_RANGES, Design, in_range
from emoneuron.data.schema import EMOTIONS

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
