"""The running statistics of a recording pass (:mod:`emoneuron.recording.recorder`): each
layer's activation is reduced into per-cell moments, histograms and top-k as it arrives, by the
compiled kernel (:mod:`emoneuron.recording.kernel`) where it applies, else by torch operators,
and never kept."""

from __future__ import annotations

from dataclasses import astuple, dataclass

import torch

from emoneuron.data.schema import EMOTIONS
from emoneuron.recording.config import TokenPolicy
from emoneuron.recording.kernel import CompiledKernel
from emoneuron.recording.statistics import (
    BIN_OF_HALF_KEY,
    HALF_KEYS,
    N_BINS,
    Recording,
    best_indices,
    half_keys,
)


@dataclass
class BatchContext:
    """What every layer's hook needs to know about the current batch."""

    positions: torch.Tensor  # (N,) long: the counted positions in the flattened (B*T) batch
    sequence: torch.Tensor  # (N,) long: the sequence (0 .. B-1) of each counted position
    cell: torch.Tensor  # (B,) long: emotion * groups + group of each sequence
    emotion: int  # batches are emotion-pure
    dialogue: torch.Tensor  # (B,) int64 dialogue_hash

    @classmethod
    def of(cls, counted: torch.Tensor, cell: torch.Tensor, emotion: int,
           dialogue: torch.Tensor) -> BatchContext:
        """The context of a batch whose (B, T) ``counted`` mask is on the batch's device."""
        sequence, position = counted.nonzero(as_tuple=True)
        return cls(sequence * counted.shape[1] + position, sequence, cell, emotion, dialogue)

    def to(self, device: torch.device) -> BatchContext:
        return BatchContext(self.positions.to(device), self.sequence.to(device),
                             self.cell.to(device), self.emotion, self.dialogue.to(device))


