"""Stratified, seeded splits: few-shot examples, identification set, held-out evaluation set,
with every template and every group of repeated dialogues on one side of evaluation."""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from emoneuron.data.dedup import NEAR_THRESHOLD, UnionFind, duplicate_groups
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.data.templates import TEMPLATE, meta_values
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

    Records that share a template (``meta["template"]``) or repeat one another (same normalised
    text, word 3-gram Jaccard >= ``near_threshold``, or windows of one dialogue) form one group,
    and every group lies wholly in evaluation or wholly outside it: evaluation dialogues are
    new texts of templates the neurons were not chosen on. Per emotion, the evaluation side
    takes the whole groups whose size sums closest to ``eval_fraction`` of the emotion's
    dialogues (a seeded choice among groups of equal size), keeping at least 2 dialogues on
    each side besides the few-shot examples. With ``allow_leaks``, every record is a group of
    its own: the plain stratified split.

    >>> from emoneuron.data.synth import synthesize
    >>> parts = split(synthesize(20, seed=0, max_turns=2), 0.3, seed=0)
    >>> {r.meta["template"] for r in parts.evaluate} & {r.meta["template"] for r in parts.identify}
    set()
    """
    if not 0 < eval_fraction < 1:
        raise UserError(f"eval fraction {eval_fraction} must be between 0 and 1")
    rng = random.Random(seed)
    groups = _groups(records, near_threshold, allow_leaks)
    rng.shuffle(groups)
    evaluated = _evaluated(records, groups, eval_fraction, fewshot_per_emotion, source)
    fewshot: list[int] = []
    identify: list[int] = []
    for emotion in EMOTIONS:
        rest = [i for i, r in enumerate(records) if r.emotion == emotion and i not in evaluated]
        rng.shuffle(rest)
        fewshot += rest[:fewshot_per_emotion]
        identify += rest[fewshot_per_emotion:]
    evaluate = sorted(evaluated)
    # Interleave emotions again so batches and bootstrap resamples mix them.
    rng.shuffle(identify)
    rng.shuffle(evaluate)
    return Splits(fewshot=[records[i] for i in fewshot],
                  identify=[records[i] for i in identify],
                  evaluate=[records[i] for i in evaluate])


def _evaluated(records: list[Record], groups: list[list[int]], eval_fraction: float,
               fewshot_per_emotion: int, source: str) -> set[int]:
    """Positions of the evaluation side: whole groups, per emotion as close to the fraction
    as they allow; a group spanning emotions is decided by the first of them."""
    evaluated: set[int] = set()
    decided: set[int] = set()
    for emotion in EMOTIONS:
        holding = [k for k, group in enumerate(groups) if _held(records, group, emotion)]
        open_groups = [k for k in holding if k not in decided]
        size = sum(_held(records, groups[k], emotion) for k in holding)
        fixed = _held(records, evaluated, emotion)
        chosen = _closest_sum([_held(records, groups[k], emotion) for k in open_groups],
                              target=round(size * eval_fraction) - fixed, low=2 - fixed,
                              high=size - fewshot_per_emotion - 2 - fixed)
        if chosen is None:
            raise UserError(
                f"{source}: emotion {emotion!r} has {size} dialogues in {len(holding)} "
                "group(s) that each stay on one side (a shared template, or repeats of one "
                "dialogue), which cannot leave at least 2 for evaluation and 2 for "
                f"identification after {fewshot_per_emotion} few-shot example(s) at eval "
                f"fraction {eval_fraction}; add dialogues (of more templates) or change "
                "--eval-fraction")
        evaluated.update(i for c in chosen for i in groups[open_groups[c]])
        decided.update(open_groups)
    return evaluated


def _held(records: list[Record], positions: Iterable[int], emotion: str) -> int:
    return sum(records[i].emotion == emotion for i in positions)


def _groups(records: list[Record], near_threshold: float, allow_leaks: bool) -> list[list[int]]:
    """Positions of the six emotions' records, grouped by template and by repeats (each record
    alone with ``allow_leaks``), in the order of their first record."""
    positions = [i for i, r in enumerate(records) if r.emotion in EMOTIONS]
    if allow_leaks:
        return [[i] for i in positions]
    together = UnionFind(len(records))
    first: dict[str, int] = {}
    for position, group in enumerate(duplicate_groups(records, near_threshold)):
        together.join(position, group)
        for name in meta_values(records[position], TEMPLATE):
            together.join(position, first.setdefault(name, position))
    members: dict[int, list[int]] = defaultdict(list)
    for i in positions:
        members[together.find(i)].append(i)
    return list(members.values())


def _closest_sum(sizes: list[int], target: int, low: int, high: int) -> list[int] | None:
    """Indices of ``sizes`` whose sum lies in [``low``, ``high``] and is closest to ``target``
    (the smaller on a tie), taking the first ones of each size; None when no sum fits.

    A bounded knapsack over the distinct sizes, each size's count split into parts 1, 2, 4,
    ...: as many bit-set shifts as parts, where one per group would cost a big integer per
    record on a corpus of single dialogues.
    """
    by_size: dict[int, list[int]] = defaultdict(list)
    for index, size in enumerate(sizes):
        by_size[size].append(index)
    parts: list[tuple[int, int]] = []
    for size, indices in by_size.items():
        left, step = len(indices), 1
        while left:
            parts.append((size, min(step, left)))
            left, step = left - min(step, left), step * 2
    reachable = [1]  # bit s of reachable[k]: some choice among the first k parts sums to s
    for size, count in parts:
        reachable.append(reachable[-1] | reachable[-1] << size * count)
    sums = [s for s in range(max(low, 0), high + 1) if reachable[-1] >> s & 1]
    if not sums:
        return None
    total = min(sums, key=lambda s: (abs(s - target), s))
    taken: Counter[int] = Counter()
    for k in range(len(parts), 0, -1):
        if not reachable[k - 1] >> total & 1:
            size, count = parts[k - 1]
            total -= size * count
            taken[size] += count
    return [index for size, indices in by_size.items() for index in indices[:taken[size]]]
