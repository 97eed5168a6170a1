"""Stratified, seeded splits: disjoint, sized by the formula, reproducible, refusing too little."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.data.split import Splits, split
from emoneuron.errors import UserError

# Uneven on purpose: 10 * 0.25 = 2.5 and 6 * 0.25 = 1.5 exercise the rounding.
SIZES = {"anger": 10, "disgust": 7, "fear": 12, "happiness": 8, "sadness": 9, "surprise": 6}


def _make(sizes: dict[str, int]) -> list[Record]:
    records = []
    for emotion, size in sizes.items():
        records += [Record(f"{emotion}-{i}", emotion, (Turn("A", f"{emotion} line {i}"),))
                    for i in range(size)]
    return records


def _ids(records: list[Record]) -> list[str]:
    return [r.id for r in records]


def _expected(size: int, eval_fraction: float, fewshot: int) -> tuple[int, int, int]:
    """(fewshot, identify, eval) for one emotion, as split.py sizes them."""
    n_eval = round(size * eval_fraction)
    return fewshot, size - fewshot - n_eval, n_eval


def test_splits_are_disjoint_and_cover_everything() -> None:
    records = _make(SIZES)
    parts = split(records, 0.25, seed=0)
    fewshot, identify, evaluate = map(set, map(_ids, (parts.fewshot, parts.identify,
                                                      parts.evaluate)))
    assert not fewshot & identify
    assert not fewshot & evaluate
    assert not identify & evaluate
    assert fewshot | identify | evaluate == set(_ids(records))
    # No record appears twice inside one split either.
    total = len(parts.fewshot) + len(parts.identify) + len(parts.evaluate)
    assert total == len(records)


@pytest.mark.parametrize(("eval_fraction", "fewshot"), [(0.25, 1), (0.4, 1), (0.3, 2)])
def test_per_emotion_counts_follow_the_formula(eval_fraction: float, fewshot: int) -> None:
    parts = split(_make(SIZES), eval_fraction, seed=3, fewshot_per_emotion=fewshot)
    counts = [Counter(r.emotion for r in part)
              for part in (parts.fewshot, parts.identify, parts.evaluate)]
    for emotion, size in SIZES.items():
        got = tuple(count[emotion] for count in counts)
        assert got == _expected(size, eval_fraction, fewshot), emotion
    # Every record in a split keeps its own label (nothing is relabelled on the way).
    for part in (parts.fewshot, parts.identify, parts.evaluate):
        assert all(r.id.startswith(r.emotion + "-") for r in part)


def test_counts_pinned_for_one_case() -> None:
    parts = split(_make(SIZES), 0.4, seed=0)
    assert parts.counts() == {
        "fewshot": dict.fromkeys(EMOTIONS, 1),
        "identify": {"anger": 5, "disgust": 3, "fear": 6, "happiness": 4, "sadness": 4,
                     "surprise": 3},
        "eval": {"anger": 4, "disgust": 3, "fear": 5, "happiness": 3, "sadness": 4,
                 "surprise": 2},
    }


def _as_ids(parts: Splits) -> tuple[list[str], list[str], list[str]]:
    return _ids(parts.fewshot), _ids(parts.identify), _ids(parts.evaluate)


def test_same_seed_same_splits_in_same_order() -> None:
    records = _make(SIZES)
    assert _as_ids(split(records, 0.3, seed=11)) == _as_ids(split(list(records), 0.3, seed=11))


def test_different_seed_gives_different_splits() -> None:
    records = _make(SIZES)
    first = split(records, 0.3, seed=1)
    second = split(records, 0.3, seed=2)
    assert set(_ids(first.evaluate)) != set(_ids(second.evaluate))
    assert _as_ids(first) != _as_ids(second)


def test_split_does_not_reorder_the_callers_list() -> None:
    records = _make(SIZES)
    before = _ids(records)
    split(records, 0.3, seed=5)
    assert _ids(records) == before


def test_emotions_are_interleaved_in_identify_and_eval() -> None:
    parts = split(_make(SIZES), 0.4, seed=0)
    for part in (parts.identify, parts.evaluate):
        emotions = [r.emotion for r in part]
        # Not grouped: more label changes than the 5 a grouped list would have.
        changes = sum(a != b for a, b in pairwise(emotions))
        assert changes > len(EMOTIONS) - 1


@pytest.mark.parametrize(("size", "eval_fraction"), [(4, 0.5), (2, 0.5), (3, 0.25), (0, 0.3)])
def test_too_few_dialogues_names_the_emotion(size: int, eval_fraction: float) -> None:
    sizes = {**SIZES, "surprise": size}
    with pytest.raises(UserError) as caught:
        split(_make(sizes), eval_fraction, seed=0, source="mydata.jsonl")
    message = str(caught.value)
    assert "'surprise'" in message
    assert "mydata.jsonl" in message
    assert f"has {size} dialogues" in message


def test_smallest_accepted_emotion() -> None:
    # 5 dialogues at 0.5: round(2.5) = 2 eval, 1 few-shot, 2 identification.
    sizes = dict.fromkeys(EMOTIONS, 5)
    parts = split(_make(sizes), 0.5, seed=0)
    assert len(parts.fewshot) == 6
    assert len(parts.identify) == 12
    assert len(parts.evaluate) == 12


@pytest.mark.parametrize("eval_fraction", [0.0, 1.0, -0.2, 1.5, float("nan")])
def test_eval_fraction_outside_unit_interval_is_refused(eval_fraction: float) -> None:
    with pytest.raises(UserError, match="eval fraction"):
        split(_make(SIZES), eval_fraction, seed=0)
