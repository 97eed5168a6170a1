"""One batched pass over the data accumulating additive per-emotion statistics of every neuron.

For each emotion ``e``, layer ``l`` and neuron ``i`` the recorder keeps the number of tokens seen,
the number with activation > 0, the sum and the sum of squares. These are additive: statistics of
two shards added together equal those of the union (:meth:`ActivationStats.merge`), and memory
does not grow with the data, because full activations are reduced inside the forward hook and
never kept.

Token policies decide which positions count: ``dialogue`` (default) the tokens of the turns' own
words, excluding speaker tags and line breaks; ``last`` the final token of each dialogue; ``all``
every token.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save
from tqdm.auto import tqdm

from emoneuron.data.render import render_dialogue
from emoneuron.data.schema import EMOTIONS, Record
from emoneuron.errors import UserError
from emoneuron.io import atomic_open, write_json
from emoneuron.models.adapters import DEFAULT_SITE
from emoneuron.models.loading import LoadedModel

TOKEN_POLICIES = ("dialogue", "last", "all")
STAT_FIELDS = ("active", "sum", "sum_sq")


@dataclass
class ActivationStats:
    """Sufficient statistics per emotion: ``tokens`` is (E,), the others (E, layers, width)."""

    tokens: torch.Tensor
    active: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor
    site: str = DEFAULT_SITE
    token_policy: str = "dialogue"

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

    def merge(self, other: ActivationStats) -> ActivationStats:
        if (other.site, other.token_policy, other.active.shape) != (
                self.site, self.token_policy, self.active.shape):
            raise UserError("cannot merge statistics recorded with a different site, token "
                            "policy or model shape")
        return ActivationStats(tokens=self.tokens + other.tokens, active=self.active + other.active,
                               sum=self.sum + other.sum, sum_sq=self.sum_sq + other.sum_sq,
                               site=self.site, token_policy=self.token_policy)

    def probability(self) -> torch.Tensor:
        """P(activation > 0 | emotion), shape (E, layers, width)."""
        return self.active / self.tokens.clamp(min=1).view(-1, 1, 1)

    def save(self, path: str | Path, metadata: dict[str, Any]) -> None:
        """Tensors to ``path`` (safetensors, header carries the description too) and the same
        description as readable JSON beside it (``.json``)."""
        tensors = {"tokens": self.tokens, **{name: getattr(self, name) for name in STAT_FIELDS}}
        description = {"site": self.site, "token_policy": self.token_policy,
                       "emotions": list(EMOTIONS), "n_layers": self.n_layers,
                       "width": self.width,
                       "tokens": dict(zip(EMOTIONS, self.tokens.tolist(), strict=True)),
                       **metadata}
        header = {k: v if isinstance(v, str) else json.dumps(v) for k, v in description.items()}
        blob = save({k: v.contiguous().cpu() for k, v in tensors.items()}, header)
        with atomic_open(path, "wb") as handle:
            handle.write(blob)
        write_json(Path(path).with_suffix(".json"), description)

    @classmethod
    def load(cls, path: str | Path) -> ActivationStats:
        try:
            with safe_open(str(path), framework="pt") as handle:
                header = handle.metadata() or {}
            tensors = load_file(str(path))
        except Exception as error:  # safetensors raises several unrelated types
            raise UserError(f"{path}: not a readable statistics file ({error}); "
                            "delete it and record again") from None
        missing = [name for name in ("tokens", *STAT_FIELDS) if name not in tensors]
        if missing:
            raise UserError(f"{path}: not a statistics file (no {', '.join(missing)} tensors); "
                            "expected the tokens, active, sum and sum_sq tensors of a recording")
        return cls(tokens=tensors["tokens"], active=tensors["active"], sum=tensors["sum"],
                   sum_sq=tensors["sum_sq"], site=header.get("site", DEFAULT_SITE),
                   token_policy=header.get("token_policy", "dialogue"))


@dataclass(frozen=True)
class EncodedBatch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    counted: torch.Tensor  # (B, T) bool: positions the token policy counts
    emotion_index: torch.Tensor  # (B,)


def encode_for_recording(loaded: LoadedModel, records: Sequence[Record], token_policy: str,
                         batch_size: int) -> Iterator[EncodedBatch]:
    """Length-bucketed, right-padded batches with the token policy's position mask."""
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
            counted = [end > start and any(s < end and start < e for s, e in rendered.spans)
                       for start, end in tokens["offset_mapping"]]
        encoded.append((ids, counted, EMOTIONS.index(record.emotion)))
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i][0]))
    pad_id = int(loaded.tokenizer.pad_token_id)
    for start in range(0, len(order), batch_size):
        chunk = [encoded[i] for i in order[start:start + batch_size]]
        length = max(len(ids) for ids, _, _ in chunk)
        input_ids = torch.full((len(chunk), length), pad_id, dtype=torch.long)
        attention = torch.zeros((len(chunk), length), dtype=torch.long)
        counted_mask = torch.zeros((len(chunk), length), dtype=torch.bool)
        for row, (ids, counted, _) in enumerate(chunk):
            input_ids[row, :len(ids)] = torch.tensor(ids)
            attention[row, :len(ids)] = 1
            counted_mask[row, :len(ids)] = torch.tensor(counted)
        yield EncodedBatch(input_ids, attention, counted_mask,
                           torch.tensor([emotion for _, _, emotion in chunk]))


