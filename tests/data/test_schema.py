"""The record schema: label normalisation, JSONL reading with file:line errors, hashing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoneuron.data.schema import (
    ALIASES,
    EMOTIONS,
    LABELS,
    NEUTRAL,
    Record,
    Turn,
    normalize_emotion,
    read_records,
    records_hash,
    select_classes,
    write_records,
)
from emoneuron.errors import UserError


def _line(id_: str, emotion: str = "anger", text: str = "Hello there.") -> str:
    return json.dumps({"id": id_, "emotion": emotion,
                       "turns": [{"speaker": "A", "text": text}], "source": "test"})


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _records() -> list[Record]:
    return [
        Record("a1", "anger", (Turn("A", "How dare you!"), Turn("B", "Sorry."))),
        Record("h1", "happiness", (Turn("Ana", "Wir haben gewonnen! Ça va, naïve café 😀"),),
               source="custom", meta={"topic": "sport", "n": 3}),
        Record("s1", "sadness", (Turn("A", "I miss her."), Turn("B", "I know."),
                                 Turn("A", "Every day."))),
    ]


# -- labels ------------------------------------------------------------------------------------

def test_canonical_names_map_to_themselves() -> None:
    for emotion in EMOTIONS:
        assert normalize_emotion(emotion) == emotion


@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_every_alias_maps_into_emotions(alias: str) -> None:
    assert ALIASES[alias] in EMOTIONS
    assert normalize_emotion(alias) == ALIASES[alias]


def test_aliases_cover_every_emotion_and_are_not_canonical_names() -> None:
    assert set(ALIASES.values()) == set(EMOTIONS)
    assert not set(ALIASES) & set(EMOTIONS)


@pytest.mark.parametrize(("label", "expected"), [
    ("ANGER", "anger"), ("  Fear\t", "fear"), ("Joy", "happiness"), (" SCARED ", "fear"),
    ("\nSurprised\n", "surprise"), ("sAdNeSs", "sadness"),
])
def test_normalisation_ignores_case_and_whitespace(label: str, expected: str) -> None:
    assert normalize_emotion(label) == expected


@pytest.mark.parametrize(("label", "suggestion"), [("angr", "anger"), ("Suprise", "surprise"),
                                                   ("hapiness", "happiness")])
def test_misspelled_label_gets_a_suggestion(label: str, suggestion: str) -> None:
    with pytest.raises(UserError, match=f"did you mean '{suggestion}'"):
        normalize_emotion(label)


@pytest.mark.parametrize("label", ["calm", "happyish", "", "anger!", "love"])
def test_unknown_label_is_a_user_error_naming_it(label: str) -> None:
    with pytest.raises(UserError) as caught:
        normalize_emotion(label)
    assert repr(label) in str(caught.value)


@pytest.mark.parametrize("label", ["neutral", "No Emotion", " none ", "no_emotion", "NEUTRAL"])
def test_neutral_and_its_aliases_are_their_own_label(label: str) -> None:
    assert normalize_emotion(label) == NEUTRAL
    assert NEUTRAL not in EMOTIONS
    assert LABELS[:-1] == EMOTIONS


@pytest.mark.parametrize("label", ["nuetral", "no emotoin"])
def test_misspelled_neutral_gets_a_suggestion(label: str) -> None:
    with pytest.raises(UserError, match="did you mean 'neutral'"):
        normalize_emotion(label)


def test_select_classes_drops_neutral_unless_a_seventh_class_is_asked_for() -> None:
    records = [Record("n1", NEUTRAL, (Turn("A", "The bus leaves at six."),)),
               *_records(),
               Record.from_json({"id": "n2", "emotion": "no emotion",
                                 "turns": [{"text": "Fine."}]})]
    six, dropped = select_classes(records, include_neutral=False)
    assert dropped == 2
    assert [r.id for r in six] == ["a1", "h1", "s1"]
    seven, dropped = select_classes(records, include_neutral=True)
    assert dropped == 0 and seven == records


# -- reading -----------------------------------------------------------------------------------

GOOD = _line("ok-1")
TURNS = [{"speaker": "A", "text": "hi"}]


@pytest.mark.parametrize(("bad", "fragment"), [
    ('{"id": "x", "emotion": "anger", "turns": [', "malformed JSON"),
    (json.dumps({"id": "x", "turns": TURNS}), "missing field(s) emotion"),
    (json.dumps({"emotion": "fear", "turns": TURNS}), "missing field(s) id"),
    (json.dumps({"id": "x", "emotion": "fear"}), "missing field(s) turns"),
    (json.dumps({"id": "x", "emotion": "fear", "turns": []}), "non-empty list"),
    (json.dumps({"id": "x", "emotion": "fear",
                 "turns": [{"speaker": "A", "text": "hi"}, {"speaker": "B", "text": "   "}]}),
     "turn 1 has empty text"),
    (_line("x", emotion="bewildered"), "bewildered"),
    ('["not", "an", "object"]', "JSON object"),
    (_line("ok-1"), "duplicate id 'ok-1'"),
])
def test_bad_line_reports_file_and_physical_line(tmp_path: Path, bad: str, fragment: str) -> None:
    # Blank lines before the bad one still count as lines of the file.
    path = _write(tmp_path / "data.jsonl", [GOOD, "", _line("ok-2", "fear"), "   ", bad,
                                            _line("ok-3", "sadness")])
    with pytest.raises(UserError) as caught:
        read_records(path)
    message = str(caught.value)
    assert f"{path}:5:" in message
    assert fragment in message


def test_error_on_first_line_reports_line_one(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl", ["{oops", GOOD])
    with pytest.raises(UserError, match=r"data\.jsonl:1: malformed JSON"):
        read_records(path)


def test_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = _write(tmp_path / "data.jsonl",
                  ["", GOOD, "", "  \t ", _line("ok-2", "Joy"), "", ""])
    records = read_records(path)
    assert [r.id for r in records] == ["ok-1", "ok-2"]
    assert [r.emotion for r in records] == ["anger", "happiness"]


def test_read_normalises_labels_and_strips_text(tmp_path: Path) -> None:
    payload = {"id": 7, "emotion": " SCARED ",
               "turns": [{"text": "  Who is there?  "}, {"text": "Nobody."}]}
    path = _write(tmp_path / "data.jsonl", [json.dumps(payload)])
    (record,) = read_records(path)
    assert record.id == "7"
    assert record.emotion == "fear"
    assert record.turns == (Turn("A", "Who is there?"), Turn("B", "Nobody."))
    assert record.source == "unknown"


def test_missing_file_is_a_user_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.jsonl"
    with pytest.raises(UserError, match="no such data file") as caught:
        read_records(path)
    assert str(path) in str(caught.value)


def test_file_of_only_blank_lines_is_a_user_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "empty.jsonl", ["", "  "])
    with pytest.raises(UserError, match="no records"):
        read_records(path)


def test_write_read_round_trip(tmp_path: Path) -> None:
    records = _records()
    path = tmp_path / "sub" / "round.jsonl"
    write_records(path, records)
    back = read_records(path)
    assert back == records
    assert [r.meta for r in back] == [r.meta for r in records]
    assert [r.source for r in back] == ["unknown", "custom", "unknown"]
    assert records_hash(back) == records_hash(records)


# -- hashing -----------------------------------------------------------------------------------

def test_hash_equal_for_equal_data() -> None:
    first, second = _records(), _records()
    assert first is not second
    assert records_hash(first) == records_hash(second)


@pytest.mark.parametrize("change", ["text", "id", "emotion", "speaker", "order"])
def test_hash_changes_with_any_change(change: str) -> None:
    original = _records()
    changed = _records()
    record = changed[0]
    if change == "text":
        changed[0] = Record(record.id, record.emotion,
                            (Turn("A", "How dare you?"), record.turns[1]), record.source)
    elif change == "id":
        changed[0] = Record("a2", record.emotion, record.turns, record.source)
    elif change == "emotion":
        changed[0] = Record(record.id, "disgust", record.turns, record.source)
    elif change == "speaker":
        changed[0] = Record(record.id, record.emotion,
                            (Turn("C", "How dare you!"), record.turns[1]), record.source)
    else:
        changed.reverse()
    assert records_hash(changed) != records_hash(original)
