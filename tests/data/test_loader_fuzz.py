"""Fuzzing every loader: whatever the files hold, a loader returns valid records or raises
UserError, never another exception (issue 7, item 4)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from loader_fixtures import MELD_COLUMNS

from emoneuron.data.loaders import LoadOptions, load_corpus
from emoneuron.data.schema import LABELS, Record, write_records
from emoneuron.errors import UserError

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# Characters that matter to the parsers, plus arbitrary ones.
PIECES = st.sampled_from(["__eou__", ",", '"', "\t", "\n", "\r", " ", "0", "5", "27", "\\",
                          "\x92", "\u00e2\u20ac\u2122", "joy", "neutral", "anger", "{", "}",
                          ":", "\x00", "\ufeff", "A:"])
TEXT = st.lists(PIECES | st.text(max_size=6), max_size=12).map("".join)
RAW = st.binary(max_size=200)
JSON = st.recursive(st.none() | st.booleans() | st.integers() | TEXT,
                    lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(st.sampled_from(["text", "speaker", "emotion"]) | TEXT,
                                      inner, max_size=3), max_leaves=8)


def _folder(factory: pytest.TempPathFactory, name: str) -> Path:
    folder = factory.getbasetemp() / f"fuzz-{name}"
    folder.mkdir(exist_ok=True)
    return folder


def _check(format: str, path: Path, options: LoadOptions) -> None:
    try:
        loaded = load_corpus(format, path, options)
    except UserError as error:
        assert "\n" not in str(error)
        return
    assert loaded.records and loaded.report.records == len(loaded.records)
    assert len({r.id for r in loaded.records}) == len(loaded.records)
    for record in loaded.records:
        assert record.emotion in LABELS
        assert all(turn.text and turn.text == turn.text.strip() for turn in record.turns)
        assert Record.from_json(json.loads(json.dumps(record.to_json()))) == record
    write_records(path.parent / "out.jsonl", loaded.records)


def _encode(text: str) -> bytes:
    # Lone surrogates become the invalid UTF-8 bytes a damaged file holds.
    return text.encode("utf-8", errors="surrogatepass")


def _dailydialog(dialogues: list[list[tuple[str, str]]]) -> tuple[bytes, bytes]:
    text = "\n".join(" __eou__ ".join(t for t, _ in d) + " __eou__" for d in dialogues)
    labels = "\n".join(" ".join(label for _, label in d) for d in dialogues)
    return _encode(text), _encode(labels)


DD_TEXT = st.lists(st.lists(TEXT, max_size=4).map(" __eou__ ".join), max_size=4).map(
    "\n".join).map(_encode)
DD_LABELS = st.lists(st.lists(st.sampled_from("0123456 x"), max_size=5).map(" ".join),
                     max_size=4).map("\n".join).map(_encode)
# Aligned files: one label per utterance (utterances without "\n" or "__eou__" of their own).
DD_ALIGNED = st.lists(st.lists(st.tuples(st.text(st.characters(
    blacklist_characters="\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029_"), min_size=1,
    max_size=12), st.sampled_from("0123456")), min_size=1, max_size=4), min_size=1,
    max_size=4).map(_dailydialog)


@FUZZ
@given(st.tuples(RAW | DD_TEXT, RAW | DD_LABELS) | DD_ALIGNED, st.integers(0, 3))
@example((b"Hi __eou__ Yo __eou__\n", b"0 4\n"), 1)
@example((b"Hi __eou__ \x92 __eou__ __eou__\r\nOne __eou__\n", b"0 4\n3\n"), 0)
def test_dailydialog_fuzz(tmp_path_factory: pytest.TempPathFactory, files: tuple[bytes, bytes],
                          context: int) -> None:
    text, labels = files
    root = _folder(tmp_path_factory, "dailydialog")
    (root / "dev").mkdir(exist_ok=True)
    (root / "dev" / "dialogues_dev.txt").write_bytes(text)
    (root / "dev" / "dialogues_emotion_dev.txt").write_bytes(labels)
    _check("dailydialog", root, LoadOptions(split="dev", context=context))


def _csv(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return _encode(buffer.getvalue())


MELD_ROWS = st.lists(st.tuples(st.integers(0, 9), TEXT, TEXT, st.sampled_from(LABELS),
                               TEXT, st.integers(0, 2), st.integers(0, 3)).map(list),
                     min_size=1, max_size=6)


@FUZZ
@given(RAW | st.lists(st.lists(TEXT, min_size=3, max_size=12).map(",".join), max_size=5)
       .map(lambda rows: "\n".join([",".join(MELD_COLUMNS), *rows])).map(_encode)
       | MELD_ROWS.map(lambda rows: _csv([MELD_COLUMNS[:7], *rows])))
@example(b"Sr No.,Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\n1,Hi\x92,A,joy,0,0\n")
def test_meld_fuzz(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = _folder(tmp_path_factory, "meld") / "test_sent_emo.csv"
    path.write_bytes(content)
    _check("meld", path, LoadOptions())


def _emoprism_object(label: Any, dialogue: Any, topic: Any) -> dict[str, Any]:
    return {"emotion": label, "dialogue": dialogue, "topic": topic}


EMOPRISM_OBJECTS = st.builds(_emoprism_object, st.sampled_from(LABELS) | JSON,
                             st.lists(TEXT | JSON, max_size=3) | TEXT | JSON, TEXT | JSON)
VALID_EMOPRISM = st.builds(_emoprism_object, st.sampled_from(LABELS),
                           st.lists(TEXT, max_size=3) | TEXT, TEXT | st.none())


@FUZZ
@given(RAW | st.lists(EMOPRISM_OBJECTS | JSON, max_size=3).map(
    lambda items: _encode(json.dumps(items))) | st.lists(EMOPRISM_OBJECTS | JSON, max_size=3)
    .map(lambda items: _encode("\n".join(json.dumps(i) for i in items)))
       | st.lists(VALID_EMOPRISM, min_size=1, max_size=4).map(json.dumps).map(_encode))
@example(b'[{"emotion": "joy", "dialogue": "\\ud800: x"}]')
@example(b"[" * 3000)
def test_emoprism_fuzz(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = _folder(tmp_path_factory, "emoprism") / "data.json"
    path.write_bytes(content)
    _check("emoprism", path, LoadOptions())


GOEMOTIONS_LINES = st.tuples(TEXT, st.lists(st.integers(0, 30).map(str) | TEXT, max_size=3)
                             .map(",".join), TEXT).map("\t".join)
SIMPLE = st.text(st.characters(blacklist_characters="\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"),
                 min_size=1, max_size=20)
VALID_GOEMOTIONS = st.tuples(SIMPLE, st.lists(st.integers(0, 27).map(str), min_size=1,
                                              max_size=3).map(",".join), SIMPLE).map("\t".join)


@FUZZ
@given(RAW | st.lists(GOEMOTIONS_LINES | VALID_GOEMOTIONS, max_size=5).map("\n".join)
       .map(_encode) | st.lists(VALID_GOEMOTIONS, min_size=1, max_size=5).map("\n".join)
       .map(_encode))
@example(b"ok\t27\tx\nok\t27\tx\n")
def test_goemotions_fuzz(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    path = _folder(tmp_path_factory, "goemotions") / "train.tsv"
    path.write_bytes(content)
    _check("goemotions", path, LoadOptions())


def _jsonl(rows: list[Any]) -> bytes:
    return _encode("\n".join(json.dumps(row) for row in rows))


TABLE_OBJECTS = st.fixed_dictionaries({}, optional={
    "text": TEXT | JSON, "emotion": st.sampled_from(LABELS) | TEXT | JSON,
    "conv": TEXT | JSON, "who": TEXT | JSON})
VALID_OBJECTS = st.fixed_dictionaries({
    "text": TEXT | st.lists(TEXT, max_size=3), "emotion": st.sampled_from(LABELS),
    "conv": st.integers(0, 2) | TEXT, "who": TEXT | st.none()})


@FUZZ
@given(RAW | st.lists(TABLE_OBJECTS | JSON, max_size=4).map(_jsonl)
       | st.lists(VALID_OBJECTS, min_size=1, max_size=5).map(_jsonl),
       st.booleans())
@example(b'{"text": "\\udc00", "emotion": "joy", "conv": 1, "who": null}', True)
def test_jsonl_fuzz(tmp_path_factory: pytest.TempPathFactory, content: bytes,
                    utterances: bool) -> None:
    path = _folder(tmp_path_factory, "jsonl") / "rows.jsonl"
    path.write_bytes(content)
    options = (LoadOptions(dialogue_column="conv", speaker_column="who", context=2)
               if utterances else LoadOptions())
    _check("jsonl", path, options)


@FUZZ
@given(RAW | st.lists(st.lists(TEXT | st.sampled_from(LABELS), min_size=1, max_size=4)
                      .map(",".join), max_size=5)
       .map(lambda rows: "\n".join(["text,emotion,conv", *rows])).map(_encode)
       | st.lists(st.tuples(TEXT, st.sampled_from(LABELS), st.integers(0, 2)).map(list),
                  min_size=1, max_size=5).map(lambda rows: _csv([["text", "emotion", "conv"],
                                                                 *rows])),
       st.booleans())
def test_csv_fuzz(tmp_path_factory: pytest.TempPathFactory, content: bytes,
                  utterances: bool) -> None:
    path = _folder(tmp_path_factory, "csv") / "rows.csv"
    path.write_bytes(content)
    _check("csv", path, LoadOptions(dialogue_column="conv" if utterances else None))
