"""One batched pass over the data accumulating additive, mergeable statistics of every neuron.

Everything kept is additive, so statistics of two shards merged equal those of the union
(:meth:`Recording.merge`), and memory does not grow with the data: activations are reduced inside
the forward hook and never kept.

* Moments per (emotion, group, layer, neuron): counted tokens, tokens with activation > 0, sum,
  sum of squares. Each dialogue falls into one of ``groups`` groups by a seeded hash of its id;
  per-emotion totals are sums over groups. Groups are what the bootstrap resamples and what the
  label-shuffle null permutes (:mod:`emoneuron.stability`), so both need no second pass.
* A histogram per (emotion, layer, neuron) over fixed bin edges (:func:`bin_edges`, the same for
  every site and model so shards merge exactly), int32; AUROC is computed from it.
* The top-k activations of each neuron, one per dialogue (its strongest counted token), with the
  dialogue (a 64-bit hash of its id), for neuron cards; merging keeps the top k of the union. The
  token's position is not kept: finding it in the hook cost more than everything else together,
  and a card finds it again by running that one dialogue (:mod:`emoneuron.cards`).

Token policies decide which positions count: ``dialogue`` (default) the tokens of the turns' own
words, excluding speaker tags and line breaks; ``last`` the final token of each dialogue; ``all``
every token.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from emoneuron.data.render import render_dialogue, tokens_in_spans
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.executors import Executor, LocalExecutor
from emoneuron.io import atomic_open, write_json
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel

TOKEN_POLICIES = ("dialogue", "last", "all")
DEFAULT_GROUPS = 16
DEFAULT_TOP_K = 8
RECORDING_FORMAT = "2"  # grouped moments, histograms and top-k; format 1 had moments only


# Histogram bins are octaves of |activation|: 2^-10 .. 2^4 on each side of 0, 32 bins in all.
OCTAVES = 15  # finite edges per sign
SMALLEST_EXPONENT = -10  # |x| < 2^-10 counts as about zero


def bin_edges() -> torch.Tensor:
    """The 31 fixed edges of the 32 histogram bins: 0 and +-2^(-10 .. 4).

    Activations of FFN sites are concentrated near 0 with long tails, and their scale differs
    between sites and models; octave bins resolve every scale alike without a calibration pass,
    and the open outer bins hold everything beyond +-16. The recorder finds a value's octave
    from its float32 exponent bits (:func:`octave_bins`); a value exactly on a negative edge
    falls into the bin above it. The edges are a
    constant, never fitted to data, so histograms of any two shards add exactly."""
    positive = 2.0 ** torch.arange(SMALLEST_EXPONENT, SMALLEST_EXPONENT + OCTAVES,
                                   dtype=torch.float64)
    return torch.cat([-positive.flip(0), torch.zeros(1, dtype=torch.float64), positive])


N_BINS = 2 * (OCTAVES + 1)


def _bin_of_top_bits() -> torch.Tensor:
    """Bin of each value of a float32's top 9 bits (sign and exponent) plus 256: keys below 256
    are negative values with exponent ``key``, the others non-negative with ``key - 256``."""
    key = torch.arange(512, dtype=torch.int32)
    exponent = key % 256  # floor(log2 |x|) + 127; 0 for zero and subnormals
    octave = (exponent - (127 + SMALLEST_EXPONENT - 1)).clamp(0, OCTAVES)
    return torch.where(key >= 256, N_BINS // 2 + octave, N_BINS // 2 - 1 - octave)


BIN_OF_TOP_BITS = _bin_of_top_bits()


def octave_bins(values: torch.Tensor, table: torch.Tensor = BIN_OF_TOP_BITS) -> torch.Tensor:
    """The histogram bin (int32, 0 .. N_BINS - 1, increasing with the value) of each float32
    value: N_BINS/2 + m for x >= 0, N_BINS/2 - 1 - m for x < 0 (-0.0 included), where m is the
    octave of |x| above 2^-10, clamped to 0 .. OCTAVES. A table lookup on the top 9 bits:
    the cheapest way found on a CPU (a search over the edges was five times slower)."""
    key = (values.view(torch.int32) >> 23).add_(256)
    return table.index_select(0, key.view(-1)).view_as(key)


def dialogue_hash(record_id: str) -> int:
    """A signed 64-bit hash of a dialogue id: how top-k examples name their dialogue."""
    return int.from_bytes(hashlib.sha256(record_id.encode()).digest()[:8], "big", signed=True)


def dialogue_group(record_id: str, groups: int, seed: int) -> int:
    digest = hashlib.sha256(f"{seed}:{record_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % groups


def save_tensors(path: str | Path, tensors: dict[str, torch.Tensor],
                 description: dict[str, Any]) -> None:
    """``tensors`` to ``path`` as safetensors, whose header carries ``description`` (JSON
    values as text), and the same description as readable JSON beside it (``.json``)."""
    header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in description.items()}
    blob = save({k: v.contiguous().cpu() for k, v in tensors.items()}, header)
    with atomic_open(path, "wb") as handle:
        handle.write(blob)
    write_json(Path(path).with_suffix(".json"), description)


def load_tensors(path: str | Path, kind: str,
                 remedy: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """The header and tensors of a safetensors file; a :class:`UserError` naming the ``kind``
    of file and the ``remedy`` where it cannot be read."""
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        return header, load_file(str(path))
    except Exception as error:  # safetensors raises several unrelated types
        raise UserError(f"{path}: not a readable {kind} file ({error}); "
                        f"delete it and {remedy}") from None


@dataclass
class ActivationStats:
    """Per-emotion statistics: ``tokens`` is (E,), moments (E, layers, width), ``histogram``
    (E, layers, width, bins) or None where it cannot be formed (bootstrap resamples)."""

    tokens: torch.Tensor
    active: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    site: str = DEFAULT_SITE
    token_policy: str = "dialogue"
    histogram: torch.Tensor | None = None

    @classmethod
    def zeros(cls, n_layers: int, width: int, site: str, token_policy: str,
              device: torch.device | str = "cpu") -> ActivationStats:
        shape = (len(EMOTIONS), n_layers, width)
        return cls(tokens=torch.zeros(len(EMOTIONS), dtype=torch.float64, device=device),
                   active=torch.zeros(shape, dtype=torch.float64, device=device),
                   sum=torch.zeros(shape, dtype=torch.float64, device=device),
                   sum_sq=torch.zeros(shape, dtype=torch.float64, device=device),
                   site=site, token_policy=token_policy)

    @property
    def n_layers(self) -> int:
        return int(self.active.shape[1])

    @property
    def width(self) -> int:
        return int(self.active.shape[2])

    def probability(self) -> torch.Tensor:
        """P(activation > 0 | emotion), shape (E, layers, width)."""
        return self.active / self.tokens.clamp(min=1).view(-1, 1, 1)


@dataclass
class Recording:
    """What one recording pass keeps (see the module docstring); E emotions, G groups,
    L layers, W neurons per layer, B bins, K top activations per neuron."""

    tokens: torch.Tensor  # (E, G) float64
    active: torch.Tensor  # (E, G, L, W) float64
    sum: torch.Tensor  # (E, G, L, W) float64
    sum_sq: torch.Tensor  # (E, G, L, W) float64
    histogram: torch.Tensor  # (E, L, W, B) int32
    top_values: torch.Tensor  # (L, K, W) float32, -inf where fewer than K dialogues were seen
    top_dialogue: torch.Tensor  # (L, K, W) int64 dialogue_hash
    site: str = DEFAULT_SITE
    token_policy: str = "dialogue"
    group_seed: int = 0

    @property
    def n_layers(self) -> int:
        return int(self.active.shape[2])

    @property
    def width(self) -> int:
        return int(self.active.shape[3])

    @property
    def groups(self) -> int:
        return int(self.active.shape[1])

    @property
    def top_k(self) -> int:
        return int(self.top_values.shape[1])

    def stats(self) -> ActivationStats:
        """Per-emotion totals (sums over groups), with the histograms."""
        return ActivationStats(tokens=self.tokens.sum(1), active=self.active.sum(1),
                               sum=self.sum.sum(1), sum_sq=self.sum_sq.sum(1), site=self.site,
                               token_policy=self.token_policy,
                               histogram=self.histogram)

    def combined(self, weights: torch.Tensor) -> ActivationStats:
        """Per-emotion statistics where emotion ``e`` is the ``weights[e]``-weighted sum of all
        E*G (emotion, group) cells: resampled or relabelled data from the same pass. The
        histograms are per emotion, not per group, so these carry none."""
        flat_weights = weights.to(torch.float64).reshape(len(EMOTIONS), -1)

        def mix(tensor: torch.Tensor) -> torch.Tensor:
            cells = tensor.reshape(flat_weights.shape[1], -1)
            return (flat_weights @ cells).reshape(len(EMOTIONS), *tensor.shape[2:])

        return ActivationStats(tokens=mix(self.tokens), active=mix(self.active),
                               sum=mix(self.sum), sum_sq=mix(self.sum_sq), site=self.site,
                               token_policy=self.token_policy)

    def merge(self, other: Recording) -> Recording:
        """The recording of both shards' data together."""
        if (other.site, other.token_policy, other.group_seed, other.active.shape,
                other.top_k) != (self.site, self.token_policy, self.group_seed,
                                 self.active.shape, self.top_k):
            raise UserError("cannot merge recordings with a different site, token policy, "
                            "group seed, number of groups, top-k or model shape; record both "
                            "shards with the same settings")
        values = torch.cat([self.top_values, other.top_values], dim=1)
        dialogues = torch.cat([self.top_dialogue, other.top_dialogue], dim=1)
        order = _best(values, dialogues, self.top_k, dim=1)
        return Recording(
            tokens=self.tokens + other.tokens, active=self.active + other.active,
            sum=self.sum + other.sum, sum_sq=self.sum_sq + other.sum_sq,
            histogram=self.histogram + other.histogram, top_values=values.gather(1, order),
            top_dialogue=dialogues.gather(1, order),
            site=self.site, token_policy=self.token_policy, group_seed=self.group_seed)

    def save(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """Tensors to ``path`` (safetensors, header carries the description too) and the same
        description as readable JSON beside it (``.json``)."""
        tensors = {spec.name: getattr(self, spec.name) for spec in fields(self)
                   if isinstance(getattr(self, spec.name), torch.Tensor)}
        tensors["bin_edges"] = bin_edges()
        description = {"format": RECORDING_FORMAT, "site": self.site,
                       "token_policy": self.token_policy, "groups": self.groups,
                       "group_seed": self.group_seed, "top_k": self.top_k,
                       "emotions": list(EMOTIONS), "n_layers": self.n_layers,
                       "width": self.width,
                       "tokens": dict(zip(EMOTIONS, self.tokens.sum(1).tolist(), strict=True)),
                       **metadata}
        save_tensors(path, tensors, description)

    @classmethod
    def load(cls, path: str | Path) -> Recording:
        header, tensors = load_tensors(path, "statistics", "record again")
        if header.get("format") != RECORDING_FORMAT:
            raise UserError(f"{path}: statistics format {header.get('format', '1')}, this "
                            f"emoneuron reads format {RECORDING_FORMAT}; record again")
        names = [spec.name for spec in fields(cls) if spec.type == "torch.Tensor"]
        missing = [name for name in names if name not in tensors]
        if missing:
            raise UserError(f"{path}: not a statistics file (no {', '.join(missing)} tensors); "
                            "record again with `emoneuron record`")
        if not torch.equal(tensors.get("bin_edges", torch.zeros(0)), bin_edges()):
            raise UserError(f"{path}: histogram bin edges differ from this emoneuron's; "
                            "record again")
        return cls(**{name: tensors[name] for name in names}, site=header["site"],
                   token_policy=header["token_policy"], group_seed=int(header["group_seed"]))


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    counted: torch.Tensor  # (B, T) bool: positions the token policy counts
    emotion_index: torch.Tensor  # (B,)
    record_index: torch.Tensor  # (B,) position of each row's record in the input sequence


def encode_for_recording(loaded: LoadedModel, records: Sequence[Record], token_policy: str,
                         batch_size: int) -> Iterator[EncodedBatch]:
    """Length-bucketed, right-padded batches with the token policy's position mask; each batch
    holds one emotion's dialogues, so the recorder adds its histograms in one piece."""
    if token_policy not in TOKEN_POLICIES:
        raise UserError(f"unknown token policy {token_policy!r}: "
                        f"use one of {', '.join(TOKEN_POLICIES)}")
    encoded = []
    for record in records:
        rendered = render_dialogue(record)
        tokens = loaded.tokenizer(rendered.text, return_offsets_mapping=True,
                                  add_special_tokens=True)
        ids: list[int] = tokens["input_ids"]
        if token_policy == "all":
            counted = [True] * len(ids)
        elif token_policy == "last":
            counted = [False] * (len(ids) - 1) + [True]
        else:
            counted = tokens_in_spans(tokens["offset_mapping"], rendered.spans)
        encoded.append((ids, counted, EMOTIONS.index(record.emotion)))
    order = sorted(range(len(encoded)), key=lambda i: (encoded[i][2], len(encoded[i][0])))
    chunks = []
    for _, same_emotion in itertools.groupby(order, key=lambda i: encoded[i][2]):
        members = list(same_emotion)
        chunks += [members[start:start + batch_size]
                   for start in range(0, len(members), batch_size)]
    pad_id = int(loaded.tokenizer.pad_token_id)
    for indices in chunks:
        chunk = [encoded[i] for i in indices]
        length = max(len(ids) for ids, _, _ in chunk)
        input_ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), length), dtype=torch.long)
        counted_mask = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (ids, counted, _) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            counted_mask[row, :len(ids)] = torch.tensor(counted)
        yield EncodedBatch(input_ids, attention, counted_mask,
                           torch.tensor([emotion for _, _, emotion in chunk]),
                           torch.tensor(indices))


