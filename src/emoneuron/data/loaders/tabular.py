"""Your own ``jsonl`` or ``csv`` files, with the columns named on the command line.

Dialogue-level (no ``--dialogue-column``): one row is one dialogue; its text column is split
into turns at ``--turn-separator`` (default: a line break), speakers alternate A/B. In JSONL the
text may also be a list of strings or of ``{speaker, text}`` objects.

Utterance-level (``--dialogue-column`` given): one row is one utterance; rows with the same
dialogue id form a dialogue in file order, and each labelled utterance becomes a context-window
record. A row with an empty label is context only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from emoneuron.data.loaders.common import (
    Loaded,
    LoadOptions,
    LoadReport,
    Utterance,
    alternating_speaker,
    clean,
    context_windows,
    label_of,
    read_text,
    unique_ids,
)
from emoneuron.data.schema import Record, Turn, parse_json
from emoneuron.errors import UserError

Row = dict[str, Any]


def _missing(where: str, wanted: Sequence[str], present: Sequence[str], what: str) -> None:
    missing = [column for column in wanted if column not in present]
    if missing:
        raise UserError(f"{where}: no column {', '.join(map(repr, missing))} (it has "
                        f"{', '.join(map(repr, present)) or 'none'}); expected {what}")


def csv_rows(path: Path, wanted: Sequence[str], what: str) -> Iterator[tuple[str, Row]]:
    """``(file:line, row)`` for each non-empty row of a CSV file with a header row."""
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        header = [name.strip().lstrip("\ufeff") for name in next(reader, [])]
        _missing(f"{path}:1", wanted, header, what)
        start = reader.line_num + 1
        for fields in reader:
            where = f"{path}:{start}"
            start = reader.line_num + 1
            if not any(field.strip() for field in fields):
                continue
            if len(fields) != len(header):  # extra fields would be dropped, missing ones empty
                raise UserError(f"{where}: {len(fields)} fields where the header has "
                                f"{len(header)}; quote fields that contain commas and close "
                                "every opened quote")
            yield where, dict(zip(header, fields, strict=False))
    except csv.Error as error:
        raise UserError(f"{path}:{reader.line_num}: malformed CSV ({error}); check the quoting "
                        "on that line") from None


def jsonl_rows(path: Path, wanted: Sequence[str], what: str) -> Iterator[tuple[str, Row]]:
    """``(file:line, object)`` for each non-empty line of a JSONL file."""
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        row = parse_json(line, where, "each line must be one JSON object")
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(row).__name__}")
        _missing(where, wanted, list(row), what)
        yield where, row


def turns_of(value: Any, separator: str, where: str) -> list[Turn]:
    """Turns from a string split at ``separator``, a list of strings, or of {speaker, text}."""
    if isinstance(value, str):
        value = value.split(separator) if separator else [value]
    if not isinstance(value, list):
        raise UserError(f"{where}: the dialogue must be a string or a list of turns, got "
                        f"{type(value).__name__}")
    turns = []
    for position, item in enumerate(value):
        if isinstance(item, dict) and isinstance(item.get("text"), str):
            speaker = clean(str(item.get("speaker", ""))) or alternating_speaker(position)
            text = item["text"]
        elif isinstance(item, str):
            speaker, text = alternating_speaker(position), item
        else:
            raise UserError(f"{where}: turn {position} must be a string or an object with a "
                            "string 'text'")
        if clean(text):
            turns.append(Turn(speaker, clean(text)))
    return turns


def _text(value: Any) -> str:
    return "" if value is None else clean(str(value))


def _dialogue_rows(rows: Iterator[tuple[str, Row]], options: LoadOptions, stem: str,
                   report: LoadReport) -> list[Record]:
    records = []
    for where, row in rows:
        label = _text(row[options.label_column])
        turns = turns_of(row[options.text_column], options.turn_separator, where)
        if not label or not turns:
            report.skip("row without label or text",
                        detail=f"{where}: no {'label' if not label else 'text'}: skipped")
            continue
        line = where.rsplit(":", 1)[1]
        identifier = _text(row[options.id_column]) if options.id_column else ""
        records.append(Record(id=identifier or f"{stem}-{line}", emotion=label_of(label, where),
                              turns=tuple(turns), source=stem))
    return unique_ids(records, report)


def _utterance_rows(rows: Iterator[tuple[str, Row]], options: LoadOptions, dialogue_column: str,
                    stem: str, report: LoadReport) -> list[Record]:
    dialogues: dict[str, list[Utterance]] = {}
    for where, row in rows:
        utterances = dialogues.setdefault(_text(row[dialogue_column]), [])
        label = _text(row[options.label_column])
        speaker = _text(row[options.speaker_column]) if options.speaker_column else ""
        utterances.append(Utterance(speaker or alternating_speaker(len(utterances)),
                                    _text(row[options.text_column]),
                                    label_of(label, where) if label else None, where))
    records = []
    for dialogue, utterances in dialogues.items():
        records += context_windows(f"{stem}-{dialogue}", utterances, options.context, stem,
                                   report)
    return unique_ids(records, report)


def load_table(path: str | Path, options: LoadOptions, kind: str) -> Loaded:
    """Read a ``jsonl`` or ``csv`` (``kind``) file with the columns named in ``options``."""
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    optional = (options.id_column, options.speaker_column, options.dialogue_column)
    wanted = [options.text_column, options.label_column, *(c for c in optional if c)]
    what = (f"the columns named by --text-column ({options.text_column}) and --label-column "
            f"({options.label_column}) and any other --*-column option")
    rows = (csv_rows if kind == "csv" else jsonl_rows)(source, wanted, what)
    report = LoadReport(source=f"{kind} {source.name}")
    if options.dialogue_column:
        records = _utterance_rows(rows, options, options.dialogue_column, source.stem, report)
    else:
        records = _dialogue_rows(rows, options, source.stem, report)
    report.records = len(records)
    return Loaded(records, report)
