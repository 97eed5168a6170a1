"""MELD (Poria et al. 2019): ``train_sent_emo.csv``, ``dev_sent_emo.csv``, ``test_sent_emo.csv``.

One row per utterance with ``Utterance``, ``Speaker``, ``Emotion`` (neutral, joy, surprise,
anger, sadness, disgust, fear), ``Dialogue_ID`` and ``Utterance_ID`` (other columns are
ignored). Rows are grouped by dialogue and ordered by utterance id. The release's text has stray
Windows-1252 bytes and mojibake (``â€™`` for a right single quote); both are repaired on reading.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from emoneuron.data.loaders.common import (
    Loaded,
    LoadOptions,
    LoadReport,
    Utterance,
    clean,
    context_windows,
    label_of,
    split_file,
)
from emoneuron.data.loaders.tabular import csv_rows
from emoneuron.errors import UserError

SPLITS = ("train", "dev", "test")
COLUMNS = ("Utterance", "Speaker", "Emotion", "Dialogue_ID", "Utterance_ID")


def _integer(value: str, column: str, where: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise UserError(f"{where}: {column} {value!r} is not a whole number; is this a MELD "
                        "*_sent_emo.csv file?") from None


def load_meld(path: str | Path, options: LoadOptions) -> Loaded:
    source = split_file(Path(path), options.split, "{split}_sent_emo.csv", SPLITS)
    split = options.split or source.name.split("_")[0]
    report = LoadReport(source=f"meld {source.name}")
    dialogues: dict[int, dict[int, Utterance]] = defaultdict(dict)
    for where, row in csv_rows(source, COLUMNS, "MELD's *_sent_emo.csv columns"):
        dialogue = _integer(row["Dialogue_ID"], "Dialogue_ID", where)
        position = _integer(row["Utterance_ID"], "Utterance_ID", where)
        if position in dialogues[dialogue]:
            report.skip("repeated (Dialogue_ID, Utterance_ID)", detail=(
                f"{where}: dialogue {dialogue} utterance {position} appears again: skipped"))
            continue
        dialogues[dialogue][position] = Utterance(
            clean(row["Speaker"]) or "unknown", clean(row["Utterance"]),
            label_of(row["Emotion"], where), where)
    records = []
    for dialogue, utterances in dialogues.items():
        records += context_windows(f"meld-{split}-d{dialogue}",
                                   [utterances[i] for i in sorted(utterances)],
                                   options.context, "meld", report)
    report.records = len(records)
    return Loaded(records, report)
