"""Duplicate detection across and within data sets, leak refusal, splits that keep repeats together,
and the stats and overlap commands."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emoneuron.cli import main
from emoneuron.data.dedup import (
    check_leaks,
    duplicate_groups,
    near_pairs,
    normalise,
    overlap,
    shingles,
)
from emoneuron.data.schema import EMOTIONS, NEUTRAL, Record, Turn, write_records
from emoneuron.data.split import split
from emoneuron.data.summary import describe
from emoneuron.errors import UserError

WORDS = [f"w{i}" for i in range(12)]


def _record(id_: str, *texts: str, emotion: str = "anger", **meta: object) -> Record:
    return Record(id_, emotion, tuple(Turn("AB"[i % 2], t) for i, t in enumerate(texts)),
                  source="test", meta=dict(meta))


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    return len(a & b) / len(a | b)


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("It\u2019s  FINE, isn't it?!") == normalise("it s fine isn t it")
    assert normalise("\uff21bc") == "abc"  # full-width letters fold to ASCII (NFKC)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.sampled_from(WORDS), min_size=1, max_size=14), min_size=2,
                max_size=18),
       st.sampled_from([0.5, 0.75, 0.9, 1.0]))
def test_near_pairs_find_exactly_the_pairs_above_the_threshold(texts: list[list[str]],
                                                               threshold: float) -> None:
    sets = [shingles(" ".join(words)) for words in texts]
    brute = {(i, j) for i, j in itertools.combinations(range(len(sets)), 2)
             if _jaccard(sets[i], sets[j]) >= threshold}
    assert set(near_pairs(sets, threshold)) == brute
    half = len(sets) // 2
    cross = {(i, j) for i in range(half) for j in range(len(sets) - half)
             if _jaccard(sets[i], sets[half + j]) >= threshold}
    assert set(near_pairs(sets[:half], threshold, sets[half:])) == cross


def test_overlap_counts_exact_near_and_whole_dialogues() -> None:
    long = ("the train to the coast was late again and we missed the whole concert tonight "
            "so we sat in the station cafe with cold tea until the last bus came at midnight")
    # 31 words, one differs at the end: 28 of 30 word 3-grams shared, Jaccard 0.93
    first = [_record("a0", "Hello there.", dialogue="x", utterance=0),
             _record("a1", "Hello there.", "How are you?", dialogue="x", utterance=1),
             _record("a2", long + " sadly", dialogue="y", utterance=0),
             _record("a3", "Unrelated words entirely.")]
    second = [_record("b0", "hello   there", dialogue="p", utterance=0),
              _record("b1", "Hello there.", "How are you?", dialogue="p", utterance=1),
              _record("b2", long + " badly", dialogue="q", utterance=0)]
    found = overlap(first, second)
    assert (found.exact_first, found.exact_second, found.exact_texts) == (2, 2, 2)
    assert (found.near_first, found.near_second) == (1, 1)
    assert found.dialogues_normalised == 1  # x == p once punctuation and case are ignored
    assert found.dialogues_verbatim == 0  # "hello   there" is not verbatim "Hello there."
    assert ("a0", "b0") in found.examples and ("a2", "b2") in found.examples
    assert found.leaks == 3


def test_check_leaks_refuses_unless_allowed() -> None:
    identify = [_record("i1", "I cannot believe you did that to me."),
                _record("i2", "Nothing in common.")]
    evaluate = [_record("e1", "I cannot believe you did that to me!"),
                _record("e2", "Something else.")]
    with pytest.raises(UserError, match=r"1 evaluation records repeat identification records "
                                        r"\(1 exact, 0 near.*'e1' ~ 'i1'"):
        check_leaks(identify, evaluate)
    assert check_leaks(identify, evaluate, allow_leaks=True).exact_second == 1
    assert check_leaks(identify, evaluate[1:]).leaks == 0


def test_duplicate_groups_join_repeats_and_dialogue_windows() -> None:
    records = [_record("r0", "Same text."), _record("r1", "same text"),
               _record("r2", "One", dialogue="d"), _record("r3", "Two", dialogue="d"),
               _record("r4", "Alone.")]
    groups = duplicate_groups(records)
    assert groups[0] == groups[1] and groups[2] == groups[3]
    assert len(set(groups)) == 3


def _pool(per_emotion: int, repeats: int, seed: int) -> list[Record]:
    rng = random.Random(seed)
    records = []
    for emotion in EMOTIONS:
        for i in range(per_emotion):
            text = f"{emotion} story {i} " + " ".join(rng.choice(WORDS) for _ in range(12))
            records += [_record(f"{emotion}-{i}-{k}", text, emotion=emotion)
                        for k in range(1 if i % 3 else repeats)]
    return records


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_split_keeps_repeated_dialogues_out_of_evaluation(seed: int) -> None:
    records = _pool(per_emotion=12, repeats=3, seed=seed)
    parts = split(records, 0.4, seed=seed)
    assert overlap(parts.identify + parts.fewshot, parts.evaluate).leaks == 0
    assert sorted(r.id for r in parts.fewshot + parts.identify + parts.evaluate) == sorted(
        r.id for r in records)
    # Allowing leaks gives the plain stratified split, repeats and all.
    leaky = split(records, 0.4, seed=seed, allow_leaks=True)
    assert overlap(leaky.identify + leaky.fewshot, leaky.evaluate).leaks > 0
    # Without repeats in the data, the split is the plain stratified one.
    unique = [r for r in records if r.id.endswith("-0")]
    plain = split(unique, 0.4, seed=seed)
    assert [len(plain.evaluate), len(plain.identify)] == [
        sum(round(len([r for r in unique if r.emotion == e]) * 0.4) for e in EMOTIONS),
        len(unique) - len(EMOTIONS) - len(plain.evaluate)]


def test_split_keeps_windows_of_one_dialogue_together() -> None:
    records = [_record(f"{e}-{d}-{u}", f"{e} dialogue {d} turn {u} with words", emotion=e,
                       dialogue=f"{e}-{d}", utterance=u)
               for e in EMOTIONS for d in range(6) for u in range(2)]
    parts = split(records, 0.4, seed=0)
    identify_dialogues = {r.meta["dialogue"] for r in parts.identify + parts.fewshot}
    assert not identify_dialogues & {r.meta["dialogue"] for r in parts.evaluate}


def test_split_says_when_repeats_leave_too_few_for_evaluation() -> None:
    records = [_record(f"{e}-{i}", f"{e} text {i} here", emotion=e)
               for e in EMOTIONS for i in range(6)]
    # Every fear dialogue is a copy of one text: it cannot be split without a leak.
    records = [r if r.emotion != "fear" else _record(r.id, "The very same fear line.",
                                                     emotion="fear") for r in records]
    with pytest.raises(UserError,
                       match=r"'fear' has 6 dialogues in 1 group\(s\) that each stay on one side"):
        split(records, 0.4, seed=0, source="copies.jsonl")


def test_describe_counts_and_lengths() -> None:
    records = [_record("a", "Hi.", "Hello!", emotion="anger"),
               _record("b", "Mm.", emotion=NEUTRAL),
               Record("c", "fear", (Turn("A", "Run"),), source="other")]
    summary = describe(records)
    assert summary["emotions"] == {**dict.fromkeys(EMOTIONS, 0), "anger": 1, "fear": 1,
                                   NEUTRAL: 1}
    assert summary["sources"] == {"test": 2, "other": 1}
    assert summary["turns"] == {"min": 1, "median": 1, "max": 2}
    assert summary["characters"] == {"min": 3, "median": 3, "max": 9}


def test_cli_stats_and_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    write_records(first, [_record("a1", "Shared line.", dialogue="d", utterance=0),
                          _record("a2", "Only here.", emotion="fear", template="t")])
    write_records(second, [_record("b1", "shared line", dialogue="e", utterance=0,
                                   template="t"),
                           _record("b2", "Elsewhere.", template="u")])
    assert main(["data", "stats", str(first)]) == 0
    table = capsys.readouterr().out
    assert "2 records" in table and "fear                1   50.0%" in table
    assert main(["data", "stats", str(first), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["emotions"]["anger"] == 1
    assert main(["data", "overlap", str(first), str(second)]) == 0
    text = capsys.readouterr().out
    assert "exact duplicates (normalised text): 1 / 1 records" in text
    assert "dialogues in both: 0 verbatim, 1 after normalising" in text
    assert f"meta.template: 1 of 2 distinct values also in {first} (1 records of" in text
    assert main(["data", "overlap", str(first), str(second), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["examples"] == [["a1", "b1"]]
    assert found["templates"] == {"template": {"values": 2, "shared": 1, "records": 1}}
    assert main(["data", "overlap", str(first), str(second), "--threshold", "0"]) == 2
    assert "threshold 0.0 must be in (0, 1]" in capsys.readouterr().err
