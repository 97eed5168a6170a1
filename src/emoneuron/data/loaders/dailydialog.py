"""DailyDialog (Li et al. 2017): ``dialogues_<split>.txt`` + ``dialogues_emotion_<split>.txt``.

One dialogue per line, utterances ended by ``__eou__``, one emotion id per utterance in the
emotion file (0 no emotion -> neutral, 1 anger, 2 disgust, 3 fear, 4 happiness, 5 sadness,
6 surprise). Speakers alternate A/B. A line whose utterance and label counts differ is reported
(file, line, both counts) and skipped, so labels never shift onto the wrong utterance.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from emoneuron.data.loaders.common import (
    Loaded,
    LoadOptions,
    LoadReport,
    Utterance,
    alternating_speaker,
    clean,
    context_windows,
    read_text,
)
from emoneuron.data.schema import NEUTRAL
from emoneuron.errors import UserError

SPLITS = ("train", "validation", "test")
EMOTION_IDS = {"0": NEUTRAL, "1": "anger", "2": "disgust", "3": "fear", "4": "happiness",
               "5": "sadness", "6": "surprise"}
END_OF_UTTERANCE = "__eou__"

# The release separates every token with spaces ("it \u2019 s", "Hi , Sam ."). Joined back:
_DETOKENISE = (
    (re.compile(r"(\w) ([\u2019']) (s|t|re|ve|ll|d|m)\b", re.IGNORECASE), r"\1\2\3"),
    (re.compile(r"\b(o|ma) ([\u2019']) (\w)", re.IGNORECASE), r"\1\2\3"),  # o'clock, ma'am
    (re.compile(r" ([,.!?;:%)\]}”])"), r"\1"),  # no space before closing punctuation
    (re.compile(r"([(\[{“$£€¥]) "), r"\1"),  # none after opening brackets and currency signs
)


def detokenise(text: str) -> str:
    """``it \u2019 s great , isn ' t it ?`` -> ``it\u2019s great, isn't it?``.

    Contractions (and o'clock, ma'am, O'Brien) are joined; spaces before closing punctuation
    and after opening brackets, curly opening quotes and currency signs are removed. Straight
    double quotes are left as they are: opening and closing ones cannot be told apart.
    """
    text = clean(text)
    for pattern, replacement in _DETOKENISE:
        text = pattern.sub(replacement, text)
    return text


def _files(root: Path, split: str | None) -> tuple[Path, Path, str]:
    if split is None:
        raise UserError(f"{root}: name the DailyDialog split with --split ({', '.join(SPLITS)})")
    folder = root / split if (root / split).is_dir() else root
    text = folder / f"dialogues_{split}.txt"
    labels = folder / f"dialogues_emotion_{split}.txt"
    for path in (text, labels):
        if not path.is_file():
            raise UserError(f"{path}: no such file; DailyDialog needs <PATH>/{split}/"
                            f"dialogues_{split}.txt and dialogues_emotion_{split}.txt "
                            f"(--split is one of {', '.join(SPLITS)})")
    return text, labels, split


def load_dailydialog(path: str | Path, options: LoadOptions) -> Loaded:
    text_path, label_path, split = _files(Path(path), options.split)
    report = LoadReport(source=f"dailydialog {split}")
    text_lines = read_text(text_path).splitlines()
    label_lines = read_text(label_path).splitlines()
    if len(text_lines) != len(label_lines):
        report.notes.append(f"{text_path.name} has {len(text_lines)} lines, "
                            f"{label_path.name} {len(label_lines)}: extra lines are skipped")
        report.skip("line without a partner line", abs(len(text_lines) - len(label_lines)))
    release_labels: Counter[str] = Counter()
    release_dialogues = 0
    records = []
    for index, (text_line, label_line) in enumerate(zip(text_lines, label_lines, strict=False)):
        if not text_line.strip() and not label_line.strip():
            continue
        number = index + 1
        where = f"{label_path}:{number}"
        texts = [t for t in text_line.split(END_OF_UTTERANCE) if t.strip()]
        labels = label_line.split()
        unknown = [label for label in labels if label not in EMOTION_IDS]
        if unknown:
            raise UserError(f"{where}: emotion id {unknown[0]!r} is not one of 0-6; is this "
                            "a dialogues_emotion_<split>.txt file?")
        release_dialogues += 1
        release_labels.update(EMOTION_IDS[label] for label in labels)
        if len(texts) != len(labels):
            report.skip("dialogue whose utterance and label counts differ", detail=(
                f"{text_path}:{number} has {len(texts)} utterances but {where} has "
                f"{len(labels)} labels: dialogue skipped"))
            continue
        utterances = [Utterance(alternating_speaker(i), detokenise(text), EMOTION_IDS[label],
                                f"{text_path}:{number}")
                      for i, (text, label) in enumerate(zip(texts, labels, strict=True))]
        records += context_windows(f"dailydialog-{split}-{index:05d}", utterances,
                                   options.context, "dailydialog", report)
    report.notes.append(f"the release's {split} files: {release_dialogues} dialogues, "
                        f"{sum(release_labels.values())} labelled utterances ("
                        + ", ".join(f"{label} {count}" for label, count
                                    in release_labels.most_common()) + ")")
    report.records = len(records)
    return Loaded(records, report)
