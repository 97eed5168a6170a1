"""Emotion-labelled dialogues: the record schema, label aliases, the synthetic generator, splits."""

from emoneuron.data.schema import (
    EMOTIONS,
    LABELS,
    NEUTRAL,
    Record,
    Turn,
    normalize_emotion,
    read_records,
    select_classes,
    write_records,
)

__all__ = ["EMOTIONS", "LABELS", "NEUTRAL", "Record", "Turn", "normalize_emotion", "read_records",
           "select_classes", "write_records"]