def _add_rows(target: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``target[index[i]] += values[i]`` for every row i, in the same order on every run: on a
    CPU index_add_ adds the rows one after another; on a GPU its atomic adds would round in
    whatever order the threads arrive, so a one-hot product adds them instead."""
    if target.device.type == "cpu":
        return target.index_add_(0, index, values)
    one_hot = torch.nn.functional.one_hot(index, len(target)).to(values.dtype)
    return target.add_(one_hot.T @ values)


MOMENTS = ("active", "sum", "sum_sq")


@dataclass(frozen=True)
class _LayerStatistics:
    """One layer's running statistics in the layout its hook updates: moments (cells, W),
    histogram (E, W, bins), top-k (k, W)."""

    active: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    histogram: torch.Tensor
    top_values: torch.Tensor
    top_dialogue: torch.Tensor

    @classmethod
    def zeros(cls, cells: int, width: int, top_k: int, device: torch.device) -> _LayerStatistics:
        def moment() -> torch.Tensor:
            return torch.zeros((cells, width), dtype=torch.float64, device=device)

        return cls(moment(), moment(), moment(),
                   torch.zeros((len(EMOTIONS), width, N_BINS), dtype=torch.int32, device=device),
                   torch.full((top_k, width), -torch.inf, dtype=torch.float32, device=device),
                   torch.zeros((top_k, width), dtype=torch.int64, device=device))


class _RecordingTensors:
    """The recording's statistics in the layout of :class:`Recording`, on the CPU: moments
    (E, G, L, W), histogram (E, L, W, bins), top-k (L, k, W). A layer on the CPU updates views
    of them, so finishing a recording copies nothing (for Qwen2.5-1.5B, two copies of 0.8 GB
    took 2 s); a layer on a GPU keeps tensors there, copied in once at the end."""

    def __init__(self, n_layers: int, groups: int, width: int, top_k: int) -> None:
        moments = (len(EMOTIONS), groups, n_layers, width)
        self.moments = {name: torch.zeros(moments, dtype=torch.float64) for name in MOMENTS}
        self.histogram = torch.zeros((len(EMOTIONS), n_layers, width, N_BINS),
                                     dtype=torch.int32)
        self.top_values = torch.full((n_layers, top_k, width), -torch.inf, dtype=torch.float32)
        self.top_dialogue = torch.zeros((n_layers, top_k, width), dtype=torch.int64)

    def layer(self, layer: int) -> _LayerStatistics:
        # (E, G, W) with strides (G*L*W, L*W, 1) flattens to (E*G, W) rows without a copy.
        active, total, squares = (self.moments[name][:, :, layer].flatten(0, 1)
                                  for name in MOMENTS)
        return _LayerStatistics(active, total, squares, self.histogram[:, layer],
                                self.top_values[layer], self.top_dialogue[layer])

    def store(self, layer: int, statistics: _LayerStatistics) -> None:
        """Copy a layer kept on another device into its place."""
        for place, kept in zip(astuple(self.layer(layer)), astuple(statistics), strict=True):
            place.copy_(kept)


class _Workspace:
    """What every layer's hook on one device shares: constants, and work buffers kept from call
    to call. A fresh (B*T, W) tensor per step would touch every page of it anew, and on a CPU
    that first touch costs more than the step itself."""

    def __init__(self, width: int, device: torch.device) -> None:
        self.device = device
        # Where each neuron's 64 float16 keys start in one bincount (the keys run from -32).
        self.key_offset = (torch.arange(width, dtype=torch.int32, device=device) * HALF_KEYS
                           + HALF_KEYS // 2)
        self.bin_of_key = BIN_OF_HALF_KEY.to(device)
        # On a GPU, picking the neurons whose top-k can change would wait for the device.
        self.all_columns = torch.arange(width, device=device)
        self._buffers: dict[str, torch.Tensor] = {}

    def buffer(self, name: str, shape: tuple[int, int], dtype: torch.dtype) -> torch.Tensor:
        """The work buffer ``name`` as a ``shape`` tensor of ``dtype``; its contents are
        whatever was last written."""
        size = shape[0] * shape[1] * dtype.itemsize
        kept = self._buffers.get(name)
        if kept is None or kept.numel() < size:
            kept = self._buffers[name] = torch.empty(size, dtype=torch.uint8, device=self.device)
        return kept[:size].view(dtype).view(shape)


def _update_with_torch(activation: torch.Tensor, batch: BatchContext,
                       statistics: _LayerStatistics, space: _Workspace) -> None:
    """Add the counted rows of one layer's (B*T, W) ``activation`` to its statistics with
    torch operators: what the compiled kernel does in one pass, on any device and dtype. Few
    passes, each one vectorised operator on one copy of the counted rows (a loop over sequences
    costs more in OpenMP hand-offs than it saves)."""
    width = activation.shape[-1]
    shape = (len(batch.positions), width)
    counted = torch.index_select(activation, 0, batch.positions,
                                 out=space.buffer("counted", shape, activation.dtype)).float()
    work = space.buffer("work", shape, torch.float32)
    rows = (len(batch.cell), width)
    # Moments: each sequence's counted tokens summed in float32 (on a CPU in token order),
    # then the B rows added into their (emotion, group) cells in float64.
    def add_moment(target: torch.Tensor, values: torch.Tensor) -> None:
        per_sequence = _add_rows(counted.new_zeros(rows), batch.sequence, values)
        _add_rows(target, batch.cell, per_sequence.double())

    add_moment(statistics.active, torch.gt(counted, 0, out=work))
    add_moment(statistics.sum, counted)
    add_moment(statistics.sum_sq, torch.square(counted, out=work))
    # Histogram: one bincount over (neuron, float16 key), folded into the 32 bins.
    keys = half_keys(counted, space.buffer("halves", shape, torch.float16),
                     out=work.view(torch.int32)).add_(space.key_offset)
    counts = torch.bincount(keys.view(-1), minlength=width * HALF_KEYS)
    statistics.histogram[batch.emotion].index_add_(
        1, space.bin_of_key, counts.view(width, HALF_KEYS).to(torch.int32))
    # Top-k: each sequence's strongest counted token per neuron (so a neuron's top k come
    # from k different dialogues), merged with the running best. Only neurons where a
    # sequence reaches the running k-th value can change: late in a recording a minority,
    # and the merge is the dearest step.
    strongest = counted.new_full(rows, -torch.inf).scatter_reduce_(
        0, batch.sequence[:, None].expand(-1, width), counted, "amax")
    columns = (space.all_columns if counted.device.type != "cpu" else
               (strongest >= statistics.top_values[-1]).any(0).nonzero().squeeze(1))
    candidates = torch.cat([statistics.top_values.index_select(1, columns),
                            strongest.index_select(1, columns)])
    dialogues = torch.cat([statistics.top_dialogue.index_select(1, columns),
                           batch.dialogue[:, None].expand(-1, len(columns))])
    order = best_indices(candidates, dialogues, len(statistics.top_values), dim=0)
    statistics.top_values[:, columns] = candidates.gather(0, order)
    statistics.top_dialogue[:, columns] = dialogues.gather(0, order)


class Accumulator:
    """Running statistics: per-cell token counts, and each layer's :class:`_LayerStatistics`.

    A layer's statistics live on the device its activations arrive on: on a CPU as views of the
    recording's own tensors (:class:`_RecordingTensors`), on a GPU allocated at its first
    batch. With a model split across GPUs (``device_map``) that is cheaper than one device for
    all: the activation, B*T*W values per layer and batch, never crosses devices (only the batch
    context does, a few (B, T)-sized tensors once per device and batch), and the statistics,
    about (3 * 8 * E*G + 4 * E*B) * W bytes per layer, are spread over the GPUs like the layers
    instead of piling onto the first."""

    def __init__(self, n_layers: int, width: int, groups: int, top_k: int,
                 device: torch.device, kernel: CompiledKernel | None = None) -> None:
        self.cells, self.width = len(EMOTIONS) * groups, width
        self.kernel = kernel
        self.groups, self.top_k = groups, top_k
        self.tokens = torch.zeros(self.cells, dtype=torch.float64, device=device)
        self.layers: list[_LayerStatistics | None] = [None] * n_layers
        self.workspaces: dict[torch.device, _Workspace] = {}
        self._totals: _RecordingTensors | None = None

    def totals(self) -> _RecordingTensors:
        if self._totals is None:
            self._totals = _RecordingTensors(len(self.layers), self.groups, self.width,
                                             self.top_k)
        return self._totals

    def _layer(self, layer: int, device: torch.device) -> _LayerStatistics:
        statistics = self.layers[layer]
        if statistics is None:
            statistics = self.layers[layer] = (
                self.totals().layer(layer) if device.type == "cpu" else
                _LayerStatistics.zeros(self.cells, self.width, self.top_k, device))
        return statistics

    def add(self, layer: int, activation: torch.Tensor, batch: BatchContext) -> None:
        """Add one layer's activation; ``batch`` must be on the activation's device. The
        hook's cost is its passes over the (B*T, W) activation: one compiled pass
        (:mod:`emoneuron.recording.kernel`) where it applies, else a few torch operators."""
        width = activation.shape[-1]
        statistics = self._layer(layer, activation.device)
        space = self.workspaces.get(activation.device)
        if space is None:
            space = self.workspaces[activation.device] = _Workspace(width, activation.device)
        flat = activation.reshape(-1, width)
        if self.kernel is None or not self.kernel.accepts(flat):
            _update_with_torch(flat, batch, statistics, space)
            return
        self.kernel.update_layer(
            activation=flat, positions=batch.positions, sequence=batch.sequence,
            cell=batch.cell, dialogue=batch.dialogue,
            scratch=space.buffer("scratch", (4 * len(batch.cell), width), torch.float32),
            histogram=statistics.histogram[batch.emotion], active=statistics.active,
            sum=statistics.sum, sum_sq=statistics.sum_sq, top_values=statistics.top_values,
            top_dialogue=statistics.top_dialogue)

    def recording(self, site: str, token_policy: TokenPolicy, group_seed: int,
                  residual_means: torch.Tensor | None = None) -> Recording:
        """The statistics so far as a :class:`Recording` carrying ``residual_means`` (None
        where the pass kept none)."""
        totals = self.totals()
        for layer, statistics in enumerate(self.layers):
            if statistics is not None and statistics.active.device.type != "cpu":
                totals.store(layer, statistics)
        return Recording(tokens=self.tokens.reshape(len(EMOTIONS), self.groups).cpu(),
                         active=totals.moments["active"], sum=totals.moments["sum"],
                         sum_sq=totals.moments["sum_sq"], histogram=totals.histogram,
                         top_values=totals.top_values, top_dialogue=totals.top_dialogue,
                         site=site, token_policy=token_policy, group_seed=group_seed,
                         residual_means=residual_means)
