"""The resumable condition store and the per-dialogue correctness read from it, importable
without torch.

Every finished condition is appended to ``conditions.jsonl`` in the run directory as one line
(fsynced) holding its per-dialogue predictions. A re-run skips finished conditions, so a killed
run resumes where it stopped; a torn last line from a kill is ignored and recomputed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from emoneuron.causal.conditions.grid import Condition, evaluated
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.io import atomic_open, naming


class InterventionExtent(Protocol):
    """What the store records of a condition's intervention (neurons or directions,
    :mod:`emoneuron.causal.evaluation.residual`): its size in all and per layer."""

    @property
    def size(self) -> int: ...

    def layer_counts(self) -> dict[int, int]: ...


class ConditionStore:
    """Append-only record of finished conditions.

    ``context`` is a hash of everything a stored prediction depends on besides its condition
    (evaluation data, neuron sets, model, prompt): a store written under another context is
    refused rather than silently mixed in.
    """

    def __init__(self, path: Path, context: str) -> None:
        self.path = path
        self.context = context
        self.done: dict[str, dict[str, Any]] = {}
        if path.exists():
            self._read()

    @staticmethod
    def entries(path: Path) -> dict[str, dict[str, Any]]:
        """The finished conditions stored in ``path`` by key, whatever their context; a torn
        final line (a killed run's) is left out, that condition reruns."""
        with path.open(encoding="utf-8") as handle:
            lines = handle.read().split("\n")
        last = max((n for n, line in enumerate(lines, start=1) if line.strip()), default=0)
        done = {}
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                done[entry["key"]] = entry
            except json.JSONDecodeError:
                if number == last:
                    continue
                raise UserError(f"{path}:{number}: corrupted condition record; delete the "
                                "file and rerun the same command to recompute its conditions"
                                ) from None
            except (KeyError, TypeError):
                raise UserError(f"{path}:{number}: not a condition record; delete the file and "
                                "rerun the same command to recompute its conditions") from None
        return done

    def _read(self) -> None:
        self.done = self.entries(self.path)
        if any(entry.get("context") != self.context for entry in self.done.values()):
            raise UserError(f"{self.path}: written for different evaluation data, neurons, "
                            "model or prompt; delete it and rerun the same command to "
                            "recompute its conditions")
        self._rewrite_clean()

    def _rewrite_clean(self) -> None:
        with atomic_open(self.path) as handle:
            for entry in self.done.values():
                handle.write(json.dumps(entry) + "\n")

    def add(self, condition: Condition, intervention: InterventionExtent,
            predicted: np.ndarray) -> None:
        """Store a finished condition: its predictions and the size of what it changed
        (neurons, or directions), in all (``n_masked``) and per layer (``layer_counts``)."""
        entry = {"key": condition.key, "context": self.context, **asdict(condition),
                 "n_masked": intervention.size,
                 "layer_counts": {str(layer): n
                                  for layer, n in intervention.layer_counts().items()},
                 "predictions": predicted.tolist()}
        with naming(self.path), self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(entry) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        self.done[condition.key] = entry



def stored_layer_counts(entry: Mapping[str, Any]) -> dict[int, int] | None:
    """Neurons per layer of a stored condition's set; None for entries stored before
    ``conditions.jsonl`` recorded them."""
    counts = entry.get("layer_counts")
    return None if counts is None else {int(layer): int(n) for layer, n in counts.items()}


def correctness(entry: dict[str, Any], evaluation: Sequence[Record]) -> pd.DataFrame:
    """Per-dialogue rows (record, eval_emotion, correct) of one stored condition, in evaluation
    order."""
    subset = evaluated(evaluation, entry["eval_emotions"], entry.get("cross_sample", 0))
    truth = np.array([EMOTIONS.index(r.emotion) for r in subset])
    return pd.DataFrame({"record": [r.id for r in subset],
                         "eval_emotion": [r.emotion for r in subset],
                         "correct": (np.array(entry["predictions"]) == truth).astype(float)})
