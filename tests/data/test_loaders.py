"""Every corpus loader on small files in the real formats: counts, windows, repairs, errors."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from loader_fixtures import (
    DAILYDIALOG,
    MELD_TEST_COUNTS,
    meld_csv,
    meld_test_rows,
    write_dailydialog,
)

from emoneuron.cli import main
from emoneuron.data.loaders import LoadOptions, load_corpus
from emoneuron.data.loaders.common import repair_text
from emoneuron.data.loaders.dailydialog import detokenise
from emoneuron.data.schema import NEUTRAL, read_records
from emoneuron.errors import UserError

# -- DailyDialog ---------------------------------------------------------------------------------


def test_dailydialog_counts_windows_and_speakers(tmp_path: Path) -> None:
    loaded = load_corpus("dailydialog", write_dailydialog(tmp_path), LoadOptions(split="train"))
    # 3 + 2 + 4 aligned utterances; the misaligned third line is left out.
    assert Counter(r.emotion for r in loaded.records) == {
        NEUTRAL: 3, "sadness": 1, "happiness": 2, "anger": 2, "surprise": 1}
    last = loaded.records[-1]
    assert last.id == "dailydialog-train-00003-u3"
    assert last.emotion == "surprise"
    assert [t.speaker for t in last.turns] == ["A", "B", "A", "B"]
    assert [t.text for t in last.turns] == ["Who left this mess?", "Not me.",
                                            "Then clean it up right now!", "What? Really?"]
    assert last.meta == {"dialogue": "dailydialog-train-00003", "utterance": 3}
    assert loaded.records[1].turns[-1].text == "They\u2019re on the table, next to the lamp."


def test_dailydialog_reports_and_skips_the_misaligned_dialogue(tmp_path: Path) -> None:
    loaded = load_corpus("dailydialog", write_dailydialog(tmp_path), LoadOptions(split="train"))
    report = loaded.report
    assert report.skipped == {"dialogue whose utterance and label counts differ": 1}
    (warning,) = report.warnings
    assert "dialogues_train.txt:3 has 3 utterances" in warning
    assert "dialogues_emotion_train.txt:3 has 2 labels" in warning
    assert not any(r.meta["dialogue"].endswith("00002") for r in loaded.records)
    # The release note counts every label line, the skipped dialogue's included.
    assert "4 dialogues, 11 labelled utterances" in report.notes[0]
    assert report.records == len(loaded.records) == 9


@pytest.mark.parametrize("context", [0, 1, 2])
def test_context_window_keeps_k_turns_before_the_target(tmp_path: Path, context: int) -> None:
    loaded = load_corpus("dailydialog", write_dailydialog(tmp_path),
                  LoadOptions(split="train", context=context))
    by_id = {r.id: r for r in loaded.records}
    record = by_id["dailydialog-train-00003-u3"]
    assert len(record.turns) == context + 1
    assert record.turns[-1].text == "What? Really?"
    assert len(by_id["dailydialog-train-00003-u0"].turns) == 1


def test_negative_context_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--context -1"):
        load_corpus("dailydialog", write_dailydialog(tmp_path),
                    LoadOptions(split="train", context=-1))


def test_dailydialog_needs_a_split_and_both_files(tmp_path: Path) -> None:
    write_dailydialog(tmp_path)
    with pytest.raises(UserError, match="--split"):
        load_corpus("dailydialog", tmp_path, LoadOptions())
    with pytest.raises(UserError, match=r"dialogues_test\.txt: no such file"):
        load_corpus("dailydialog", tmp_path, LoadOptions(split="test"))


def test_dailydialog_unknown_emotion_id_names_file_and_line(tmp_path: Path) -> None:
    write_dailydialog(tmp_path, lines=[DAILYDIALOG[1], (["Hi .", "Hello ."], ["0", "9"])])
    with pytest.raises(UserError, match=r"dialogues_emotion_train\.txt:2: emotion id '9'"):
        load_corpus("dailydialog", tmp_path, LoadOptions(split="train"))


@pytest.mark.parametrize(("tokenised", "readable"), [
    ("it \u2019 s great , isn ' t it ?", "it\u2019s great, isn't it?"),
    ("I \u2019 Ve seen it ( twice ) .", "I\u2019Ve seen it (twice)."),
    ("“ Stop ! ” she said ; 50 % off , £ 330 .", "“Stop!” she said; 50% off, £330."),
    ("At 6 o \u2019 clock , ma \u2019 am .", "At 6 o\u2019clock, ma\u2019am."),
    ("The students \u2019 books .", "The students \u2019 books."),  # plural possessive: apart
])
def test_detokenise(tokenised: str, readable: str) -> None:
    assert detokenise(tokenised) == readable


# -- MELD ----------------------------------------------------------------------------------------


def test_meld_reproduces_the_published_test_counts(tmp_path: Path) -> None:
    path = tmp_path / "test_sent_emo.csv"
    path.write_bytes(meld_csv(meld_test_rows()))
    loaded = load_corpus("meld", path, LoadOptions())
    expected = {("happiness" if e == "joy" else e): n for e, n in MELD_TEST_COUNTS.items()}
    assert Counter(r.emotion for r in loaded.records) == expected
    assert len(loaded.records) == 2610
    assert loaded.records[0].turns[0].text == "Line 0 of the scene, isn\u2019t it?"
    assert loaded.records[0].id == "meld-test-d0-u0"


def test_meld_orders_by_utterance_id_and_repairs_stray_bytes(tmp_path: Path) -> None:
    rows = [("Third \u00e2\u20ac\u0153line\u00e2\u20ac\u009d.", "Joey", "Joy", 7, 2),
            ("First line.", "Monica", "neutral", 7, 0),
            ("Other scene.", "Ross", "fear", 8, 0),
            ("Second line, it\x92s here.", "Chandler", "anger", 7, 1)]
    path = tmp_path / "dev_sent_emo.csv"
    # A raw Windows-1252 byte inside otherwise UTF-8 text, as in the release.
    path.write_bytes(meld_csv(rows).replace(b"it\xc2\x92s", b"it\x92s"))
    loaded = load_corpus("meld", tmp_path, LoadOptions(split="dev", context=4))
    third = next(r for r in loaded.records if r.id == "meld-dev-d7-u2")
    assert [t.text for t in third.turns] == ["First line.", "Second line, it\u2019s here.",
                                            "Third \u201cline\u201d."]
    assert [t.speaker for t in third.turns] == ["Monica", "Chandler", "Joey"]
    assert third.emotion == "happiness"
    assert len(next(r for r in loaded.records if r.id == "meld-dev-d8-u0").turns) == 1


def test_meld_repeated_utterance_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "train_sent_emo.csv"
    path.write_bytes(meld_csv([("Hi.", "A", "neutral", 1, 0), ("Hi again.", "A", "joy", 1, 0)]))
    loaded = load_corpus("meld", path, LoadOptions())
    assert len(loaded.records) == 1
    assert loaded.report.skipped == {"repeated (Dialogue_ID, Utterance_ID)": 1}
    assert "train_sent_emo.csv:3" in loaded.report.warnings[0]


@pytest.mark.parametrize(("content", "message"), [
    (b"Sr No.,Utterance,Speaker\n1,Hi,A\n", r"test_sent_emo\.csv:1: no column 'Emotion'"),
    (None, r"test_sent_emo\.csv:3: Dialogue_ID 'x' is not a whole number"),
    (b"Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\nHi,A,joyy,1,0\n",
     r"test_sent_emo\.csv:2: unknown emotion label 'joyy': did you mean 'happiness'"),
    (b"Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\nHi,A\n", r"csv:2: 2 fields"),
    (b"Utterance,Speaker,Emotion,Dialogue_ID,Utterance_ID\n", "no records found"),
])
def test_meld_malformed_input_names_file_and_line(tmp_path: Path, content: bytes | None,
                                                  message: str) -> None:
    if content is None:
        content = meld_csv([("Hi.", "A", "neutral", 1, 0)]) + b'3,"Yo",B,joy,neutral,x,1,1,1,a,b\n'
    path = tmp_path / "test_sent_emo.csv"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_corpus("meld", path, LoadOptions())


# -- emoprism ------------------------------------------------------------------------------------

EMOPRISM = [
    {"emotion": "anger", "topic": "Shared kitchen",
     "dialogue": ["You ate my lunch again.", "It was in the fridge, so I thought..."]},
    {"label": "Joy", "topic": "Exam results", "id": "ex-7",
     "turns": [{"speaker": "Mia", "text": "I passed!"}, {"speaker": "Leo", "text": "Yes!"}]},
    {"emotion": "fear", "conversation": "Kim: Did you hear that noise?\nLee: Stay quiet."},
    {"emotion": "sadness", "topic": "Moving", "dialogue": ["   ", ""]},
]


@pytest.mark.parametrize("layout", ["array", "jsonl"])
def test_emoprism_accepts_each_documented_shape(tmp_path: Path, layout: str) -> None:
    path = tmp_path / "emoprism.json"
    path.write_text(json.dumps(EMOPRISM, indent=1) if layout == "array"
                    else "\n".join(map(json.dumps, EMOPRISM)), encoding="utf-8")
    loaded = load_corpus("emoprism", path)
    first, second, third = loaded.records
    assert (first.id, first.emotion, first.meta) == (
        "emoprism-shared-kitchen-0", "anger", {"topic": "Shared kitchen"})
    assert [t.speaker for t in first.turns] == ["A", "B"]
    assert (second.id, second.emotion, second.turns[1].speaker) == ("ex-7", "happiness", "Leo")
    assert [(t.speaker, t.text) for t in third.turns] == [("Kim", "Did you hear that noise?"),
                                                          ("Lee", "Stay quiet.")]
    assert third.id == "emoprism-untitled-2" and third.source == "emoprism"
    assert loaded.report.skipped == {"dialogue without text": 1}


@pytest.mark.parametrize(("content", "message"), [
    ('[{"topic": "x", "dialogue": ["hi"]}]', r"item 0: no 'emotion' or 'label' field"),
    ('{"emotion": "anger"}', r"emoprism\.json:1: no 'dialogue' or 'turns' or 'conversation'"),
    ('[{"emotion": "anger", "dialogue": ["a"]},\n oops]', r"emoprism\.json:2: malformed JSON"),
    ('["just text"]', r"item 0: expected a JSON object, got str"),
    ('{"emotion": "anger", "dialogue": 5}', r":1: the dialogue must be a string or a list"),
])
def test_emoprism_malformed_input(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "emoprism.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_corpus("emoprism", path)


# -- GoEmotions ----------------------------------------------------------------------------------

GOEMOTIONS = "\n".join([
    "This is so annoying, stop it\t2,3\tc1",  # anger + annoyance: both anger -> kept
    "Thank you, that made my day\t15\tc2",  # gratitude -> happiness
    "Wait, what?\t26,6\tc3",  # surprise + confusion -> surprise
    "Ok then\t27\tc4",  # neutral
    "I love it but I am scared\t18,14\tc5",  # happiness + fear -> dropped
    "Fine I guess\t27,25\tc6",  # neutral + sadness -> dropped
    "Gross\t11\tc7",
])


def test_goemotions_maps_to_ekman_and_drops_mixed_rows(tmp_path: Path) -> None:
    (tmp_path / "dev.tsv").write_text(GOEMOTIONS + "\n", encoding="utf-8")
    loaded = load_corpus("goemotions", tmp_path, LoadOptions(split="dev"))
    assert [(r.id, r.emotion) for r in loaded.records] == [
        ("goemotions-c1", "anger"), ("goemotions-c2", "happiness"),
        ("goemotions-c3", "surprise"), ("goemotions-c4", NEUTRAL), ("goemotions-c7", "disgust")]
    assert loaded.report.skipped == {"labels map to more than one class (Ekman mapping)": 2}


@pytest.mark.parametrize(("line", "message"), [
    ("text only", r"dev\.tsv:2: 1 tab-separated fields, expected 3"),
    ("Hi\t28\tc9", r"dev\.tsv:2: label id '28' is not one of 0-27"),
    ("Hi\t\tc9", r"dev\.tsv:2: label id '' is not one of 0-27"),
])
def test_goemotions_malformed_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "dev.tsv"
    path.write_text("Fine\t27\tc0\n" + line + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=message):
        load_corpus("goemotions", path)


# -- jsonl and csv with a column mapping ---------------------------------------------------------


def test_csv_dialogue_level_rows_split_at_the_separator(tmp_path: Path) -> None:
    path = tmp_path / "mine.csv"
    path.write_text("key,said,feeling\n"
                    'd1,"Where were you? || Out. || All night?",anger\n'
                    "d2,What a lovely surprise!,surprised\n"
                    "d3,,fear\n", encoding="utf-8")
    loaded = load_corpus("csv", path, LoadOptions(text_column="said", label_column="feeling",
                                           id_column="key", turn_separator="||"))
    first, second = loaded.records
    assert first.id == "d1" and [t.text for t in first.turns] == ["Where were you?", "Out.",
                                                                  "All night?"]
    assert [t.speaker for t in first.turns] == ["A", "B", "A"]
    assert (second.emotion, second.source) == ("surprise", "mine")
    assert loaded.report.skipped == {"row without label or text": 1}


def test_jsonl_utterance_level_rows_become_context_windows(tmp_path: Path) -> None:
    rows = [{"conv": 5, "who": "Ann", "utt": "The results are out.", "lab": ""},
            {"conv": 5, "who": "Ben", "utt": "And?", "lab": "neutral"},
            {"conv": 6, "who": "Cy", "utt": "Boo!", "lab": "surprise"},
            {"conv": 5, "who": "Ann", "utt": "I got in!", "lab": "joy"}]
    path = tmp_path / "talk.jsonl"
    path.write_text("\n".join(map(json.dumps, rows)), encoding="utf-8")
    loaded = load_corpus("jsonl", path, LoadOptions(text_column="utt", label_column="lab",
                                             speaker_column="who", dialogue_column="conv"))
    assert [r.id for r in loaded.records] == ["talk-5-u1", "talk-5-u2", "talk-6-u0"]
    got_in = loaded.records[1]
    assert [(t.speaker, t.text) for t in got_in.turns] == [
        ("Ann", "The results are out."), ("Ben", "And?"), ("Ann", "I got in!")]
    assert got_in.emotion == "happiness"


def test_jsonl_turns_may_be_a_list(tmp_path: Path) -> None:
    path = tmp_path / "list.jsonl"
    path.write_text(json.dumps({"text": [{"speaker": "Q", "text": "Hm?"}, "Nothing."],
                                "emotion": "fear"}), encoding="utf-8")
    (record,) = load_corpus("jsonl", path).records
    assert [(t.speaker, t.text) for t in record.turns] == [("Q", "Hm?"), ("B", "Nothing.")]
    assert record.id == "list-1"


@pytest.mark.parametrize(("kind", "content", "message"), [
    ("csv", "words,emotion\nhi,anger\n", r"mine\.csv:1: no column 'text' .*--text-column"),
    ("csv", 'text,emotion\n"unclosed,anger\n', r"csv:2: 1 fields .* close every"),
    ("jsonl", '{"text": "hi", "emotion": "anger"}\n[1]\n', r"mine\.jsonl:2: expected a JSON"),
    ("jsonl", '{"text": "hi", "emotion": "anger"}\n{bad\n', r"mine\.jsonl:2: malformed JSON"),
    ("jsonl", '{"text": "hi", "emotion": "angr"}\n', r"mine\.jsonl:1: .*did you mean 'anger'"),
    ("jsonl", '{"text": "hi", "emotion": "anger", "id": "x"}\n', r"no column 'key'"),
])
def test_table_malformed_input(tmp_path: Path, kind: str, content: str, message: str) -> None:
    path = tmp_path / f"mine.{kind}"
    path.write_text(content, encoding="utf-8")
    options = LoadOptions(id_column="key" if "key" in message else None)
    with pytest.raises(UserError, match=message):
        load_corpus(kind, path, options)


def test_duplicate_ids_are_reported_not_merged(tmp_path: Path) -> None:
    path = tmp_path / "dup.jsonl"
    path.write_text('{"id": "a", "text": "One.", "emotion": "fear"}\n'
                    '{"id": "a", "text": "Two.", "emotion": "fear"}\n', encoding="utf-8")
    loaded = load_corpus("jsonl", path, LoadOptions(id_column="id"))
    assert [r.turns[0].text for r in loaded.records] == ["One."]
    assert loaded.report.skipped == {"duplicate id": 1}


def test_unknown_format_and_missing_path(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown data format 'xml'"):
        load_corpus("xml", tmp_path)
    with pytest.raises(UserError, match="no such file"):
        load_corpus("jsonl", tmp_path / "nothing.jsonl")


@pytest.mark.parametrize(("broken", "fixed"), [
    ("isn\u00e2\u20ac\u2122t", "isn\u2019t"),  # UTF-8 read as Windows-1252
    ("caf\u00c3\u00a9", "caf\u00e9"),
    ("it\x92s", "it\u2019s"),  # a C1 control character standing for a cp1252 byte
    ("it\udc92s", "it\u2019s"),  # an undecodable byte kept by surrogateescape
    ("bad\udc81byte\x00", "badbyte"),  # no cp1252 character: dropped
    ("plain text, caf\u00e9 \u00a3", "plain text, caf\u00e9 \u00a3"),
])
def test_repair_text(broken: str, fixed: str) -> None:
    assert repair_text(broken) == fixed


# -- command line --------------------------------------------------------------------------------


def test_cli_load_writes_records_and_prints_the_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dd.jsonl"
    code = main(["data", "load", "--format", "dailydialog", str(write_dailydialog(tmp_path)),
                 "--split", "train", "--context", "1", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "dailydialog train: 9 records" in printed
    assert "skipped 1: dialogue whose utterance and label counts differ" in printed
    records = read_records(out)
    assert len(records) == 9 and max(len(r.turns) for r in records) == 2


def test_cli_load_error_is_one_line_and_exit_2(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["data", "load", "--format", "meld", str(tmp_path), "--out",
                 str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "--split" in err
    assert not (tmp_path / "x.jsonl").exists()
