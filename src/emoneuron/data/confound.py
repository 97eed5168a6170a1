"""The lexical confound: how often dialogues name emotions, and a variant that never does.

If a class's dialogues say "furious" or "terrified", neurons that fire on those words would look
like emotion neurons. :func:`lexical_report` measures that share per class;
:func:`keyword_free` builds a variant with no lexicon word of *any* emotion (naming another
emotion, "I'm not angry, just sad", is a lexical cue too), by dropping such dialogues or by
removing the sentences that contain the words.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any

from emoneuron.data.lexicon import find_emotion_words, names_any_emotion, names_emotion
from emoneuron.data.schema import EMOTIONS, Record, Turn
from emoneuron.errors import UserError

KEYWORD_FREE_MODES = ("drop", "rewrite")

# A sentence ends at . ! ? (possibly repeated, possibly closed by a quote or bracket).
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")


def _emotion_order(records: list[Record]) -> list[str]:
    present = {record.emotion for record in records}
    return [e for e in EMOTIONS if e in present] + sorted(present - set(EMOTIONS))


@dataclass(frozen=True)
class LexicalRow:
    emotion: str
    dialogues: int
    names_own: int
    names_any: int

    @property
    def share_own(self) -> float:
        return self.names_own / self.dialogues

    @property
    def share_any(self) -> float:
        return self.names_any / self.dialogues

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "share_own": round(self.share_own, 4),
                "share_any": round(self.share_any, 4)}


def lexical_report(records: list[Record]) -> list[LexicalRow]:
    """Per emotion (then ``all``): dialogues naming their own emotion, and naming any emotion."""
    rows = []
    for emotion in [*_emotion_order(records), "all"]:
        chosen = [r for r in records if emotion in ("all", r.emotion)]
        rows.append(LexicalRow(emotion, len(chosen), sum(map(names_emotion, chosen)),
                               sum(map(names_any_emotion, chosen))))
    return rows


@dataclass(frozen=True)
class KeywordFreeRow:
    emotion: str
    dialogues: int
    unchanged: int
    rewritten: int
    dropped: int

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _without_emotion_sentences(record: Record) -> Record | None:
    """The record with every sentence that holds a lexicon word removed; None if nothing is left.

    A turn left without sentences disappears; the remaining turns keep their speakers.
    """
    turns: list[Turn] = []
    removed = 0
    for turn in record.turns:
        sentences = [s for s in _SENTENCE_END.split(turn.text) if s.strip()]
        kept = [s for s in sentences if not find_emotion_words(s)]
        removed += len(sentences) - len(kept)
        if kept:
            turns.append(Turn(turn.speaker, " ".join(kept)))
    if not turns:
        return None
    return dataclasses.replace(record, turns=tuple(turns),
                               meta={**record.meta, "removed_sentences": removed})


def keyword_free(records: list[Record], mode: str = "drop",
                 name: str = "data") -> tuple[list[Record], list[KeywordFreeRow]]:
    """A variant of ``records`` in which no dialogue contains a lexicon word of any emotion.

    ``drop`` removes those dialogues; ``rewrite`` removes their offending sentences (and drops
    a dialogue only when no sentence survives). Returns the records and per-emotion counts.
    Raises :class:`UserError` (naming ``name``) if a class present in the input ends up empty.
    """
    if mode not in KEYWORD_FREE_MODES:
        raise UserError(f"unknown keyword-free mode {mode!r}: use drop or rewrite")
    kept: list[Record] = []
    counts = {emotion: {"unchanged": 0, "rewritten": 0, "dropped": 0}
              for emotion in _emotion_order(records)}
    for record in records:
        if not names_any_emotion(record):
            kept.append(record)
            outcome = "unchanged"
        else:
            rewritten = _without_emotion_sentences(record) if mode == "rewrite" else None
            if rewritten is not None:
                kept.append(rewritten)
            outcome = "dropped" if rewritten is None else "rewritten"
        counts[record.emotion][outcome] += 1
    rows = [KeywordFreeRow(emotion, sum(c.values()), c["unchanged"], c["rewritten"],
                           c["dropped"]) for emotion, c in counts.items()]
    emptied = [row.emotion for row in rows if row.dropped == row.dialogues]
    if emptied:
        hint = "try --mode rewrite" if mode == "drop" else "its dialogues are all emotion words"
        raise UserError(f"{name}: no {', '.join(emptied)} dialogue is left without emotion "
                        f"words ({mode} mode); {hint}, or use a data set that conveys "
                        "emotions without naming them")
    return kept, rows
