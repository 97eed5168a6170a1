"""Small corpus files in each real format, written by the tests (no corpus is shipped or needed).

The text is made up for these tests; only the file layouts follow the real releases.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

# (tokenised utterances, emotion ids) per DailyDialog line; the third line is misaligned on
# purpose, like train line 7852 of the real release (3 utterances, 2 labels).
DAILYDIALOG = [
    (["Did you see my keys ?", "They \u2019 re on the table , next to the lamp .",
      "Oh no , it \u2019 s broken !"], ["0", "0", "5"]),
    (["We won the match !", "That \u2019 s wonderful news ."], ["4", "4"]),
    (["Where is it ?", "Over there .", "Thanks ."], ["0", "0"]),
    (["Who left this mess ?", "Not me .", "Then clean it up right now !", "What ? Really ?"],
     ["1", "0", "1", "6"]),
]
MELD_COLUMNS = ["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID",
                "Utterance_ID", "Season", "Episode", "StartTime", "EndTime"]
# Published per-emotion counts of MELD's test split (2610 utterances).
MELD_TEST_COUNTS = {"neutral": 1256, "joy": 402, "surprise": 281, "anger": 345, "sadness": 208,
                    "disgust": 68, "fear": 50}


def write_dailydialog(root: Path, split: str = "train",
                      lines: list[tuple[list[str], list[str]]] = DAILYDIALOG) -> Path:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"dialogues_{split}.txt").write_text(
        "".join(" __eou__ ".join(texts) + " __eou__\n" for texts, _ in lines), encoding="utf-8")
    (folder / f"dialogues_emotion_{split}.txt").write_text(
        "".join(" ".join(labels) + " \n" for _, labels in lines), encoding="utf-8")
    return root


def meld_csv(rows: list[tuple[str, str, str, int, int]]) -> bytes:
    """MELD's layout from ``(utterance, speaker, emotion, dialogue, utterance id)`` rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(MELD_COLUMNS)
    for number, (text, speaker, emotion, dialogue, position) in enumerate(rows, start=1):
        writer.writerow([number, text, speaker, emotion, "neutral", dialogue, position, 1, 1,
                         "00:00:01,000", "00:00:02,000"])
    return buffer.getvalue().encode("utf-8")


def meld_test_rows() -> list[tuple[str, str, str, int, int]]:
    """2610 utterances with MELD's published test distribution, 10 per dialogue."""
    labels = [emotion for emotion, count in MELD_TEST_COUNTS.items() for _ in range(count)]
    return [(f"Line {i} of the scene, isn\u00e2\u20ac\u2122t it?", ["Ross", "Rachel"][i % 2],
             label, i // 10, i % 10) for i, label in enumerate(labels)]
