"""How varied a data set's wording is: distinct word n-grams in a fixed number of dialogues.

Counting distinct n-grams in a *fixed* number of dialogues (not per dialogue of any sample)
keeps the number comparable between generators: a template generator saturates, so its count
grows far slower than the sample once its phrasing is used up.
"""

from __future__ import annotations

import re

from emoneuron.data.schema import Record

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)*")


def distinct_ngrams(records: list[Record], n: int = 4) -> int:
    """Distinct lowercase word ``n``-grams over the records; n-grams do not cross dialogues."""
    grams: set[tuple[str, ...]] = set()
    for record in records:
        words = [word for turn in record.turns
                 for word in _WORD.findall(turn.text.lower().replace("\u2019", "'"))]
        grams.update(tuple(words[start:start + n]) for start in range(len(words) - n + 1))
    return len(grams)


def distinct_4grams_per_1000(records: list[Record]) -> int:
    """Distinct word 4-grams in the first 1,000 dialogues; refuses a smaller sample."""
    if len(records) < 1000:
        raise ValueError(f"need at least 1000 dialogues to measure variety, got {len(records)}")
    return distinct_ngrams(records[:1000], 4)
