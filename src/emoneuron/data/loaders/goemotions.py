"""GoEmotions (Demszky et al. 2020), the TSV release: ``text<TAB>label ids<TAB>id``, no header.

Label ids are comma-separated indices into the 28 GoEmotions labels; they are mapped to Ekman's
six with the dataset's official mapping, 27 (neutral) to neutral. A row whose labels map to more
than one class (two of the six, or one of them and neutral) is dropped and counted.
"""

from __future__ import annotations

from pathlib import Path

from emoneuron.data.loaders.common import (
    Loaded,
    LoadOptions,
    LoadReport,
    clean,
    read_text,
    split_file,
    unique_ids,
)
from emoneuron.data.schema import NEUTRAL, Record, Turn
from emoneuron.errors import UserError

SPLITS = ("train", "dev", "test")
LABELS = (
    "admiration", "amusement", "anger", "annoyance", "approval", "caring", "confusion",
    "curiosity", "desire", "disappointment", "disapproval", "disgust", "embarrassment",
    "excitement", "fear", "gratitude", "grief", "joy", "love", "nervousness", "optimism",
    "pride", "realization", "relief", "remorse", "sadness", "surprise", "neutral",
)
EKMAN: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "annoyance", "disapproval"),
    "disgust": ("disgust",),
    "fear": ("fear", "nervousness"),
    "happiness": ("joy", "amusement", "approval", "excitement", "gratitude", "love", "optimism",
                  "relief", "pride", "admiration", "desire", "caring"),
    "sadness": ("sadness", "disappointment", "embarrassment", "grief", "remorse"),
    "surprise": ("surprise", "realization", "confusion", "curiosity"),
    NEUTRAL: ("neutral",),
}
CLASS_OF_ID: dict[str, str] = {str(LABELS.index(label)): emotion
                               for emotion, labels in EKMAN.items() for label in labels}


def _class(ids_field: str, where: str) -> set[str]:
    ids = [part.strip() for part in ids_field.split(",")]
    unknown = [i for i in ids if i not in CLASS_OF_ID]
    if unknown:
        raise UserError(f"{where}: label id {unknown[0]!r} is not one of 0-27; each line must "
                        "be text<TAB>comma-separated label ids<TAB>id")
    return {CLASS_OF_ID[i] for i in ids}


def load_goemotions(path: str | Path, options: LoadOptions) -> Loaded:
    source = split_file(Path(path), options.split, "{split}.tsv", SPLITS)
    report = LoadReport(source=f"goemotions {source.name}")
    records = []
    for number, line in enumerate(read_text(source).splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{source}:{number}"
        fields = line.split("\t")
        if len(fields) != 3:
            raise UserError(f"{where}: {len(fields)} tab-separated fields, expected 3 (text, "
                            "comma-separated label ids, id)")
        text, ids_field, identifier = fields
        classes = _class(ids_field, where)
        if len(classes) > 1:
            report.skip("labels map to more than one class (Ekman mapping)")
            continue
        if not clean(text) or not clean(identifier):
            report.skip("empty text or id", detail=f"{where}: empty text or id: skipped")
            continue
        records.append(Record(id=f"goemotions-{clean(identifier)}", emotion=classes.pop(),
                              turns=(Turn("A", clean(text)),), source="goemotions"))
    records = unique_ids(records, report)
    report.records = len(records)
    return Loaded(records, report)
