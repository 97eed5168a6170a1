"""The resumable condition store."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emoneuron.causal.conditions.grid import Condition
from emoneuron.causal.conditions.store import ConditionStore, stored_layer_counts
from emoneuron.causal.evaluation.intervene import Ablation
from emoneuron.errors import UserError

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
        assert stored_layer_counts(entry) == ({0: 4 * number, 3: 6 * number} if number else {})
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


def test_entries_stored_without_layer_counts_still_load(tmp_path: Path) -> None:
    path = tmp_path / "conditions.jsonl"
    _fill(path, CONDITIONS[:2])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in lines:
        del entry["layer_counts"]
    path.write_text("".join(json.dumps(entry) + "\n" for entry in lines))
    reopened = ConditionStore(path, "h1")
    assert [stored_layer_counts(entry) for entry in reopened.done.values()] == [None, None]
    assert reopened.done[CONDITIONS[1].key]["n_masked"] == 10
