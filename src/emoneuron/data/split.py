"""Stratified, seeded splits: few-shot examples, identification set, held-out evaluation set."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from dataclasses import dataclass

from emoneuron.data.dedup import NEAR_THRESHOLD, duplicate_groups
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
          fewshot_per_emotion: int = 1, source: str = "data", *,
          near_threshold: float = NEAR_THRESHOLD, allow_leaks: bool = False) -> Splits:
    """Disjoint splits, stratified by emotion: neurons are never chosen on evaluation dialogues.

    Records that repeat one another (same normalised text, word 3-gram Jaccard >=
    ``near_threshold``, or windows of one dialogue) are kept on one side, so no evaluation record
    repeats an identification or few-shot one. Without such groups, or with ``allow_leaks``,
    the split is the plain stratified one.
    """
    if not 0 < eval_fraction < 1:
        raise UserError(f"eval fraction {eval_fraction} must be between 0 and 1")
    rng = random.Random(seed)
    fewshot: list[int] = []
    identify: list[int] = []
    evaluate: list[int] = []
    for emotion in EMOTIONS:
        pool = [i for i, r in enumerate(records) if r.emotion == emotion]
        n_eval = round(len(pool) * eval_fraction)
        n_identify = len(pool) - n_eval - fewshot_per_emotion
        _require(emotion, len(pool), n_eval, n_identify, eval_fraction, fewshot_per_emotion,
                 source)
        rng.shuffle(pool)
        fewshot += pool[:fewshot_per_emotion]
        evaluate += pool[fewshot_per_emotion:fewshot_per_emotion + n_eval]
        identify += pool[fewshot_per_emotion + n_eval:]
    # Interleave emotions again so batches and bootstrap resamples mix them.
    rng.shuffle(identify)
    rng.shuffle(evaluate)
    side = None if allow_leaks else _keep_duplicates_together(records, fewshot, identify,
                                                              evaluate, near_threshold)
    if side is not None:
        order = identify + evaluate
        identify = [i for i in order if side[i] == "identify"]
        evaluate = [i for i in order if side[i] == "eval"]
        for emotion in EMOTIONS:
            n_eval = sum(records[i].emotion == emotion for i in evaluate)
            n_identify = sum(records[i].emotion == emotion for i in identify)
            _require(emotion, n_eval + n_identify + fewshot_per_emotion, n_eval, n_identify,
                     eval_fraction, fewshot_per_emotion, source,
                     " once repeated dialogues are kept on one side")
    return Splits(fewshot=[records[i] for i in fewshot],
                  identify=[records[i] for i in identify],
                  evaluate=[records[i] for i in evaluate])


def _require(emotion: str, size: int, n_eval: int, n_identify: int, eval_fraction: float,
             fewshot_per_emotion: int, source: str, why: str = "") -> None:
    if n_identify < 2 or n_eval < 2:
        raise UserError(
            f"{source}: emotion {emotion!r} has {size} dialogues, which leaves "
            f"{n_eval} for evaluation and {max(n_identify, 0)} for identification at eval "
            f"fraction {eval_fraction} after {fewshot_per_emotion} few-shot example(s){why}; "
            "each needs at least 2 (add data or change --eval-fraction)")


def _keep_duplicates_together(records: list[Record], fewshot: list[int], identify: list[int],
                              evaluate: list[int], near_threshold: float) -> dict[int, str] | None:
    """The side of every position once no group straddles evaluation and the rest (None if
    none did).

    A straddling group goes where most of its members landed, to identification on a tie or
    when one of its members is a few-shot example (the prompt must not hold an evaluation text).
    """
    side = {i: "fewshot" for i in fewshot} | {i: "identify" for i in identify} | {
        i: "eval" for i in evaluate}
    members: dict[int, list[int]] = defaultdict(list)
    for position, group in enumerate(duplicate_groups(records, near_threshold)):
        if position in side:
            members[group].append(position)
    changed = False
    for positions in members.values():
        sides = Counter(side[i] for i in positions)
        if not sides["eval"] or sides["eval"] == len(positions):
            continue
        target = ("identify" if sides["fewshot"] or sides["identify"] >= sides["eval"]
                  else "eval")
        for i in positions:
            if side[i] != "fewshot":
                side[i] = target
        changed = True
    return side if changed else None
