"""The reference study's LLM-written dialogues: one JSON object per dialogue.

The file is a JSON array of objects, or JSONL (one object per line). Each object has:

- the label: ``emotion`` or ``label`` (one of the six, neutral, or an alias);
- the dialogue: ``dialogue``, ``turns`` or ``conversation``: a list of strings (speakers
  alternate A/B), a list of ``{speaker, text}`` objects, or one string with a turn per line,
  each ``Name: text`` (or plain text, speakers alternating);
- optionally ``topic`` (kept in ``meta.topic`` and in the id) and ``id``.

The record id is the object's ``id`` if it has one, else ``emoprism-<topic>-<n>``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from emoneuron.data.loaders.common import (
    Loaded,
    LoadOptions,
    LoadReport,
    clean,
    label_of,
    read_text,
    unique_ids,
)
from emoneuron.data.loaders.tabular import jsonl_rows, turns_of
from emoneuron.data.schema import Record, Turn, parse_json
from emoneuron.errors import UserError

LABEL_FIELDS = ("emotion", "label")
DIALOGUE_FIELDS = ("dialogue", "turns", "conversation")
_NAMED_LINE = re.compile(r"^\s*([^:\n]{1,40}?)\s*:\s*(\S.*)$")
SHAPE = ("each object needs 'emotion' (or 'label') and 'dialogue' (or 'turns', "
         "'conversation'), optionally 'topic' and 'id'")


def _objects(path: Path) -> Iterator[tuple[str, Any]]:
    text = read_text(path)
    if not text.lstrip().startswith("["):
        yield from jsonl_rows(path, (), SHAPE)
        return
    items = parse_json(text, str(path), "the file must be a JSON array of dialogue objects or "
                       "one object per line")
    for position, item in enumerate(items):
        yield f"{path}: item {position}", item


def _field(item: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    for name in names:
        if name in item:
            return item[name]
    raise UserError(f"{where}: no {' or '.join(map(repr, names))} field; {SHAPE}")


def _turns(value: Any, where: str) -> list[Turn]:
    if not isinstance(value, str):
        return turns_of(value, "", where)
    turns = []
    for line in value.splitlines():
        named = _NAMED_LINE.match(line)
        if named:
            turns.append(Turn(clean(named.group(1)), clean(named.group(2))))
        elif clean(line):
            turns.append(Turn("A" if len(turns) % 2 == 0 else "B", clean(line)))
    return turns


def load_emoprism(path: str | Path, options: LoadOptions) -> Loaded:
    del options  # no options apply: one object is one dialogue
    source = Path(path)
    if not source.is_file():
        raise UserError(f"{source}: no such file")
    report = LoadReport(source=f"emoprism {source.name}")
    records = []
    for number, (where, item) in enumerate(_objects(source)):
        if not isinstance(item, dict):
            raise UserError(f"{where}: expected a JSON object, got {type(item).__name__}; "
                            f"{SHAPE}")
        emotion = label_of(_field(item, LABEL_FIELDS, where), where)
        turns = _turns(_field(item, DIALOGUE_FIELDS, where), where)
        if not turns:
            report.skip("dialogue without text", detail=f"{where}: no text: skipped")
            continue
        topic = clean(str(item.get("topic", "")))
        slug = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-") or "untitled"
        given = item.get("id")
        identifier = (clean(str(given)) if given is not None else "") or f"emoprism-{slug}-{number}"
        records.append(Record(id=identifier, emotion=emotion, turns=tuple(turns),
                              source="emoprism", meta={"topic": topic} if topic else {}))
    records = unique_ids(records, report)
    report.records = len(records)
    return Loaded(records, report)
