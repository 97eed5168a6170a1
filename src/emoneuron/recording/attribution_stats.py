"""Additive statistics of the attribution pass (:mod:`emoneuron.causal.experiments.attribution`),
model-free.

Per (emotion, group, layer, neuron): the sum over dialogues of each dialogue's gradient x
activation attribution; per (emotion, group): the number of dialogues. Groups are the recorder's
(:func:`emoneuron.recording.statistics.dialogue_group`), so the bootstrap and the label-shuffle null
can resample or relabel (emotion, group) cells exactly as they do a recording's moments. Everything
is a sum: two shards merge exactly (up to float64 rounding of the order of additions).

This module holds only the data (its files are written like a recording's, by
:func:`emoneuron.recording.statistics.save_tensors`), so :mod:`emoneuron.selection.scores` and
:mod:`emoneuron.selection.identify` read attributions without importing the classifier that computes
them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.errors import UserError
from emoneuron.layout import attribution_file
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.recording.statistics import GroupedCells, load_tensors, save_tensors

ATTRIBUTION_FORMAT = "attribution-1"


@dataclass
class AttributionStats(GroupedCells):
    """E emotions, G groups, L layers, W neurons per layer."""

    total: torch.Tensor  # (E, G, L, W) float64: summed per-dialogue attributions
    dialogues: torch.Tensor  # (E, G) float64: dialogues added
    site: str = DEFAULT_SITE
    group_seed: int = 0

    @classmethod
    def zeros(cls, n_layers: int, width: int, groups: int, site: str = DEFAULT_SITE,
              group_seed: int = 0) -> AttributionStats:
        return cls(torch.zeros((len(EMOTIONS), groups, n_layers, width), dtype=torch.float64),
                   torch.zeros((len(EMOTIONS), groups), dtype=torch.float64), site, group_seed)

    def cells(self) -> torch.Tensor:
        return self.total

    def mean_per_dialogue(self) -> torch.Tensor:
        """Each emotion's mean attribution per dialogue, (E, L, W); 0 for an emotion without
        dialogues."""
        count = self.dialogues.sum(1).clamp(min=1).view(-1, 1, 1)
        return self.total.sum(1) / count

    def merge(self, other: AttributionStats) -> AttributionStats:
        """The statistics of both shards' dialogues together."""
        if (other.site, other.group_seed, other.total.shape) != (
                self.site, self.group_seed, self.total.shape):
            raise UserError("cannot merge attributions with a different site, group seed, "
                            "number of groups or model shape; compute both shards with the "
                            "same settings")
        return AttributionStats(self.total + other.total, self.dialogues + other.dialogues,
                                self.site, self.group_seed)

    def save(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """Tensors to ``path`` (safetensors; the header carries the description) and the
        description as readable JSON beside it (``.json``)."""
        description = {"format": ATTRIBUTION_FORMAT, "site": self.site,
                       "group_seed": self.group_seed, "groups": self.groups,
                       "emotions": list(EMOTIONS), "n_layers": self.n_layers,
                       "width": self.width,
                       "dialogues": dict(zip(EMOTIONS, self.dialogues.sum(1).tolist(),
                                             strict=True)), **metadata}
        save_tensors(path, {"total": self.total, "dialogues": self.dialogues}, description)

    @classmethod
    def load(cls, path: str | Path) -> AttributionStats:
        header, tensors = load_tensors(path, "an attribution file",
                                      f"a run writes as {attribution_file('SITE')}")
        if header.get("format") != ATTRIBUTION_FORMAT or not {"total", "dialogues"} <= set(
                tensors):
            raise UserError(f"{path}: not an attribution file of format {ATTRIBUTION_FORMAT} "
                            f"(format {header.get('format', 'none')}); compute the "
                            "attributions again")
        return cls(tensors["total"], tensors["dialogues"], header["site"],
                   int(header["group_seed"]))
