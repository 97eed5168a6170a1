"""Stratified, seeded splits: few-shot examples, identification set, held-out evaluation set."""

from __future__ import annotations

import random
from dataclasses import dataclass

from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError


@dataclass(frozen=True)
class Splits:
    fewshot: list[Record]
    identify: list[Record]
    evaluate: list[Record]

    def counts(self) -> dict[str, dict[str, int]]:
        return {name: {e: sum(r.emotion == e for r in part) for e in EMOTIONS}
                for name, part in (("fewshot", self.fewshot), ("identify", self.identify),
                                   ("eval", self.evaluate))}


def split(records: list[Record], eval_fraction: float, seed: int,
          fewshot_per_emotion: int = 1, source: str = "data") -> Splits:
    """Disjoint splits, stratified by emotion: neurons are never chosen on evaluation dialogues."""
    if not 0 < eval_fraction < 1:
        raise UserError(f"eval fraction {eval_fraction} must be between 0 and 1")
    rng = random.Random(seed)
    fewshot: list[Record] = []
    identify: list[Record] = []
    evaluate: list[Record] = []
    for emotion in EMOTIONS:
        pool = [r for r in records if r.emotion == emotion]
        n_eval = round(len(pool) * eval_fraction)
        n_identify = len(pool) - n_eval - fewshot_per_emotion
        if n_identify < 2 or n_eval < 2:
            raise UserError(
                f"{source}: emotion {emotion!r} has {len(pool)} dialogues, which leaves "
                f"{n_eval} for evaluation and {max(n_identify, 0)} for identification at eval "
                f"fraction {eval_fraction} after {fewshot_per_emotion} few-shot example(s); "
                "each needs at least 2 (add data or change --eval-fraction)")
        rng.shuffle(pool)
        fewshot += pool[:fewshot_per_emotion]
        evaluate += pool[fewshot_per_emotion:fewshot_per_emotion + n_eval]
        identify += pool[fewshot_per_emotion + n_eval:]
    # Interleave emotions again so batches and bootstrap resamples mix them.
    rng.shuffle(identify)
    rng.shuffle(evaluate)
    return Splits(fewshot=fewshot, identify=identify, evaluate=evaluate)