def _best(values: torch.Tensor, dialogues: torch.Tensor, k: int, dim: int) -> torch.Tensor:
    """Indices of the ``k`` largest values along ``dim``. Equal values (dialogues with the same
    opening tokens) are ordered by their dialogue hash, so any order of shards and batches keeps
    the same ones: the key adds a hash-derived fraction of the float32 step above each value,
    which orders ties and nothing else, and one top-k on it is far cheaper than two sorts."""
    step = (torch.nextafter(values, torch.full_like(values, torch.inf)) - values).double()
    fraction = (dialogues & 0xFFFFF).double() / 2**20
    key = torch.where(torch.isfinite(values), values.double() + fraction * step,
                      values.double())
    return key.topk(k, dim=dim).indices


@dataclass
class _BatchContext:
    """What every layer's hook needs to know about the current batch."""

    counted: torch.Tensor  # (B*T,) bool
    per_sequence: torch.Tensor  # (B, B*T) float32: row b sums the counted tokens of sequence b
    cell: torch.Tensor  # (B,) long: emotion * groups + group of each sequence
    emotion: int  # batches are emotion-pure
    dialogue: torch.Tensor  # (B,) int64 dialogue_hash
    rows: int  # B

    def to(self, device: torch.device) -> _BatchContext:
        return _BatchContext(self.counted.to(device), self.per_sequence.to(device),
                             self.cell.to(device), self.emotion, self.dialogue.to(device),
                             self.rows)