@contextmanager
def _accumulating(loaded: LoadedModel, stats: ActivationStats,
                  weights: list[torch.Tensor | None]) -> Iterator[None]:
    """Pre-hooks that reduce each layer's site input into ``stats``; ``weights[0]`` is the
    (E, B*T) one-hot of counted positions for the current batch."""

    def hook_for(layer: int) -> Any:
        def hook(_module: torch.nn.Module, args: tuple[Any, ...]) -> None:
            onehot = weights[0]
            assert onehot is not None
            flat = args[0].reshape(-1, args[0].shape[-1]).to(onehot.dtype)
            stats.active[:, layer] += (onehot @ (flat > 0).to(onehot.dtype)).double()
            stats.sum[:, layer] += (onehot @ flat).double()
            stats.sum_sq[:, layer] += (onehot @ flat.square()).double()
        return hook

    handles = [module.register_forward_pre_hook(hook_for(layer))
               for layer, module in enumerate(loaded.adapter.site_modules(loaded.model))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def record(loaded: LoadedModel, records: Sequence[Record], token_policy: str = "dialogue",
           batch_size: int = 16, progress: bool = True) -> ActivationStats:
    """Run the model once over ``records`` and return per-emotion neuron statistics."""
    device = loaded.device
    stats = ActivationStats.zeros(loaded.n_layers, loaded.width, DEFAULT_SITE, token_policy, device)
    weights: list[torch.Tensor | None] = [None]
    # Recording needs no logits: the decoder body alone skips the unembedding.
    body = loaded.model.base_model
    batches = list(encode_for_recording(loaded, records, token_policy, batch_size))
    bar = tqdm(total=sum(int(b.attention_mask.sum()) for b in batches), unit="tok",
               desc="record", disable=not progress)
    with torch.inference_mode(), _accumulating(loaded, stats, weights):
        for batch in batches:
            counted = batch.counted.to(device)
            onehot = torch.nn.functional.one_hot(batch.emotion_index.to(device), len(EMOTIONS))
            per_position = onehot.T[:, :, None] * counted[None, :, :]  # (E, B, T)
            weights[0] = per_position.reshape(len(EMOTIONS), -1).to(loaded.model.dtype)
            stats.tokens += per_position.sum(dim=(1, 2)).double()
            body(input_ids=batch.input_ids.to(device),
                 attention_mask=batch.attention_mask.to(device))
            bar.update(int(batch.attention_mask.sum()))
    bar.close()
    return ActivationStats(tokens=stats.tokens.cpu(), active=stats.active.cpu(),
                           sum=stats.sum.cpu(), sum_sq=stats.sum_sq.cpu(), site=stats.site,
                           token_policy=token_policy)
