from __future__ import annotations

import json
from pathlib import Path

import pytest

from emoneuron.cli import main
from emoneuron.data.confound import keyword_free, lexical_report
from emoneuron.data.lexicon import names_any_emotion
from emoneuron.data.schema import Record, Turn, read_records, write_records
from emoneuron.errors import UserError


def _record(id_: str, emotion: str, *texts: str) -> Record:
    return Record(id=id_, emotion=emotion,
                  turns=tuple(Turn("AB"[i % 2], text) for i, text in enumerate(texts)))


RECORDS = [
    _record("a1", "anger", "I am furious. He took my seat.", "That was rude of him."),
    _record("a2", "anger", "He took my seat again!", "Unbelievable, I would be sad."),
    _record("a3", "anger", "He took my seat.", "Then say something to him."),
    _record("f1", "fear", "I am scared.", "Why?"),
    _record("f2", "fear", "Someone is at the window.", "Lock the door now!"),
]


def test_lexical_report_counts_own_and_any_emotion() -> None:
    rows = {row.emotion: row for row in lexical_report(RECORDS)}
    assert list(rows) == ["anger", "fear", "all"]
    assert (rows["anger"].dialogues, rows["anger"].names_own, rows["anger"].names_any) == (3, 1, 2)
    assert (rows["fear"].names_own, rows["fear"].names_any) == (1, 1)
    assert rows["all"].to_json() == {"emotion": "all", "dialogues": 5, "names_own": 2,
                                     "names_any": 3, "share_own": 0.4, "share_any": 0.6}


def test_drop_mode_removes_every_dialogue_with_any_emotion_word() -> None:
    kept, rows = keyword_free(RECORDS, "drop")
    assert [r.id for r in kept] == ["a3", "f2"]
    assert [(r.emotion, r.unchanged, r.rewritten, r.dropped) for r in rows] == [
        ("anger", 1, 0, 2), ("fear", 1, 0, 1)]


def test_rewrite_mode_removes_only_the_sentences_with_emotion_words() -> None:
    kept, rows = keyword_free(RECORDS, "rewrite")
    by_id = {r.id: r for r in kept}
    assert [t.text for t in by_id["a1"].turns] == ["He took my seat.", "That was rude of him."]
    assert by_id["a1"].meta == {"removed_sentences": 1}
    assert [t.text for t in by_id["a2"].turns] == ["He took my seat again!"]
    # f1's first turn was one emotion sentence: the turn goes, the other one stays.
    assert [(t.speaker, t.text) for t in by_id["f1"].turns] == [("B", "Why?")]
    assert by_id["a3"] == RECORDS[2] and by_id["a3"].meta == {}
    assert not any(names_any_emotion(r) for r in kept)
    assert [(r.emotion, r.unchanged, r.rewritten, r.dropped) for r in rows] == [
        ("anger", 1, 2, 0), ("fear", 1, 1, 0)]


def test_a_class_left_empty_is_refused() -> None:
    only_named = [*RECORDS[:3], _record("f3", "fear", "So frightening!")]
    with pytest.raises(UserError, match=r"my\.jsonl: no fear dialogue is left .*--mode rewrite"):
        keyword_free(only_named, "drop", "my.jsonl")
    with pytest.raises(UserError, match="no fear dialogue"):
        keyword_free(only_named, "rewrite")
    with pytest.raises(UserError, match="unknown keyword-free mode 'cut'"):
        keyword_free(RECORDS, "cut")


def test_cli_lexical_and_keyword_free(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    write_records(data, RECORDS)
    assert main(["data", "lexical", str(data), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload[-1]["share_any"] == 0.6
    assert main(["data", "lexical", str(data)]) == 0
    assert "anger" in capsys.readouterr().out
    out = tmp_path / "free.jsonl"
    assert main(["data", "keyword-free", str(data), "--out", str(out), "--mode", "rewrite"]) == 0
    assert "wrote 5 keyword-free dialogues" in capsys.readouterr().out
    assert len(read_records(out)) == 5

    write_records(data, [*RECORDS[:3], _record("f3", "fear", "So frightening!")])
    assert main(["data", "keyword-free", str(data), "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(data) in err and "no fear dialogue" in err
    assert not (tmp_path / "x.jsonl").exists()