class _LayerStatistics:
    """One layer's running statistics in the layout its hook updates cheaply."""

    def __init__(self, cells: int, width: int, top_k: int, device: torch.device) -> None:
        self.active = torch.zeros((cells, width), dtype=torch.float64, device=device)
        self.sum = torch.zeros_like(self.active)
        self.sum_sq = torch.zeros_like(self.active)
        self.histogram = torch.zeros((len(EMOTIONS), width * N_BINS), dtype=torch.int32,
                                     device=device)
        self.bin_offset = torch.arange(width, dtype=torch.int32, device=device) * N_BINS
        self.bin_table = BIN_OF_TOP_BITS.to(device)
        self.top_values = torch.full((top_k, width), -torch.inf, dtype=torch.float32,
                                     device=device)
        self.top_dialogue = torch.zeros((top_k, width), dtype=torch.int64, device=device)


class _Accumulator:
    """Running statistics: per-cell token counts, and each layer's :class:`_LayerStatistics`.

    A layer's statistics live on the device its activations arrive on, allocated at its first
    batch. With a model split across GPUs (``device_map``) that is cheaper than one device for
    all: the activation, B*T*W values per layer and batch, never crosses devices (only the batch
    context does, a few (B, T)-sized tensors once per device and batch), and the statistics,
    about (3 * 8 * E*G + 4 * E*B) * W bytes per layer, are spread over the GPUs like the layers
    instead of piling onto the first."""

    def __init__(self, n_layers: int, width: int, groups: int, top_k: int,
                 device: torch.device) -> None:
        self.cells, self.width = len(EMOTIONS) * groups, width
        self.groups, self.top_k = groups, top_k
        self.tokens = torch.zeros(self.cells, dtype=torch.float64, device=device)
        self.layers: list[_LayerStatistics | None] = [None] * n_layers

    def _layer(self, layer: int, device: torch.device) -> _LayerStatistics:
        statistics = self.layers[layer]
        if statistics is None:
            statistics = self.layers[layer] = _LayerStatistics(self.cells, self.width,
                                                               self.top_k, device)
        return statistics

    def add(self, layer: int, activation: torch.Tensor, batch: _BatchContext) -> None:
        """Add one layer's activation; ``batch`` must be on the activation's device."""
        width = activation.shape[-1]
        flat = activation.reshape(-1, width).float()
        statistics = self._layer(layer, flat.device)
        # Moments: reduce each sequence's counted tokens first (a (B, B*T) matmul), then add
        # the B rows into their (emotion, group) cells in float64.
        positive = (flat > 0).float()
        for target, values in ((statistics.active, positive), (statistics.sum, flat),
                               (statistics.sum_sq, flat.square())):
            target.index_add_(0, batch.cell, (batch.per_sequence @ values).double())
        # Histogram: one bincount over (neuron, bin) of the batch's counted tokens.
        index = octave_bins(flat[batch.counted], statistics.bin_table).add_(statistics.bin_offset)
        statistics.histogram[batch.emotion] += torch.bincount(
            index.flatten(), minlength=statistics.histogram.shape[1]).to(torch.int32)
        # Top-k: each sequence's strongest counted token per neuron (so a neuron's top k come
        # from k different dialogues), merged with the running best.
        masked = flat.masked_fill(~batch.counted[:, None], -torch.inf).view(batch.rows, -1, width)
        candidates = torch.cat([statistics.top_values, masked.amax(dim=1)])
        dialogues = torch.cat([statistics.top_dialogue,
                               batch.dialogue[:, None].expand(-1, width)])
        order = _best(candidates, dialogues, self.top_k, dim=0)
        statistics.top_dialogue = dialogues.gather(0, order)
        statistics.top_values = candidates.gather(0, order)

    def recording(self, site: str, token_policy: str, group_seed: int) -> Recording:
        layers = [statistics or _LayerStatistics(self.cells, self.width, self.top_k,
                                                 torch.device("cpu"))
                  for statistics in self.layers]

        def stacked(name: str) -> torch.Tensor:
            return torch.stack([getattr(statistics, name).cpu() for statistics in layers])

        grouped = (len(layers), len(EMOTIONS), self.groups, self.width)

        def moments(name: str) -> torch.Tensor:
            return stacked(name).reshape(grouped).permute(1, 2, 0, 3).contiguous()

        histogram = stacked("histogram").view(len(layers), len(EMOTIONS), self.width, N_BINS)
        return Recording(tokens=self.tokens.reshape(len(EMOTIONS), self.groups).cpu(),
                         active=moments("active"), sum=moments("sum"),
                         sum_sq=moments("sum_sq"),
                         histogram=histogram.permute(1, 0, 2, 3).contiguous(),
                         top_values=stacked("top_values"),
                         top_dialogue=stacked("top_dialogue"),
                         site=site,
                         token_policy=token_policy, group_seed=group_seed)


