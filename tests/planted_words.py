"""Dialogues whose emotion is one planted word: random filler words, each emotion's with its
own signature word twice among them (the emotion directions' and their tests' data)."""

from __future__ import annotations

import random

from emoneuron.data.schema import EMOTIONS, Record, Turn

SIGNATURES = dict(zip(EMOTIONS, ("angry", "disgusting", "scared", "happy", "sad", "expect"),
                      strict=True))
FILLER = ("the", "door", "book", "page", "day", "house", "match", "joke", "milk", "week",
          "open", "next", "sit", "down", "please", "teacher", "what", "that")


def planted(per_emotion: int, seed: int) -> list[Record]:
    """Dialogues of random filler words, each emotion's with its own signature word twice
    among them."""
    rng = random.Random(seed)
    records = []
    for emotion in EMOTIONS:
        for k in range(per_emotion):
            words = rng.choices(FILLER, k=6)
            for _ in range(2):
                words.insert(rng.randrange(len(words) + 1), SIGNATURES[emotion])
            records.append(Record(f"{seed}-{emotion}-{k}", emotion,
                                  (Turn("A", " ".join(words[:4])), Turn("B", " ".join(words[4:])))))
    return records
