"""The set-level test of emotion directions (:mod:`emoneuron.causal.experiments.dirtest`): a
direction planted where removing it must matter is found beyond its nulls, one that cannot matter is
not; the nulls are matched in norm; the layers are chosen from identification data only."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import get_args

import pytest
import torch
from planted_words import SIGNATURES, planted

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore
from emoneuron.causal.config import Design, DirectionNull
from emoneuron.causal.evaluation.probe import emotion_labels, residual_features
from emoneuron.causal.evaluation.readout import probe_from
from emoneuron.causal.evaluation.residual import DirectionAblation
from emoneuron.causal.experiments.directions import EmotionDirections
from emoneuron.causal.experiments.dirtest import (
    NULLS,
    DirectionUnits,
    chosen_layers,
    direction_cells,
    probe_rows,
)
from emoneuron.causal.inference.setlevel import SetLevel
from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.models.loading import LoadedModel

MakeTiny = Callable[[str], LoadedModel]
# Residual dimensions of the planted model: each emotion's own, and one nothing writes.
PLANTED = {emotion: 10 + e for e, emotion in enumerate(EMOTIONS)}
DEAD = 31


def test_tested_layers_are_the_probes_best_inner_layers() -> None:
    accuracy = (0.99, 0.4, 0.7, 0.7, 0.5, 1.0)  # the embeddings and the top layer best
    assert chosen_layers(accuracy, 2) == [2, 3]
    assert chosen_layers(accuracy, 9) == [1, 2, 3, 4]
    assert chosen_layers((0.5, 0.6, 0.7)) == [1]
    assert chosen_layers((0.5, 0.6)) == []  # a model of one layer


def test_the_design_names_the_nulls_and_scopes_a_direction_is_tested_at() -> None:
    assert tuple(NULLS) == get_args(DirectionNull)
    design = Design(null_sets=3, direction_nulls=("random",), direction_scopes=("all",))
    cells = direction_cells(design, "random")
    assert [cell[0].masked_emotion for cell in cells] == list(EMOTIONS)
    assert {c.tokens for cell in cells for c in cell} == {"all"}
    assert [len(cell) for cell in cells] == [1 + 3] * len(EMOTIONS)
    full = direction_cells(Design(null_sets=3), "shuffled")
    assert {c.tokens for cell in full for c in cell} == {"all", "dialogue", "last"}
    assert len(full) == 3 * len(EMOTIONS)
    assert {c.control for cell in full for c in cell[1:]} == {"shuffled"}


def _units(directions: EmotionDirections, layers: tuple[int, ...]) -> DirectionUnits:
    features = torch.randn(24, directions.n_layers, directions.centre.shape[1],
                           generator=torch.Generator().manual_seed(0))
    return DirectionUnits(directions, features, torch.arange(24) % 6, layers)


def test_null_directions_are_matched_in_norm_and_removed_alike() -> None:
    real = EmotionDirections.fit(torch.randn(30, 4, 8), torch.arange(30) % 6)
    units = _units(real, (1, 2))
    for seed in range(3):
        null = units.null("random", seed)
        torch.testing.assert_close(null.difference.norm(dim=-1), real.difference.norm(dim=-1))
        assert units.null("random", seed) is null  # drawn once
        assert not torch.allclose(null.unit, real.unit)
    shuffled = units.null("shuffled", 0)
    assert shuffled.source == "shuffled labels (seed 0)"
    for kind, control in (("mask", ""), ("control", "random"), ("control", "shuffled")):
        edit = units.intervention(Condition(kind, "fear", seed=1, control=control,
                                            tokens="dialogue"))
        assert isinstance(edit, DirectionAblation) and edit.tokens == "dialogue"
        assert [layer for layer, _ in edit.directions] == [1, 2]
        for _, vector in edit.directions:  # a unit direction, whatever the norm it stands for
            assert torch.tensor(vector).norm() == pytest.approx(1.0)
    with pytest.raises(UserError, match="unknown null"):
        units.null("frequency", 0)


def _planted_model(make_word_tiny: MakeTiny) -> LoadedModel:
    """A copy of the tiny llama (word tokenizer) whose residual dimension ``PLANTED[e]`` holds
    1 at each token of emotion e's signature word and 0 elsewhere, at every layer, and whose
    dimension DEAD is always 0. The signature words' embeddings are one vector but for their
    own dimension; no block reads or writes these dimensions (their columns of q, k, v, gate
    and up and their rows of o and down are zeroed), so each emotion is carried by its
    dimension alone, and removing that dimension's direction at layer 1 removes it above."""
    loaded = make_word_tiny("llama")
    model = copy.deepcopy(loaded.model)
    ids = {e: loaded.tokenizer.convert_tokens_to_ids(SIGNATURES[e]) for e in EMOTIONS}
    assert loaded.tokenizer.unk_token_id not in ids.values()
    isolated = [*PLANTED.values(), DEAD]
    with torch.no_grad():
        embedding = model.model.embed_tokens.weight
        embedding[list(ids.values())] = embedding[ids[EMOTIONS[0]]].clone()
        embedding[:, isolated] = 0
        for emotion, token in ids.items():
            embedding[token, PLANTED[emotion]] = 1.0
        for layer in model.model.layers:
            attention, mlp = layer.self_attn, layer.mlp
            for reads in (attention.q_proj, attention.k_proj, attention.v_proj, mlp.gate_proj,
                          mlp.up_proj):
                reads.weight[:, isolated] = 0
            for writes in (attention.o_proj, mlp.down_proj):
                writes.weight[isolated] = 0
    return dataclasses.replace(loaded, model=model, name="tiny-planted")


