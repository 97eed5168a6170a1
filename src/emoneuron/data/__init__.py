"""Emotion-labelled dialogues: the record schema, label aliases, the synthetic generator, splits."""

from emoneuron.data.schema import (
    EMOTIONS,
    Record,
    Turn,
    normalize_emotion,
    read_records,
    write_records,
)

__all__ = ["EMOTIONS", "Record", "Turn", "normalize_emotion", "read_records", "write_records"]
