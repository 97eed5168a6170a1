"""The record schema every stage reads, and the label vocabulary with its aliases.

One JSON object per line::

    {"id": "synth-anger-0003", "emotion": "anger",
     "turns": [{"speaker": "A", "text": "..."}, {"speaker": "B", "text": "..."}],
     "source": "synth"}
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from emoneuron.errors import UserError
from emoneuron.io import atomic_open, sha256_bytes

EMOTIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
# Corpora label most utterances "no emotion". It is kept as its own label, never folded into the
# six: the six-way analysis drops it (:func:`select_classes`) unless a seventh class is asked for.
NEUTRAL = "neutral"
LABELS: tuple[str, ...] = (*EMOTIONS, NEUTRAL)
NEUTRAL_ALIASES: frozenset[str] = frozenset({"no emotion", "no_emotion", "no-emotion", "noemotion",
                                             "none"})

# Labels used by common corpora and by people, mapped onto Ekman's six names.
ALIASES: dict[str, str] = {
    "angry": "anger", "annoyance": "anger", "annoyed": "anger", "rage": "anger", "mad": "anger",
    "disgusted": "disgust", "disgusting": "disgust", "revulsion": "disgust",
    "afraid": "fear", "fearful": "fear", "scared": "fear", "anxious": "fear", "terror": "fear",
    "joy": "happiness", "happy": "happiness", "joyful": "happiness", "glad": "happiness",
    "sad": "sadness", "sorrow": "sadness", "grief": "sadness", "unhappy": "sadness",
    "surprised": "surprise", "amazed": "surprise", "astonished": "surprise", "shock": "surprise",
}

# Every accepted spelling (lower case) -> its label.
_CANONICAL: dict[str, str] = {**{label: label for label in LABELS}, **ALIASES,
                              **dict.fromkeys(sorted(NEUTRAL_ALIASES), NEUTRAL)}


def normalize_emotion(label: str) -> str:
    """Map a label or one of its aliases (any case) to one of :data:`LABELS`.

    Raises :class:`UserError` naming the label and the accepted names.
    """
    key = " ".join(str(label).split()).lower()
    if key in _CANONICAL:
        return _CANONICAL[key]
    close = difflib.get_close_matches(key, list(_CANONICAL), n=1, cutoff=0.75)
    hint = f"did you mean {_CANONICAL[close[0]]!r}? " if close else ""
    raise UserError(
        f"unknown emotion label {label!r}: {hint}use one of {', '.join(EMOTIONS)} or "
        f"{NEUTRAL} (aliases such as joy, angry, scared, no emotion are accepted)"
    )


@dataclass(frozen=True)
class Turn:
    """One utterance of a dialogue: who speaks (a label such as A or B, rendered before the
    words) and what they say."""

    speaker: str
    text: str


@dataclass(frozen=True)
class Record:
    """One labelled dialogue, the unit every stage reads.

    >>> Record(id="d1", emotion="fear", turns=(Turn("A", "Did you hear that?"),)).emotion
    'fear'
    """

    id: str
    emotion: str
    turns: tuple[Turn, ...]
    source: str = "unknown"
    meta: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["turns"] = [asdict(turn) for turn in self.turns]
        if not self.meta:
            del payload["meta"]
        return payload

    @classmethod
    def from_json(cls, payload: Any) -> Record:
        """Validate one decoded JSON object; raises ``ValueError`` with the reason."""
        if not isinstance(payload, dict):
            raise ValueError(f"expected a JSON object, got {type(payload).__name__}")
        missing = [key for key in ("id", "emotion", "turns") if key not in payload]
        if missing:
            raise ValueError(f"missing field(s) {', '.join(missing)}")
        turns = payload["turns"]
        if not isinstance(turns, list) or not turns:
            raise ValueError("'turns' must be a non-empty list of {speaker, text} objects")
        parsed: list[Turn] = []
        for position, turn in enumerate(turns):
            if not isinstance(turn, dict) or not isinstance(turn.get("text"), str):
                raise ValueError(f"turn {position} must be an object with a string 'text'")
            if not turn["text"].strip():
                raise ValueError(f"turn {position} has empty text")
            parsed.append(Turn(speaker=str(turn.get("speaker", "A" if position % 2 == 0 else "B")),
                               text=turn["text"].strip()))
        identifier = payload["id"]
        # str() would turn null into the id "None" and a list into its repr, silently.
        if isinstance(identifier, bool) or not isinstance(identifier, str | int) \
                or not str(identifier).strip():
            raise ValueError(f"'id' must be a non-empty string or an integer, got "
                             f"{_excerpt(identifier)}; give every record a unique id")
        if not isinstance(payload["emotion"], str):
            # str(None) is "None", an alias of neutral: a missing label must not become one.
            raise ValueError(f"'emotion' must be a label string such as \"anger\", got "
                             f"{_excerpt(payload['emotion'])}; label the record or remove it")
        try:
            emotion = normalize_emotion(payload["emotion"])
        except UserError as error:
            raise ValueError(str(error)) from None
        meta = payload.get("meta", {})
        record = cls(id=str(identifier), emotion=emotion, turns=tuple(parsed),
                     source=str(payload.get("source", "unknown")),
                     meta=meta if isinstance(meta, dict) else {})
        try:  # JSON can spell a lone surrogate ("\ud800"); UTF-8, so every writer, cannot
            json.dumps(record.to_json(), ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as error:
            bad = error.object[error.start:error.end]
            raise ValueError(f"invalid Unicode {bad!r} (an unpaired surrogate escape) in a "
                             "string; the text must be valid Unicode") from None
        return record


def _excerpt(value: Any) -> str:
    """A decoded JSON value as the file spells it, cut short enough for one error line."""
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_json(text: str, where: str, expected: str) -> Any:
    """``text`` as JSON; malformed or too deeply nested JSON is one line naming ``where`` (and
    the error's line where ``text`` has several) and what the input should be (``expected``).

    >>> parse_json('{"a": 1}', "data.jsonl:3", "each line must be one JSON object")
    {'a': 1}
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        at = f"{where}:{error.lineno}" if "\n" in text.strip() else where
        raise UserError(f"{at}: malformed JSON ({error.msg}); {expected}") from None
    except RecursionError:
        raise UserError(f"{where}: JSON nested too deeply; {expected}") from None


def read_records(path: str | Path) -> list[Record]:
    """Read a JSONL file of records; any bad line raises :class:`UserError` with file:line."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{source}: no such data file (create one with `emoneuron data synth`)")
    records: list[Record] = []
    seen: set[str] = set()
    with source.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{source}:{number}"
            try:
                record = Record.from_json(
                    parse_json(line, where, "each line must be one JSON record"))
            except ValueError as error:
                raise UserError(f"{where}: {error}") from None
            if record.id in seen:
                raise UserError(f"{where}: duplicate id {record.id!r}; "
                                "ids must be unique")
            seen.add(record.id)
            records.append(record)
    if not records:
        raise UserError(f"{source}: no records found; expected one JSON record per line")
    return records


def write_records(path: str | Path, records: list[Record]) -> None:
    with atomic_open(path) as handle:
        for record in records:
            handle.write(json.dumps(record.to_json(), ensure_ascii=False) + "\n")


def records_hash(records: list[Record]) -> str:
    """Content hash of records in order: identical data gives an identical hash."""
    blob = "\n".join(json.dumps(record.to_json(), sort_keys=True, ensure_ascii=False)
                     for record in records)
    return sha256_bytes(blob.encode("utf-8"))


def select_classes(records: list[Record], include_neutral: bool) -> tuple[list[Record], int]:
    """The records of the analysed classes and how many neutral ones were dropped.

    The six-way analysis keeps :data:`EMOTIONS` only; ``include_neutral`` keeps
    :data:`NEUTRAL` as a seventh class.
    """
    if include_neutral:
        return list(records), 0
    kept = [record for record in records if record.emotion != NEUTRAL]
    return kept, len(records) - len(kept)