@contextmanager
def site_hooks(loaded: LoadedModel, site: str,
               receive: Callable[[int, torch.Tensor], None]) -> Iterator[None]:
    """While active, every forward calls ``receive(layer, tensor)`` with each layer's tensor at
    ``site`` (a module's input or output, as the adapter declares it)."""
    spec = loaded.adapter.site(site)

    def receiver(layer: int) -> Callable[[torch.Tensor], None]:
        return lambda tensor: receive(layer, tensor)

    handles = [spec.hook(module, receiver(layer))
               for layer, module in enumerate(loaded.adapter.site_modules(loaded.model, site))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def record(loaded: LoadedModel, records: Sequence[Record], token_policy: str = "dialogue",
           batch_size: int = 16, progress: bool = True, site: str = DEFAULT_SITE,
           groups: int = DEFAULT_GROUPS, top_k: int = DEFAULT_TOP_K,
           group_seed: int = 0) -> Recording:
    """Run the model once over ``records`` and return the neurons' statistics at ``site``."""
    if groups < 1 or top_k < 1:
        raise UserError(f"groups ({groups}) and top-k ({top_k}) must be at least 1")
    loaded.adapter.site(site)  # an unknown site fails before any work
    device = loaded.device
    accumulator = _Accumulator(loaded.n_layers, loaded.width, groups, top_k, device)
    # The current batch's context on each device its layers' activations arrive on.
    context: dict[torch.device, _BatchContext] = {}

    def reduce(layer: int, tensor: torch.Tensor) -> None:
        if tensor.device not in context:
            context[tensor.device] = context[device].to(tensor.device)
        accumulator.add(layer, tensor, context[tensor.device])

    cells = torch.tensor([EMOTIONS.index(r.emotion) * groups
                          + dialogue_group(r.id, groups, group_seed) for r in records])
    hashes = torch.tensor([dialogue_hash(r.id) for r in records], dtype=torch.int64)
    # Recording needs no logits: the decoder body alone skips the unembedding.
    body = loaded.model.base_model
    batches = list(encode_for_recording(loaded, records, token_policy, batch_size))
    bar = tqdm(total=sum(int(b.attention_mask.sum()) for b in batches), unit="tok",
               desc="record", disable=not progress)
    with torch.inference_mode(), site_hooks(loaded, site, reduce):
        for batch in batches:
            counted = batch.counted.to(device)
            rows = counted.shape[0]
            per_sequence = (torch.eye(rows, device=device)[:, :, None]
                            * counted[None, :, :]).reshape(rows, -1)
            cell = cells[batch.record_index].to(device)
            context.clear()
            context[device] = _BatchContext(
                counted=counted.flatten(), per_sequence=per_sequence, cell=cell,
                emotion=int(batch.emotion_index[0]),
                dialogue=hashes[batch.record_index].to(device), rows=rows)
            accumulator.tokens.index_add_(0, cell, counted.sum(1).double())
            body(input_ids=batch.input_ids.to(device),
                 attention_mask=batch.attention_mask.to(device))
            bar.update(int(batch.attention_mask.sum()))
    bar.close()
    return accumulator.recording(site, token_policy, group_seed)


SHARDS_PER_WORKER = 4  # a lost worker costs a quarter of its share, and loads stay balanced


def shard_count(executor: Executor, requested: int = 0) -> int:
    """How many shards :func:`record_sharded` should use: one pass in this process; on remote
    workers ``requested``, or SHARDS_PER_WORKER per worker when it is 0."""
    if isinstance(executor, LocalExecutor):
        return 1
    return requested or SHARDS_PER_WORKER * executor.workers


@dataclass(frozen=True)
class _RecordShard:
    """The task that records one shard on a worker; holds :func:`record`'s settings."""

    token_policy: str
    batch_size: int
    site: str
    groups: int
    top_k: int
    group_seed: int

    def __call__(self, loaded: LoadedModel, shard: Sequence[Record]) -> Recording:
        return record(loaded, shard, self.token_policy, self.batch_size, False, self.site,
                      self.groups, self.top_k, self.group_seed)


def record_sharded(executor: Executor, loaded: LoadedModel, records: Sequence[Record],
                   shards: int, setup: Callable[[], LoadedModel] | None = None,
                   token_policy: str = "dialogue", batch_size: int = 16, progress: bool = True,
                   site: str = DEFAULT_SITE, groups: int = DEFAULT_GROUPS,
                   top_k: int = DEFAULT_TOP_K, group_seed: int = 0) -> Recording:
    """:func:`record` over ``shards`` contiguous slices of ``records``, each recorded by a worker
    of ``executor`` (which loads the model with ``setup``; a local executor uses ``loaded``)
    and merged in slice order. Equal to one pass up to float rounding: shards batch the
    dialogues differently, and float64 sums are added in another order. One shard in this
    process is exactly :func:`record`, with its token progress bar."""
    if shards < 1:
        raise UserError(f"shards ({shards}) must be at least 1")
    if shards == 1 and isinstance(executor, LocalExecutor):
        return record(loaded, records, token_policy, batch_size, progress, site, groups, top_k,
                      group_seed)
    bounds = [len(records) * i // shards for i in range(shards + 1)]
    parts = [list(records[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    task = _RecordShard(token_policy, batch_size, site, groups, top_k, group_seed)
    if not parts:
        return task(loaded, [])
    merged: list[Recording] = []

    def deliver(_index: int, part: Recording) -> None:
        merged[:] = [merged[0].merge(part) if merged else part]

    executor.map(task, parts, deliver, setup, state=loaded, progress=progress,
                 desc="record shards")
    return merged[0]