def _probe_test(loaded: LoadedModel, dimensions: list[int], store: Path,
                nulls: tuple[DirectionNull, ...] = get_args(DirectionNull)
                ) -> dict[str, dict[str, SetLevel]]:
    """The probe's set-level test of directions that are, at residual layer 1, the unit
    vectors of ``dimensions`` (one per emotion), on the planted dialogues, against
    ``nulls``."""
    identify, held_out = planted(16, seed=0), planted(8, seed=1)
    train, labels = residual_features(loaded, identify), emotion_labels(identify)
    probe = probe_from(train, labels, residual_features(loaded, held_out),
                       emotion_labels(held_out))
    assert min(probe.held_out_accuracy[1:]) > 0.9  # the planted dimensions carry the emotion
    fitted = EmotionDirections.fit(train, labels)
    vectors = fitted.difference.clone()
    vectors[:, 1] = 0
    vectors[list(range(len(EMOTIONS))), 1, dimensions] = 1.0
    directions = EmotionDirections(vectors, fitted.centre, fitted.neutral_components)
    units = DirectionUnits(directions, train, labels, (1,))
    design = Design(null_sets=8, futility_look=0, second_look=0, direction_nulls=nulls)
    return probe_rows(loaded, probe, held_out, design, units, ConditionStore(store, "test"))


def test_a_planted_direction_is_beyond_its_nulls_and_a_dead_one_is_not(
        make_word_tiny: MakeTiny, tmp_path: Path) -> None:
    """Planted: each emotion's direction is the dimension that alone carries it, so removing
    it must lower the probe's accuracy on its dialogues (all but the emotion the probe names,
    at each layer, when no signature is seen: at most two); dead: a dimension nothing writes,
    so removing it cannot change anything."""
    loaded = _planted_model(make_word_tiny)
    found = _probe_test(loaded, [PLANTED[e] for e in EMOTIONS], tmp_path / "planted.jsonl")
    nothing = _probe_test(loaded, [DEAD] * len(EMOTIONS), tmp_path / "dead.jsonl",
                          ("random",))
    assert set(found) == set(NULLS) and set(nothing) == {"random"}
    for null in NULLS:
        assert set(found[null]) == set(EMOTIONS)
        beyond = [e for e, test in found[null].items()
                  if test.excess.estimate > 0.3 and test.p_value < 0.05 / len(EMOTIONS)]
        assert len(beyond) >= len(EMOTIONS) - 2, (null, found[null])
    for test in nothing["random"].values():
        assert test.observed == 0  # the dead direction changes no prediction
        assert not (test.excess.estimate > 0 and test.p_value < 0.05)
