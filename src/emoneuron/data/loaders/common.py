"""What every loader shares: options, the skip report, text repair and context windows."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from emoneuron.data.schema import Record, Turn, normalize_emotion
from emoneuron.errors import UserError
from emoneuron.options import at_least, check_fields

DEFAULT_CONTEXT = 4  # turns before the target utterance in an utterance-level record
MAX_WARNINGS = 20  # specific skip messages kept (and printed); the counts are always complete


@dataclass(frozen=True)
class LoadOptions:
    """How to read a corpus; the column names apply to the ``jsonl`` and ``csv`` formats."""

    split: str | None = None
    context: int = DEFAULT_CONTEXT
    text_column: str = "text"
    label_column: str = "emotion"
    id_column: str | None = None
    speaker_column: str | None = None
    dialogue_column: str | None = None  # set: one row per utterance, grouped into dialogues
    turn_separator: str = "\n"  # dialogue-level rows: splits the text column into turns

    def __post_init__(self) -> None:
        check_fields(self)
        at_least("context", self.context, 0)


@dataclass
class LoadReport:
    """What a loader read, kept and skipped (and why): printed by ``emoneuron data load``."""

    source: str
    records: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1, detail: str | None = None) -> None:
        self.skipped[reason] += count
        if detail is not None and len(self.warnings) < MAX_WARNINGS:
            self.warnings.append(detail)

    def lines(self) -> list[str]:
        out = [f"{self.source}: {self.records} records"]
        out += [f"  note: {note}" for note in self.notes]
        out += [f"  skipped {count}: {reason}" for reason, count in sorted(self.skipped.items())]
        out += [f"  warning: {warning}" for warning in self.warnings]
        hidden = sum(self.skipped.values()) - len(self.warnings)
        if self.warnings and hidden > 0:
            out.append(f"  ({hidden} more skipped without a message of their own)")
        return out


@dataclass(frozen=True)
class Loaded:
    records: list[Record]
    report: LoadReport


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str
    label: str | None  # None: context only, not a target
    where: str  # file:line, for messages


def read_text(path: Path) -> str:
    """The file as text: UTF-8, with stray bytes and the usual mojibake repaired (never fails)."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UserError(f"{path}: cannot read ({error.strerror}); check the path") from None
    return repair_text(data.decode("utf-8", errors="surrogateescape"))


def _cp1252_byte(char: str) -> bytes:
    """The byte a Windows-1252 decoder turned into ``char`` (Latin-1 where cp1252 has a gap)."""
    if ord(char) < 256:
        return bytes([ord(char)])
    return char.encode("cp1252")


# UTF-8 text that was decoded as Windows-1252 somewhere: a right quote became "â€™", "é" "Ã©".
_MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d"
                       "\u017e\u0192\u02c6\u02dc\u2013-\u203a\u20ac\u2122]{1,3}")
_STRAY = re.compile("[\udc80-\udcff\u0080-\u009f]")  # undecodable bytes, C1 control characters


def _undo_mojibake(match: re.Match[str]) -> str:
    try:
        return b"".join(_cp1252_byte(c) for c in match.group()).decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return match.group()


def _stray(match: re.Match[str]) -> str:
    # A lone Windows-1252 byte (0x92 is its right quote) shows up either as an undecodable byte
    # or as a C1 control character; both mean the cp1252 character. Its gaps are dropped.
    code = ord(match.group())
    byte = code - 0xDC00 if code >= 0xDC00 else code
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return ""


def repair_text(text: str) -> str:
    """Undo mojibake, map stray cp1252 bytes to their characters, drop what stays unreadable."""
    return _STRAY.sub(_stray, _MOJIBAKE.sub(_undo_mojibake, text)).replace("\x00", "")


def label_of(value: object, where: str) -> str:
    try:
        return normalize_emotion(str(value))
    except UserError as error:
        raise UserError(f"{where}: {error}") from None


def context_windows(dialogue: str, utterances: Sequence[Utterance], context: int, source: str,
                    report: LoadReport) -> list[Record]:
    """One record per labelled utterance: it as the last turn, up to ``context`` turns before it.

    Utterances with no text are skipped (and reported); they are not part of any context.
    """
    kept: list[Utterance] = []
    for utterance in utterances:
        if utterance.text:
            kept.append(utterance)
        else:
            report.skip("empty utterance", detail=f"{utterance.where}: empty utterance skipped")
    records = []
    for position, utterance in enumerate(kept):
        if utterance.label is None:
            continue
        window = kept[max(0, position - context):position + 1]
        records.append(Record(
            id=f"{dialogue}-u{position}", emotion=utterance.label,
            turns=tuple(Turn(u.speaker, u.text) for u in window), source=source,
            meta={"dialogue": dialogue, "utterance": position}))
    return records


def alternating_speaker(position: int) -> str:
    return "A" if position % 2 == 0 else "B"


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def clean(text: str) -> str:
    """One line of readable text: whitespace runs (newlines included) become one space.

    A lone surrogate (JSON can spell one, "\\ud800") cannot be written as UTF-8: it becomes
    U+FFFD.
    """
    return " ".join(_LONE_SURROGATE.sub("\ufffd", text).split())


def unique_ids(records: list[Record], report: LoadReport) -> list[Record]:
    """Keep the first record of each id; later ones are reported, not silently merged."""
    seen: set[str] = set()
    kept = []
    for record in records:
        if record.id in seen:
            report.skip("duplicate id", detail=f"duplicate id {record.id!r} skipped")
            continue
        seen.add(record.id)
        kept.append(record)
    return kept


def split_file(path: Path, split: str | None, pattern: str, splits: Sequence[str]) -> Path:
    """``path`` itself when it is a file, else ``pattern`` (with ``{split}``) inside it."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise UserError(f"{path}: no such file or folder")
    if split is None:
        raise UserError(f"{path} is a folder: name the split with --split "
                        f"({', '.join(splits)})")
    candidate = path / pattern.format(split=split)
    if not candidate.is_file():
        raise UserError(f"{candidate}: no such file (is --split {split!r} right? expected one of "
                        f"{', '.join(splits)})")
    return candidate
