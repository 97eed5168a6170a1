"""The ``last`` scope from kept unchanged positions scores exactly as the full pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import FAMILIES

from emoneuron.causal.conditions.grid import grid
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design
from emoneuron.causal.evaluation.classifier import CONTENT_FREE, Classifier
from emoneuron.causal.evaluation.execution import Sources, execute
from emoneuron.causal.evaluation.intervene import Ablation, applied
from emoneuron.causal.evaluation.lastcache import KeptPositions
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.models.adapters import ADAPTERS, DEFAULT_SITE
from emoneuron.models.loading import LoadedModel
from emoneuron.recording.recorder import record
from emoneuron.selection.identify import IdentifyConfig, Neuron, NeuronSets

# Families whose cache has sliding-window layers: they take the full pass.
FALL_BACK = {"gemma3"}
MODES = [("zero", 0.0), ("scale", 0.5), ("amplify", 3.0)]
# The two paths differ by float rounding (5e-7 seen); a padding position left visible, or the
# last token at the batch's longest position, moves the tiny models' scores by 6e-5 or more.
TOLERANCE = 2e-6


def _shots() -> list[Record]:
    return [Record(f"shot-{e}", e, (Turn("A", f"a {e} dialogue"),), "test") for e in EMOTIONS]


def _positions_seen(loaded: LoadedModel) -> tuple[list[int], Callable[[], None]]:
    """The number of positions of every pass through the bottom layer, and the unhook."""
    seen: list[int] = []
    bottom = loaded.adapter.layers(loaded.model)[0]
    handle = bottom.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[1]))
    return seen, handle.remove


def _mixed_batches(classifier: Classifier, records: list[Record], batch_size: int) -> bool:
    """Whether some batch of the classifier's (length-sorted) queries has rows of different
    lengths: only then do wrong padding masks or positions show."""
    queries = [(r, q) for r in records for q in classifier.answers.questions(r)]
    queries += [(CONTENT_FREE, q) for q in classifier.answers.calibration()]
    lengths = sorted(len(classifier.encode(r, q)[0]) for r, q in queries)
    return any(len(set(lengths[k:k + batch_size])) > 1
               for k in range(0, len(lengths), batch_size))


@pytest.mark.parametrize(("mode", "strength"), MODES, ids=[m for m, _ in MODES])
@pytest.mark.parametrize("family", [adapter.family for adapter in ADAPTERS])
def test_last_scope_from_kept_positions_equals_the_full_pass(
        family: str, mode: str, strength: float, make_word_tiny: Callable[[str], LoadedModel],
        records: list[Record]) -> None:
    if family not in FAMILIES:
        pytest.skip("no tiny model of this family in tests/conftest.py")
    loaded = make_word_tiny(family)
    full = Classifier(loaded, _shots(), batch_size=4, last_scope_bytes=0)
    kept = Classifier(loaded, _shots(), batch_size=4)
    assert full.calibrate and _mixed_batches(full, records, 4)
    ablation = Ablation.of({layer: range(0, loaded.width, 2) for layer in range(loaded.n_layers)},
                           mode=mode, strength=strength, tokens="last")
    with applied(loaded, ablation) as scope:
        expected = full.predict(records, scope=scope)
        first = kept.predict(records, scope=scope)  # keeps the unchanged positions
        seen, unhook = _positions_seen(loaded)
        try:
            again = kept.predict(records, scope=scope)  # only each query's last position
        finally:
            unhook()
    np.testing.assert_allclose(first, expected, rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(again, expected, rtol=0, atol=TOLERANCE)
    assert np.abs(expected - full.predict(records)).max() > 50 * TOLERANCE  # the ablation acts
    if family in FALL_BACK:
        assert kept.kept_bytes == 0 and max(seen) > 1
    else:
        assert kept.kept_bytes > 0 and set(seen) == {1}


def test_reusing_lower_layers_is_bypassed_with_the_same_scores(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    loaded = make_word_tiny("llama")
    top = loaded.n_layers - 1
    ablation = Ablation.of({top: range(0, loaded.width, 2)}, mode="zero", tokens="last")
    full = Classifier(loaded, _shots(), batch_size=3, last_scope_bytes=0)
    kept = Classifier(loaded, _shots(), batch_size=3)
    with applied(loaded, ablation) as scope:
        expected = full.predict(records, unchanged_below=top, scope=scope)
        np.testing.assert_allclose(full.predict(records, unchanged_below=top, scope=scope),
                                   expected, rtol=0, atol=TOLERANCE)
        for _ in range(2):
            np.testing.assert_allclose(kept.predict(records, unchanged_below=top, scope=scope),
                                       expected, rtol=0, atol=TOLERANCE)
    assert not any("forward" in vars(layer) for layer in loaded.adapter.layers(loaded.model))


def test_batches_beyond_the_budget_take_the_full_pass(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record]) -> None:
    loaded = make_word_tiny("llama")
    full = Classifier(loaded, _shots(), batch_size=3, last_scope_bytes=0)
    unbounded = Classifier(loaded, _shots(), batch_size=3)
    ablation = Ablation.of({0: range(loaded.width)}, tokens="last")
    with applied(loaded, ablation) as scope:
        expected = full.predict(records, scope=scope)
        unbounded.predict(records, scope=scope)
        budget = unbounded.kept_bytes // 2  # room for some of the batches, not all
        bounded = Classifier(loaded, _shots(), batch_size=3, last_scope_bytes=budget)
        for _ in range(2):
            np.testing.assert_allclose(bounded.predict(records, scope=scope), expected,
                                       rtol=0, atol=TOLERANCE)
            assert 0 < bounded.kept_bytes <= budget
        bounded.predict(records[:3], scope=scope)  # other batches: the older ones make room
        assert 0 < bounded.kept_bytes <= budget
    bounded.forget_reused()
    assert bounded.kept_bytes == 0


def test_kept_positions_drop_the_least_recently_used_of_earlier_calls() -> None:
    kept = KeptPositions(budget=3 * 4 * 8)  # three entries of 8 float32 keys and values

    def entry() -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))]

    kept.start_call()
    for key in "abc":
        assert kept.room_for(32)
        kept.put(key, entry())
    assert not kept.room_for(32)  # all three are this call's
    kept.start_call()
    assert kept.get("a") is not None
    assert kept.room_for(64)  # drops b and c, used longest ago, not a (this call's)
    assert kept.get("b") is None and kept.get("c") is None and kept.bytes == 32
    kept.clear()
    assert kept.bytes == 0 and kept.get("a") is None


def test_last_scope_conditions_predict_alike_and_are_forgotten_after_the_sweep(
        make_word_tiny: Callable[[str], LoadedModel], records: list[Record],
        tmp_path: Path) -> None:
    loaded = make_word_tiny("llama")
    sets = NeuronSets(model=loaded.name, site=DEFAULT_SITE, n_layers=loaded.n_layers,
                      width=loaded.width, config=IdentifyConfig(),
                      emotions={e: [Neuron(k % loaded.n_layers, 3 * k + n, 1.0)
                                    for n in range(8)] for k, e in enumerate(EMOTIONS)})
    conditions = grid(Design(controls=(), proportions=(), dose_strengths=(), tokens="last"))
    sources = Sources(record(loaded, records, progress=False).stats())
    predictions = {}
    for budget in (0, 1 << 30):
        classifier = Classifier(loaded, _shots(), batch_size=4, last_scope_bytes=budget)
        store = ConditionStore(tmp_path / f"{budget}.jsonl", "context")
        seen, unhook = _positions_seen(loaded)
        try:
            execute(classifier, sets, sources, records, conditions, store, progress=False)
        finally:
            unhook()
        assert (1 in seen) == (budget > 0)  # the kept path ran only each query's last token
        assert classifier.kept_bytes == 0  # nothing kept once the sweep is done
        predictions[budget] = {key: entry["predictions"] for key, entry in store.done.items()}
    assert predictions[0] == predictions[1 << 30]
